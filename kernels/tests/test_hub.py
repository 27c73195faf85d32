"""Hugging Face model ids resolved through a real cache that this test builds in huggingface_hub's
own layout (models--org--name/{blobs,refs,snapshots}), checked by huggingface_hub's own scanner."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import kernel_env

REPO = "wmss-test/tiny"


def add_revision(cache, repo_id, model_dir, refs, tweak=None):
    """One snapshot of `model_dir` as the Hub's downloads leave it: files in blobs/ named by their
    sha256, symlinked from snapshots/<commit>/, and refs/<branch> holding the commit hash."""
    repo = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    files = {}
    for name in sorted(os.listdir(model_dir)):
        with open(os.path.join(model_dir, name), "rb") as f:
            data = f.read()
        if tweak and name == "config.json":
            data = tweak(data)
        files[name] = data
    commit = hashlib.sha1(b"".join(hashlib.sha256(d).digest() for d in files.values())).hexdigest()
    os.makedirs(os.path.join(repo, "blobs"), exist_ok=True)
    snap = os.path.join(repo, "snapshots", commit)
    os.makedirs(snap, exist_ok=True)
    for name, data in files.items():
        blob = hashlib.sha256(data).hexdigest()
        with open(os.path.join(repo, "blobs", blob), "wb") as f:
            f.write(data)
        os.symlink(os.path.join("..", "..", "blobs", blob), os.path.join(snap, name))
    for ref in refs:
        os.makedirs(os.path.dirname(os.path.join(repo, "refs", ref)), exist_ok=True)
        with open(os.path.join(repo, "refs", ref), "w") as f:
            f.write(commit)
    return commit


def _second_config(data):
    cfg = json.loads(data)
    cfg["wmss_revision_note"] = "second revision"
    return json.dumps(cfg).encode()


@pytest.fixture(scope="module")
def hub_cache(tiny_model, tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("hf") / "hub")
    old = add_revision(cache, REPO, tiny_model.model_dir, ["v1"])
    new = add_revision(cache, REPO, tiny_model.model_dir, ["main"], tweak=_second_config)
    return cache, old, new


def resolve(cache, ref, cli=False):
    """What `python -m wmss_kernels.hub <ref>` prints (in this process unless `cli`: each CLI run
    imports torch, seconds apiece)."""
    env = {"HF_HUB_CACHE": cache, "HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_x"}
    if cli:
        p = subprocess.run(
            [sys.executable, "-m", "wmss_kernels.hub", ref],
            env={**kernel_env(), **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        out = json.loads(p.stdout.strip().splitlines()[-1])
        assert (p.returncode == 0) == out["ok"], p.stderr
        return out
    from wmss_kernels import hub

    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        return hub.outcome(ref)


def test_the_cache_is_huggingface_hubs_own_layout(hub_cache):
    from huggingface_hub import scan_cache_dir

    cache, old, new = hub_cache
    info = scan_cache_dir(cache)
    assert not info.warnings
    (repo,) = info.repos
    assert repo.repo_id == REPO
    revisions = {r.commit_hash: set(r.refs) for r in repo.revisions}
    assert revisions == {old: {"v1"}, new: {"main"}}


def test_an_id_resolves_to_the_main_branchs_commit(hub_cache):
    cache, old, new = hub_cache
    out = resolve(cache, REPO, cli=True)
    assert out["commit"] == new and out["revision"] == "main"
    assert out["path"] == os.path.join(cache, f"models--{REPO.replace('/', '--')}", "snapshots", new)
    assert "wmss_revision_note" in open(os.path.join(out["path"], "config.json")).read()


def test_a_branch_and_a_commit_hash_select_their_revision(hub_cache):
    cache, old, new = hub_cache
    assert resolve(cache, f"{REPO}@v1")["commit"] == old
    assert resolve(cache, f"{REPO}@{old}")["commit"] == old
    assert resolve(cache, f"{REPO}@{new}")["path"].endswith(new)


def test_a_moved_branch_resolves_to_the_new_commit(hub_cache, tmp_path):
    cache, old, new = hub_cache
    moved = str(tmp_path / "hub")
    shutil.copytree(cache, moved, symlinks=True)
    with open(os.path.join(moved, f"models--{REPO.replace('/', '--')}", "refs", "v1"), "w") as f:
        f.write(new)
    assert resolve(cache, f"{REPO}@v1")["commit"] == old
    assert resolve(moved, f"{REPO}@v1")["commit"] == new


def test_offline_and_not_cached_names_the_id_the_revision_and_the_fetch_command(hub_cache):
    cache, _, _ = hub_cache
    out = resolve(cache, "wmss-test/absent@v3", cli=True)
    assert out["error_type"] == "ModelUnavailable"
    assert "wmss-test/absent at revision v3" in out["message"]
    assert "hf download wmss-test/absent --revision v3" in out["message"]
    assert "HF_HUB_OFFLINE" in out["message"]
    # a revision the cache does not have, of a model it has
    out = resolve(cache, f"{REPO}@no-such-branch")
    assert out["error_type"] == "ModelUnavailable" and f"hf download {REPO} --revision no-such-branch" in out["message"]


def test_the_token_never_appears_in_what_the_activity_receives(hub_cache):
    cache, _, _ = hub_cache
    assert "hf_x" not in json.dumps(resolve(cache, REPO)) + json.dumps(resolve(cache, "wmss-test/absent"))


def test_a_snapshot_whose_weights_blob_is_gone_is_invalid_input_naming_the_file(hub_cache, tmp_path):
    cache, old, _ = hub_cache
    broken = str(tmp_path / "hub")
    shutil.copytree(cache, broken, symlinks=True)
    weights = os.path.join(broken, f"models--{REPO.replace('/', '--')}", "snapshots", old, "model.safetensors")
    os.remove(os.path.realpath(weights))  # the blob; the symlink in the snapshot now dangles
    out = resolve(broken, f"{REPO}@v1")
    assert out["error_type"] == "InvalidInput"
    assert old in out["message"] and "no weights" in out["message"]


@pytest.mark.parametrize("ref", ["org//name", "org/na me", "org/name@", "/org/name", "org/name/extra", "org/..x"])
def test_malformed_ids_are_refused(ref):
    from wmss_kernels.hub import parse_model_id

    with pytest.raises(ValueError, match="not a Hugging Face model id"):
        parse_model_id(ref)
