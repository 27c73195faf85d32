"""Experiment tracking with the real libraries: TensorBoard events read back with tensorboard's own
reader (after a kill and a retry every step appears once), MLflow on a local file store (params,
metrics, the run id reused by the retry), Weights & Biases in offline mode, and a dead tracker
server that never fails training."""

import glob
import json
import os
import struct
import sys
import time

import pytest
from test_sft import one_thread, run_inproc, sft_job  # noqa: F401 - one_thread is a fixture
from wmss_kernels import entropy, run_setup, sft, tracker_backends, tracking
from wmss_kernels.jobs import job_schema, load_job

SCALARS = {"loss", "lr", "grad_norm", "tokens_per_s"}


def spec(tmp_path, step="sft", mlflow=False, wandb=False, uri=None):
    run = tmp_path / "run"
    return {
        "prefix": step,
        "run_name": "tracked",
        "tensorboard_dir": str(run / "tensorboard" / step),
        "mlflow": {
            "tracking_uri": uri or f"file:{tmp_path / 'mlruns'}",
            "experiment": "wmss-test",
            "run_file": str(run / "tracking" / "mlflow.json"),
        }
        if mlflow
        else None,
        "wandb": {
            "project": "wmss-test",
            "entity": None,
            "mode": "offline",
            "run_file": str(run / "tracking" / "wandb.json"),
            "dir": str(run / "tracking"),
        }
        if wandb
        else None,
    }


def events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def killed_after(step):
    """Tracker.scalars that, once it has logged `step`, flushes and dies as a SIGKILL would: no
    checkpoint, no close, whatever was logged after the last checkpoint left in the files."""
    real = tracking.Tracker.scalars

    def scalars(self, at, values):
        real(self, at, values)
        if at == step:
            self.tb.flush()
            raise KeyboardInterrupt(f"killed after step {step}")

    return scalars


def test_tensorboard_steps_appear_once_after_a_kill_and_a_retry(tiny_model, tmp_path, one_thread, monkeypatch):
    track = spec(tmp_path)
    job = sft_job(tiny_model, tmp_path, "out", max_steps=20, save_every=5, tracking=track)
    with monkeypatch.context() as m:
        m.setattr(tracking.Tracker, "scalars", killed_after(13))
        with pytest.raises(KeyboardInterrupt):
            run_inproc(sft, job, tmp_path)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoint-10", "checkpoint-5"]
    before = events(track["tensorboard_dir"])
    assert [e.step for e in before.Scalars("loss")] == list(range(1, 14))

    result = run_inproc(sft, job, tmp_path)  # the retry: resumes from step 10
    assert result["metrics"]["resumed_from_step"] == 10
    assert len(glob.glob(os.path.join(track["tensorboard_dir"], "events.out.tfevents.*"))) == 2
    after = events(track["tensorboard_dir"])
    assert SCALARS <= set(after.Tags()["scalars"])
    for tag in SCALARS:
        assert [e.step for e in after.Scalars(tag)] == list(range(1, 21)), tag
    # the curve is the checkpointed run's: steps 11-13 hold the retry's values, equal to the first
    # attempt's (training resumes exactly)
    state = json.loads((tmp_path / "out" / "checkpoint-20" / "trainer_state.json").read_text())
    logged = {e.step: e.value for e in after.Scalars("loss")}
    assert all(abs(logged[h["step"]] - h["loss"]) < 1e-6 for h in state["loss_history"])


def test_entropy_writes_a_histogram_and_its_mean(tiny_model, tmp_path):
    track = spec(tmp_path, step="entropy0")
    job = {
        "model_path": str(tiny_model.model_dir),
        "data_file": str(tiny_model.train_file),
        "output_path": str(tmp_path / "entropy.jsonl"),
        "log_file": str(tmp_path / "entropy.log"),
        "field": "entropy_0",
        "limit": 16,
        "threads": 1,
        "device": "cpu",
        "tracking": track,
    }
    for _ in range(2):  # a retry starts over: its summary replaces the first one's
        path = tmp_path / "entropy-job.json"
        path.write_text(json.dumps(job))
        metrics = entropy.run(load_job(str(path), job_schema("entropy")))["metrics"]
    acc = events(track["tensorboard_dir"])
    assert [e.step for e in acc.Scalars("mean_entropy")] == [0]
    assert abs(acc.Scalars("mean_entropy")[0].value - metrics["mean_entropy"]) < 1e-6
    (hist,) = acc.Histograms("entropy_0")
    assert hist.histogram_value.num == 16


def test_mlflow_gets_params_metrics_and_keeps_its_run_across_a_retry(tiny_model, tmp_path, one_thread, monkeypatch):
    track = spec(tmp_path, mlflow=True)
    setup = run_setup.setup({"models": {}, "run_name": "tracked", "params": {"sft.lr": "0.003"}, "tracking": track})
    run_id = setup["trackers"]["mlflow"]["run_id"]
    assert json.loads(open(track["mlflow"]["run_file"]).read())["run_id"] == run_id
    job = sft_job(tiny_model, tmp_path, "out", max_steps=12, save_every=4, tracking=track)
    with monkeypatch.context() as m:
        m.setattr(tracking.Tracker, "scalars", killed_after(6))
        with pytest.raises(KeyboardInterrupt):
            run_inproc(sft, job, tmp_path)
    run_inproc(sft, job, tmp_path)
    # the set-up of a `wmss resume` finds the same run again
    again = run_setup.setup({"models": {}, "run_name": "tracked", "params": {"sft.lr": "0.003"}, "tracking": track})
    assert again["trackers"]["mlflow"]["run_id"] == run_id

    from mlflow.tracking import MlflowClient

    client = MlflowClient(track["mlflow"]["tracking_uri"])
    (run,) = client.search_runs([client.get_experiment_by_name("wmss-test").experiment_id])
    assert run.info.run_id == run_id and run.data.params["sft.lr"] == "0.003"
    steps = {m.step for m in client.get_metric_history(run_id, "sft/loss")}
    assert steps == set(range(1, 13))
    assert {"sft/lr", "sft/grad_norm", "sft/tokens_per_s"} <= set(run.data.metrics)
    assert run.data.tags["sft/model"].endswith("checkpoint-12")


def wandb_records(path):
    """The records of a .wandb file (LevelDB log framing: 7-byte header, 32 KiB blocks, chunks of
    crc32, length, type), parsed with wandb's own protobuf schema."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, pending = open(path, "rb").read(), 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (length == 0 and kind == 0):
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def test_wandb_offline_run_holds_the_metrics(tiny_model, tmp_path, one_thread):
    track = spec(tmp_path, wandb=True)
    setup = run_setup.setup({"models": {}, "run_name": "tracked", "params": {"sft.lr": "0.003"}, "tracking": track})
    run_id = setup["trackers"]["wandb"]["run_id"]
    run_inproc(sft, sft_job(tiny_model, tmp_path, "out", max_steps=6, tracking=track), tmp_path)
    pattern = str(tmp_path / "run" / "tracking" / "wandb" / f"offline-run-*-{run_id}" / f"run-{run_id}.wandb")
    # wandb's service process writes the file; on a busy machine the last records land a moment
    # after finish() returned
    for _ in range(60):
        files = glob.glob(pattern)
        history = [
            {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for f in files
            for r in wandb_records(f)
            if r.WhichOneof("record_type") == "history"
        ]
        logged = sorted(h["sft/step"] for h in history if "sft/loss" in h)
        if len(logged) == 6:
            break
        time.sleep(0.5)
    assert len(files) == 2  # the set-up's and the kernel's, one run id
    assert logged == [1, 2, 3, 4, 5, 6]


def test_a_dead_tracker_server_never_fails_training(tiny_model, tmp_path, one_thread, monkeypatch):
    monkeypatch.setattr(tracker_backends, "FLUSH_S", 2.0)
    track = spec(tmp_path, mlflow=True, uri="http://127.0.0.1:9")  # nothing listens on port 9
    setup = run_setup.setup({"models": {}, "run_name": "tracked", "params": {}, "tracking": track})
    assert "error" in setup["trackers"]["mlflow"]
    result = run_inproc(sft, sft_job(tiny_model, tmp_path, "out", max_steps=4, tracking=track), tmp_path)
    assert result["metrics"]["steps"] == 4
    assert [e.step for e in events(track["tensorboard_dir"]).Scalars("loss")] == [1, 2, 3, 4]


def test_without_the_tracker_packages_training_goes_on_with_a_warning(
    tiny_model, tmp_path, one_thread, monkeypatch, caplog
):
    # as on a GPU machine that has none of them installed: every import of them fails
    for module in ("tensorboard", "torch.utils.tensorboard", "mlflow", "wandb"):
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setattr(tracking, "_warned", set())
    track = spec(tmp_path, mlflow=True, wandb=True)
    with caplog.at_level("WARNING", logger="wmss_kernels.tracking"):
        result = run_inproc(sft, sft_job(tiny_model, tmp_path, "out", max_steps=3, tracking=track), tmp_path)
    assert result["metrics"]["steps"] == 3
    warnings = "\n".join(r.getMessage() for r in caplog.records)
    for name in ("tensorboard", "mlflow", "wandb"):
        assert f"{name} is not installed" in warnings
    assert not os.path.exists(track["tensorboard_dir"])


@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_joint_training_logs_each_branchs_loss(tiny_model, tmp_path, one_thread, lam):
    from test_joint import joint_job
    from wmss_kernels import joint

    (tmp_path / "indices.txt").write_text("\n".join(["0", "3", "5", "1", "2", "7"] * 3) + "\n")
    track = spec(tmp_path, step="joint")
    job = joint_job(
        tiny_model,
        tmp_path,
        "joint",
        weak_path=str(tiny_model.model_dir),
        strong_path=str(tiny_model.model_dir),
        fusion_lambda=lam,
        max_steps=3,
        tracking=track,
    )
    path = tmp_path / "joint-job.json"
    path.write_text(json.dumps(job))
    joint.run(load_job(str(path), job_schema("joint")))
    acc = events(track["tensorboard_dir"])
    mixed, weak, strong = ({e.step: e.value for e in acc.Scalars(t)} for t in ("loss", "loss_weak", "loss_strong"))
    # the mixed loss every step; the branches' on the first, every 20th and the last step
    assert sorted(mixed) == [1, 2, 3] and sorted(weak) == sorted(strong) == [1, 3]
    # step 1 sees the untrained copies: both branches are the same model, so equal losses
    assert abs(weak[1] - strong[1]) < 1e-5
    if lam == 1.0:  # the mixed logits are the strong branch's alone
        assert all(abs(mixed[s] - strong[s]) < 1e-4 for s in strong)
    else:  # both branches train and move apart from the mix; all are finite cross-entropies
        assert all(0 < v < 20 for v in [*weak.values(), *strong.values()])


def test_branch_losses_are_computed_on_the_first_every_20th_and_the_last_step_of_a_tracked_job():
    from types import SimpleNamespace

    from wmss_kernels.tracking import log_branch_losses

    module = SimpleNamespace(track_branches=False)

    def computed(job, max_steps):
        out = []
        for step in range(1, max_steps + 1):
            log_branch_losses(job, module, step, max_steps)
            if module.track_branches:
                out.append(step)
        return out

    assert computed(SimpleNamespace(tracking={"tensorboard_dir": "x"}), 45) == [1, 20, 40, 45]
    assert computed(SimpleNamespace(tracking=None), 25) == []
