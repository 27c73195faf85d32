#!/usr/bin/env bash
# The whole test suite: Python kernel tests (pytest) beside jest (unit, workflow, integration with
# a real `temporal server start-dev`, real workers and real kernels; one suite on the production
# stack of docker-compose.yml, started by scripts/prod-stack.sh), after the linters
# (scripts/lint.sh: a lint or format error fails the suite). Ends with one summary line.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh || { echo "test: setup failed" >&2; exit 1; }
bash scripts/setup-browser.sh || echo "test: no Chromium; the Web UI test will fail" >&2
bash scripts/setup-nginx.sh || echo "test: no nginx; the TLS test (test/integration/tls.test.ts) will fail" >&2
bash scripts/setup-prod-stack.sh || echo "test: no Temporal server build or PostgreSQL; the production stack test (test/integration/prodStack.test.ts) will fail" >&2

suite_started=$SECONDS
mkdir -p .wmss/test-reports

echo "== lint (ESLint, Prettier, ruff: scripts/lint.sh)"
bash scripts/lint.sh
lint_rc=$?
py_report=.wmss/test-reports/pytest.xml
js_report=.wmss/test-reports/jest.json
rm -f "$py_report" "$js_report"

# The kernel tests and jest run side by side, and jest runs two suites at a time: on the 2-core
# machine much of an integration suite is waiting (servers starting, timers, heartbeats), and the
# kernels start from a fork server in a few milliseconds, so the cores are rarely both busy.
# WMSS_TEST_SERIAL=1 runs everything one at a time, as before (for chasing a timing problem).
py_log=.wmss/test-reports/pytest.log
if [[ -n "${WMSS_TEST_SERIAL:-}" ]]; then
  echo "== pytest (kernels)"
  PYTHONPATH=kernels .venv/bin/python -m pytest kernels/tests -q -p no:cacheprovider --junitxml="$py_report"
  py_rc=$?
  echo "== jest (unit, workflow, integration)"
  npx jest --runInBand --json --outputFile="$js_report" "$@"
  js_rc=$?
else
  echo "== pytest (kernels) in the background, its output in $py_log; jest (unit, workflow, integration), two suites at a time"
  PYTHONPATH=kernels .venv/bin/python -m pytest kernels/tests -q -p no:cacheprovider --junitxml="$py_report" >"$py_log" 2>&1 &
  py_pid=$!
  npx jest --maxWorkers=2 --json --outputFile="$js_report" "$@"
  js_rc=$?
  wait "$py_pid"
  py_rc=$?
  echo "== pytest (kernels)"
  cat "$py_log"
fi

node -e '
const fs = require("fs");
const [pyReport, jsReport] = process.argv.slice(1);
let passed = 0, failed = 0, skipped = 0;
if (fs.existsSync(pyReport)) {
  const xml = fs.readFileSync(pyReport, "utf8");
  const attr = (n) => [...xml.matchAll(new RegExp(`<testsuite [^>]*\\b${n}="(\\d+)"`, "g"))].reduce((s, m) => s + Number(m[1]), 0);
  const tests = attr("tests"), fail = attr("failures") + attr("errors"), skip = attr("skipped");
  passed += tests - fail - skip; failed += fail; skipped += skip;
} else failed += 1;
if (fs.existsSync(jsReport)) {
  const r = JSON.parse(fs.readFileSync(jsReport, "utf8"));
  passed += r.numPassedTests; failed += r.numFailedTests + r.numRuntimeErrorTestSuites; skipped += r.numPendingTests + r.numTodoTests;
} else failed += 1;
console.log(`\nwmss-flow: ${passed} passed, ${failed} failed, ${skipped} skipped`);
' "$py_report" "$js_report"
[[ $lint_rc -eq 0 ]] || echo "wmss-flow: lint failed (the == lint section above says where; bash scripts/lint.sh --fix formats)"
echo "wmss-flow: the suite took $((SECONDS - suite_started)) s of wall time, set-up excluded"

[[ $lint_rc -eq 0 && $py_rc -eq 0 && $js_rc -eq 0 ]]
