"""Hugging Face model ids (`org/name` or `org/name@revision`) resolved to a directory of the
standard Hugging Face cache (HF_HOME / HF_HUB_CACHE: models--org--name/{blobs,refs,snapshots}).

    python -m wmss_kernels.hub org/name[@revision]

prints one JSON line: {"ok": true, "id", "revision", "commit", "path"} or {"ok": false,
"error_type", "message"} (exit 3). The activity that runs it (activities/modelResolution.ts)
turns the failure into a non-retryable one: a retry cannot make an offline worker download or a
gated model readable.

huggingface_hub downloads when the network allows and HF_HUB_OFFLINE is not set; otherwise the
revision (a branch, a tag or a commit hash) is looked up in the cache's refs and snapshots. The
commit hash that comes back is what the steps put into their cache keys: a branch that moved
resolves to another commit and never reuses results of the old one. HF_TOKEN is read by
huggingface_hub from this process's environment (the worker's), never from the job or the run
config, so it never enters workflow history.
"""

import json
import os
import re
import sys

from .modeling import check_model_dir
from .protocol import InvalidInput

# The Hub's own rules for a repo id part: letters, digits, . _ -; no leading or trailing . or -, no "..".
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
ID_PATTERN = re.compile(rf"^(?P<repo>{_PART}/{_PART})(?:@(?P<revision>[A-Za-z0-9][A-Za-z0-9._/-]{{0,199}}))?$")


class ModelUnavailable(Exception):
    """The model cannot be had on this worker: offline and not cached, gated, or not on the Hub."""


def parse_model_id(ref: str):
    """(repo_id, revision) of `org/name[@revision]`, revision "main" when absent; ValueError otherwise."""
    m = ID_PATTERN.match(ref)
    if not m or ".." in ref.split("@", 1)[0]:
        raise ValueError(f"not a Hugging Face model id (org/name or org/name@revision): {ref!r}")
    return m["repo"], m["revision"] or "main"


def fetch_command(repo_id: str, revision: str) -> str:
    """The one command that puts the model into the cache (run where the network is reachable)."""
    rev = "" if revision == "main" else f" --revision {revision}"
    return f"hf download {repo_id}{rev}"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve(ref: str) -> dict:
    """The cached (or freshly downloaded) snapshot of `ref`, checked to be a loadable model dir."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id, revision = parse_model_id(ref)
    where = f"{repo_id} at revision {revision}"
    offline = _offline()
    try:
        path = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir(), local_files_only=offline)
    except GatedRepoError as e:
        raise ModelUnavailable(
            f"{where} is gated: accept its terms on huggingface.co and give the workers an HF_TOKEN "
            f"that may read it ({type(e).__name__})"
        )
    except RevisionNotFoundError:
        raise ModelUnavailable(f"{where}: the Hub has no revision {revision!r} of {repo_id}")
    except RepositoryNotFoundError:
        raise ModelUnavailable(
            f"{where}: no such model on the Hub, or it is private and this worker's HF_TOKEN may not read it"
        )
    except LocalEntryNotFoundError as e:
        why = "HF_HUB_OFFLINE is set" if offline else f"the Hub could not be reached ({str(e).splitlines()[0][:200]})"
        raise ModelUnavailable(
            f"{where} is not in this worker's Hugging Face cache ({cache_dir()}) and {why}; "
            f"fetch it with: {fetch_command(repo_id, revision)}"
        )
    commit = os.path.basename(os.path.normpath(path))
    # a snapshot whose weights file (a symlink into blobs/) is missing: name the file, not "crash"
    check_model_dir(path)
    return {"id": repo_id, "revision": revision, "commit": commit, "path": os.path.abspath(path)}


def cache_dir() -> str:
    """huggingface_hub's cache dir, read from the environment now (its constants are read at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface"), "hub")


def outcome(ref: str) -> dict:
    """What the CLI prints for `ref`: the resolution, or the typed failure."""
    try:
        return {"ok": True, **resolve(ref)}
    except ValueError as e:
        return {"ok": False, "error_type": "InvalidConfig", "message": str(e)}
    except ModelUnavailable as e:
        return {"ok": False, "error_type": "ModelUnavailable", "message": str(e)}
    except InvalidInput as e:
        return {"ok": False, "error_type": "InvalidInput", "message": e.message}


def main(argv) -> int:
    out = (
        outcome(argv[0])
        if len(argv) == 1
        else {"ok": False, "error_type": "InvalidConfig", "message": "usage: hub <id>"}
    )
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
