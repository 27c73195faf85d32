# The two commands of the README: `make demo` (the main job) and `make test` (the whole suite).
.PHONY: demo test setup build
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
setup:
	bash scripts/setup.sh
build:
	npx tsc -p tsconfig.json
# Not one of the two: three seeds × a three-point λ sweep of the demo, and its report (docs/compare.md).
.PHONY: compare
compare:
	bash scripts/compare.sh
