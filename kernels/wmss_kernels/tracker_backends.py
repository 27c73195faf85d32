"""MLflow and Weights & Biases for tracking.py: one tracking run per pipeline run, its id in
`<runDir>/tracking/<tracker>.json`, created by the run's set-up (run_setup.py) and reused by every
kernel, every retry and `wmss resume`.

Calls run on a daemon thread fed by a queue: a batch that fails (server down, network gone) is
logged once and kept for the next try; the kernel's last act is to flush for at most FLUSH_S
seconds, then whatever is still unsent is dropped with a warning. The step is never failed.
"""

import json
import os
import queue
import secrets
import threading
import time

FLUSH_S = float(os.environ.get("WMSS_TRACKING_FLUSH_S", "30"))
RETRY_S = 5.0
MAX_PENDING = 10_000  # batches kept while a server is down; older ones are dropped beyond this


def read_run_file(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_run_file(path, record):
    """Atomically, and only if no other kernel wrote it first: the first record wins."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return read_run_file(path)


def mlflow_env(uri):
    # MLflow's file store is in maintenance mode and refuses to open unless told; wmss accepts it
    # for single-machine runs (docs/tracking.md). Its HTTP client retries for minutes by default:
    # our own thread retries instead, so a dead server costs seconds, not a stalled flush.
    if uri.startswith("file:") or "://" not in uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def mlflow_run(spec, run_name, params=None):
    """The pipeline run's MLflow run: the id in run_file, else a new one (recorded there)."""
    mlflow_env(spec["tracking_uri"])
    from mlflow.tracking import MlflowClient

    client = MlflowClient(spec["tracking_uri"])
    record = read_run_file(spec["run_file"])
    if record is None:
        exp = client.get_experiment_by_name(spec["experiment"])
        exp_id = exp.experiment_id if exp else client.create_experiment(spec["experiment"])
        run = client.create_run(exp_id, run_name=run_name)
        url = mlflow_url(spec["tracking_uri"], exp_id, run.info.run_id)
        record = write_run_file(spec["run_file"], {"run_id": run.info.run_id, "experiment_id": exp_id, "url": url})
    if params:
        from mlflow.entities import Param

        # params are immutable in MLflow: a resumed run logs the same values again (a no-op); a
        # server takes at most 100 per call
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            client.log_batch(record["run_id"], params=items[i : i + 100])
    return client, record


def mlflow_url(uri, exp_id, run_id):
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}"
    return f"{uri.rstrip('/')}/{exp_id}/{run_id}"


def wandb_run(spec, run_name, params=None):
    """The pipeline run's W&B run, resumed by the id in run_file (a new id recorded there first)."""
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    new_id = secrets.token_hex(6)  # W&B run ids: lowercase letters and digits
    record = read_run_file(spec["run_file"]) or write_run_file(spec["run_file"], {"run_id": new_id})
    run = wandb.init(
        project=spec["project"],
        entity=spec.get("entity"),
        mode=spec["mode"],
        id=record["run_id"],
        resume="allow",
        name=run_name,
        dir=spec["dir"],
        config=params,
        settings=wandb.Settings(init_timeout=30, console="off"),
    )
    url = run.url or run.dir
    if record.get("url") != url and url:
        record = {**record, "url": url}
        with open(spec["run_file"] + ".url.tmp", "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(spec["run_file"] + ".url.tmp", spec["run_file"])
    return run, record


class Remote:
    """MLflow and/or W&B behind one queue and one thread."""

    def __init__(self, spec, prefix, warn):
        self.spec, self.prefix, self.warn = spec, prefix, warn
        self.queue, self.pending = queue.Queue(), []
        self.mlflow = self.wandb = None
        self.thread = threading.Thread(target=self._loop, name="wmss-tracking", daemon=True)
        self.thread.start()

    def log(self, step, metrics):
        self.queue.put(("metrics", step, metrics))

    def link(self, key, value):
        self.queue.put(("link", key, value))

    def close(self):
        self.queue.put(("close", None, None))
        self.thread.join(FLUSH_S)
        if self.thread.is_alive() or self.pending:
            self.warn("flush", "tracking: %d batches not sent within %.0f s; dropped", len(self.pending), FLUSH_S)

    def _connect(self):
        if self.spec.get("mlflow") and self.mlflow is None:
            self.mlflow = mlflow_run(self.spec["mlflow"], self.spec.get("run_name"))
        if self.spec.get("wandb") and self.wandb is None:
            run, _ = wandb_run(self.spec["wandb"], self.spec.get("run_name"))
            run.define_metric(f"{self.prefix}/*", step_metric=f"{self.prefix}/step")
            self.wandb = run

    def _send(self, item):
        kind, a, b = item
        self._connect()
        if self.mlflow is not None:
            from mlflow.entities import Metric

            client, record = self.mlflow
            if kind == "metrics":
                now = int(time.time() * 1000)
                client.log_batch(record["run_id"], metrics=[Metric(k, v, now, a) for k, v in b.items()])
            else:
                client.set_tag(record["run_id"], a, b)
        if self.wandb is not None:
            if kind == "metrics":
                self.wandb.log({f"{self.prefix}/step": a, **b})
            else:
                self.wandb.summary[a] = b

    def _loop(self):
        closing = False
        while True:
            try:
                item = self.queue.get(timeout=RETRY_S if self.pending else None)
                if item[0] == "close":
                    closing = True
                else:
                    self.pending.append(item)
                    del self.pending[:-MAX_PENDING]
            except queue.Empty:
                pass
            try:
                while self.pending:
                    self._send(self.pending[0])
                    self.pending.pop(0)
            except Exception as e:  # noqa: BLE001 - an outage is logged and retried, never raised
                self.warn("send", "tracking: cannot reach the tracker (%s: %s); retrying", type(e).__name__, e)
                continue
            if closing:
                if self.wandb is not None:
                    self.wandb.finish()
                return


def open_remote(spec, prefix, warn):
    if not (spec.get("mlflow") or spec.get("wandb")):
        return None
    for name, module in (("mlflow", "mlflow"), ("wandb", "wandb")):
        if spec.get(name):
            try:
                __import__(module)
            except ImportError as e:
                warn(name, "%s is not installed (%s): this kernel logs nothing to it", name, e)
                spec = {**spec, name: None}
    if not (spec.get("mlflow") or spec.get("wandb")):
        return None
    return Remote(spec, prefix, warn)
