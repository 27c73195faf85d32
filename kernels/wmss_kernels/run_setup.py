"""What a run needs before its first step, in one process on a worker with Python:

    python -m wmss_kernels.run_setup <setup.json>

setup.json: {"models": {config key: model id}, "run_name", "params": {flat config},
"tracking": {"mlflow": {...} | null, "wandb": {...} | null}}. Prints one JSON line:
{"models": {key: hub.outcome}, "trackers": {name: {"run_id", "url"} | {"error"}}}.

Model ids are resolved (hub.py); the tracking runs are created or found again (their ids are in
the run dir) and the resolved config is logged as their parameters. A tracker that cannot be
reached is reported, not raised: the kernels retry it, and training never waits for it.
"""

import json
import sys

from . import hub, tracker_backends


def _tracker(name, spec, run_name, params):
    try:
        if name == "mlflow":
            _, record = tracker_backends.mlflow_run(spec, run_name, params)
        else:
            run, record = tracker_backends.wandb_run(spec, run_name, params)
            run.finish()
        return {"run_id": record["run_id"], "url": record.get("url")}
    except Exception as e:  # noqa: BLE001 - an outage or a missing package never fails the run
        return {"error": f"{type(e).__name__}: {e}"[:500]}


def setup(spec) -> dict:
    models = {key: hub.outcome(ref) for key, ref in spec.get("models", {}).items()}
    trackers = {}
    for name in ("mlflow", "wandb"):
        if spec.get("tracking", {}).get(name):
            trackers[name] = _tracker(name, spec["tracking"][name], spec.get("run_name"), spec.get("params"))
    return {"models": models, "trackers": trackers}


def main(argv) -> int:
    with open(argv[0], encoding="utf-8") as f:
        spec = json.load(f)
    print(json.dumps(setup(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
