"""Kernel fork server ("zygote") of a GPU worker (docs/kernel-launch.md).

    python -m wmss_kernels.forkserver --socket <path>

Imports torch, transformers and the kernels' other libraries once, then forks a kernel per job
that a fork client (forkclient.py) hands it over a unix socket, so a kernel starts in tens of
milliseconds instead of seconds of imports. The server never initialises CUDA and runs no torch
op: everything that depends on the job (CUDA_VISIBLE_DEVICES, thread counts, the job's own
environment) takes effect in the forked child as in a fresh process. A job whose environment
differs from the server's in a variable that libraries read when they are loaded is refused, and
the client then starts it as a plain process.

Lines on stdout for the worker: `listening` once the socket accepts connections (jobs wait in
its backlog while the imports finish), `ready <seconds>` after the imports. The server stops on
SIGTERM or when its stdin (a pipe from the worker) closes, and when the worker dies
(PR_SET_PDEATHSIG): it sends SIGTERM to the kernels still running, as a plain kernel would get
from Linux when its worker dies, and exits once they are gone.
"""

import importlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
import warnings

from . import forkchild

# Read by a library when it is loaded, not when it is used: a job that sets them differently
# than the server would get the server's behaviour, so it is started as a plain process instead.
LOAD_TIME_PREFIXES = (
    "PYTHON",
    "LD_",
    "OMP_",
    "MKL_",
    "KMP_",
    "GOMP_",
    "OPENBLAS_",
    "TORCH",
    "PYTORCH_",
    "HF_",
    "HUGGINGFACE_",
    "TRANSFORMERS_",
    "TOKENIZERS_",
    "MALLOC_",
    "GLIBC_",
)
# Modules loaded on first use rather than by `import wmss_kernels.<verb>` (the tiny and real
# models are Qwen3; math_verify grades evaluate's answers)
LAZY_MODULES = (
    "transformers.models.qwen3.modeling_qwen3",
    "transformers.generation.utils",
    "transformers.models.auto.tokenization_auto",
    "transformers.tokenization_utils_tokenizers",
    "math_verify",
    "safetensors.torch",
)
STOP_GRACE_S = 120.0  # kernels still running when the server stops: SIGTERM, then SIGKILL after this


def say(*words):
    print(*words, flush=True)


def note(message):
    sys.stderr.write(f"[wmss fork server {os.getpid()}] {message}\n")
    sys.stderr.flush()


def preload():
    """Import every kernel module and what they load lazily, then forget wmss_kernels itself: it
    reads its environment at import, so each child imports it again (milliseconds) with its own."""
    from . import __main__ as entry

    for name in [*(f"wmss_kernels.{m}" for m in entry.VERBS.values()), *LAZY_MODULES]:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - the kernel that needs it reports it properly
            note(f"preload {name}: {type(e).__name__}: {e}")
    for name in [m for m in sys.modules if m == "wmss_kernels" or m.startswith("wmss_kernels.")]:
        del sys.modules[name]


def cuda_initialised():
    """Whether the CUDA driver was initialised (cuInit) in this process: a forked child could not
    use the GPU then. The imports may load libcuda (triton does) without initialising it; asking
    the loaded driver for the current context answers NOT_INITIALIZED (3) until cuInit."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            if not any("/libcuda.so" in line for line in maps):
                return False
    except OSError:
        return False
    import ctypes

    try:
        driver = ctypes.CDLL("libcuda.so.1")  # the library already loaded: no new initialisation
        return driver.cuCtxGetCurrent(ctypes.byref(ctypes.c_void_p())) != 3
    except (OSError, AttributeError):
        return True  # cannot tell: do not fork


def load_time_difference(base, env, imported=None):
    """Why `env` cannot run in a child of a server started with `base`, or None. Returns
    (reason, num_threads): OMP_NUM_THREADS alone may differ, torch.set_num_threads applies it.
    `imported`: variables the imports themselves set (torch sets TORCHINDUCTOR_CACHE_DIR); a job
    may have them with that value (its starter imported torch too) or not at all."""
    imported = imported or {}
    keys = {k for k in (*base, *env) if k.startswith(LOAD_TIME_PREFIXES)}
    differ = sorted(
        k for k in keys if base.get(k) != env.get(k) and not (k in imported and env.get(k) in (None, imported[k]))
    )
    if not differ:
        return None, None
    if differ == ["OMP_NUM_THREADS"] and "MKL_NUM_THREADS" not in env and env.get("OMP_NUM_THREADS", "").isdigit():
        threads = int(env["OMP_NUM_THREADS"])
        if threads > 0:
            return None, threads
    return f"{', '.join(differ)} differ from the fork server's environment", None


def set_by_imports(before, after):
    """The variables the imports set or changed in os.environ (`before` and `after` them)."""
    return {k: v for k, v in after.items() if before.get(k) != v}


class Server:
    def __init__(self, listener, base_env):
        self.listener = listener
        self.base_env = base_env
        self.imported_env = {}  # set by preload(): what the imports put into os.environ
        self.selector = selectors.DefaultSelector()
        self.children = {}  # kernel pid -> its client connection
        self.requests = {}  # connection -> [bytes so far, fds]
        self.stopping_since = None
        self.refuse_all = None
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wake-up fd hears it
        signal.signal(signal.SIGTERM, lambda *_: self.stop("SIGTERM"))
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is for the worker, which stops us
        listener.setblocking(False)
        self.selector.register(listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.selector.register(0, selectors.EVENT_READ, "worker")

    def serve(self):
        while self.stopping_since is None or self.children:
            if self.stopping_since is not None and time.monotonic() - self.stopping_since > STOP_GRACE_S:
                for pid in self.children:
                    _kill_group(pid, signal.SIGKILL)
            for key, _ in self.selector.select(timeout=1.0):
                if key.data == "accept":
                    self.accept()
                elif key.data == "wake":
                    _drain(self.wake_r)
                elif key.data == "worker":
                    if not os.read(0, 4096):
                        self.stop("the worker closed the pipe")
                else:
                    self.read_request(key.fileobj)
            self.reap()

    def stop(self, why):
        if self.stopping_since is not None:
            return
        note(f"stopping ({why}); {len(self.children)} kernel(s) running")
        self.stopping_since = time.monotonic()
        for fileobj in (self.listener, 0, *self.requests):
            self.selector.unregister(fileobj)
        self.listener.close()
        for conn, (_, fds) in self.requests.items():
            _close_all(fds)
            conn.close()
        self.requests.clear()
        for pid in self.children:
            _kill(pid, signal.SIGTERM)  # what Linux sends a plain kernel whose worker died

    def accept(self):
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self.requests[conn] = [b"", []]
        self.selector.register(conn, selectors.EVENT_READ, "request")

    def read_request(self, conn):
        pending = self.requests[conn]
        try:
            data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        pending[0] += data
        pending[1] += fds
        if not data:  # the client left before its request was complete
            self.drop(conn)
            return
        if len(pending[0]) < 4 or len(pending[0]) < 4 + struct.unpack("!I", pending[0][:4])[0]:
            return
        self.selector.unregister(conn)
        del self.requests[conn]
        body, fds = pending[0][4:], pending[1]
        try:
            self.start(conn, json.loads(body), fds)
        finally:
            _close_all(fds)

    def drop(self, conn):
        self.selector.unregister(conn)
        _close_all(self.requests.pop(conn)[1])
        conn.close()

    def start(self, conn, request, fds):
        why, threads = self.check(request, fds)
        if why is not None:
            _reply(conn, {"refused": why})
            conn.close()
            return
        own = [
            self.listener.fileno(),
            self.wake_r,
            self.wake_w,
            self.selector.fileno(),
            *(c.fileno() for c in self.requests),
            *(c.fileno() for c in self.children.values()),
        ]
        # a fresh interpreter would have had the imports set these; the job's own values win
        request["env"] = {**self.imported_env, **request["env"]}
        with warnings.catch_warnings():
            # Python 3.12+ warns on every fork of a process with threads; the server's are the
            # BLAS libraries' idle pools, which get ready for fork themselves (pthread_atfork)
            warnings.filterwarnings(
                "ignore", message=r".*use of fork\(\) may lead to deadlocks", category=DeprecationWarning
            )
            pid = os.fork()
        if pid == 0:  # out of the `with`: the kernel starts with the interpreter's own warning filters
            forkchild.run(conn, fds, request, threads, own)
        self.children[pid] = conn
        _reply(conn, {"pid": pid})

    def check(self, request, fds):
        if self.refuse_all:
            return self.refuse_all, None
        argv = request.get("argv")
        if not isinstance(argv, list) or argv[:2] != ["-m", "wmss_kernels"] or len(fds) != 3:
            return "not a `-m wmss_kernels` job with stdin, stdout and stderr", None
        if not isinstance(request.get("env"), dict) or not isinstance(request.get("cwd"), str):
            return "no env or cwd in the request", None
        return load_time_difference(self.base_env, request["env"], self.imported_env)

    def reap(self):
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                _reply(conn, {"status": os.waitstatus_to_exitcode(status)})
                conn.close()


def _reply(conn, message):
    try:
        conn.setblocking(True)
        conn.sendall((json.dumps(message) + "\n").encode())
    except OSError:
        pass  # the client is gone; its kernel (if any) notices by itself


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _kill_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        _kill(pid, sig)


def _close_all(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _drain(fd):
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _die_with_worker():
    """SIGTERM when the worker that started us dies, even of SIGKILL (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv):
    if len(argv) != 2 or argv[0] != "--socket":
        sys.exit("usage: python -m wmss_kernels.forkserver --socket <path>")
    path = argv[1]
    base_env = dict(os.environ)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    server = Server(listener, base_env)  # handlers first: a SIGTERM during the imports stops cleanly
    _die_with_worker()
    say("listening")
    started = time.monotonic()
    preload()
    server.imported_env = set_by_imports(base_env, os.environ)
    if cuda_initialised():
        server.refuse_all = "CUDA was initialised while importing; a forked kernel could not use it"
        note(server.refuse_all)
    say(f"ready {time.monotonic() - started:.1f}")
    try:
        server.serve()
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


if __name__ == "__main__":
    main(sys.argv[1:])
