"""The process the kernel bridge starts in place of `python -m wmss_kernels ...` while the GPU
worker's fork server runs (docs/kernel-launch.md). Standard library only, started with
`python -I -S` (no site-packages, no PYTHON* variables), so it is up in a few milliseconds.

    python -I -S forkclient.py <socket> <python> -m wmss_kernels <verb> --job <file>

It hands its stdin, stdout and stderr (the bridge's pipes) to the fork server with argv, env,
cwd and umask; the server forks a kernel that uses them directly. This process stands for the
kernel towards the bridge: SIGTERM and SIGINT are forwarded to the kernel's process group, and it
exits with the kernel's exit code or dies of the kernel's signal. When it dies itself (SIGKILL of
its process group), the kernel notices the closed connection and SIGKILLs itself. When the
server is not there or refuses the job, it becomes the plain kernel: exec of
`<python> -m wmss_kernels ...` with the same pid, process group, pipes and environment.
"""

import json
import os
import signal
import socket
import struct
import sys
import time

FORWARDED = (signal.SIGTERM, signal.SIGINT)


def _die_like(sig):
    """Exit the way the kernel did: killed by `sig` (no core file: the kernel's is what matters)."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass
    if sig not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    os.kill(os.getpid(), sig)
    time.sleep(1)  # a stop signal or a blocked one: fall back to the shell's convention
    os._exit(128 + sig)


def _plain(python, kernel_args, why):
    sys.stderr.write(f"[wmss fork client] {why}; starting the kernel as a plain process\n")
    sys.stderr.flush()
    os.execv(python, [python, *kernel_args])


def _ask(sock_path, kernel_args):
    """Connects and sends the job; returns (socket, file of server lines, first reply)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(sock_path)
    umask = os.umask(0)
    os.umask(umask)
    request = json.dumps({"argv": kernel_args, "env": dict(os.environ), "cwd": os.getcwd(), "umask": umask}).encode()
    data = struct.pack("!I", len(request)) + request
    sent = socket.send_fds(conn, [data], [0, 1, 2])
    if sent < len(data):
        conn.sendall(data[sent:])
    replies = conn.makefile("rb")
    first = replies.readline()
    if not first:
        raise ConnectionError("the fork server closed the connection")
    return conn, replies, json.loads(first)


def _wait_gone(pid):
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        time.sleep(0.2)


def main(argv):
    sock_path, python, kernel_args = argv[0], argv[1], argv[2:]
    kernel = None

    def forward(signum, _frame):
        if kernel is None:
            _die_like(signum)  # no kernel yet: end here, as a kernel still importing would
        try:
            os.killpg(kernel, signum)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    try:
        conn, replies, first = _ask(sock_path, kernel_args)
    except (OSError, ValueError) as e:
        _plain(python, kernel_args, f"no fork server at {sock_path} ({e})")
    if "pid" not in first:
        _plain(python, kernel_args, f"the fork server refused the job: {first.get('refused', first)}")
    kernel = int(first["pid"])
    last = replies.readline()
    if not last:
        # the server is gone (its worker died): the kernel got SIGTERM from it; wait for its end
        _wait_gone(kernel)
        sys.stderr.write("[wmss fork client] the fork server went away before the kernel ended\n")
        os._exit(1)
    status = int(json.loads(last)["status"])
    conn.close()
    if status < 0:
        _die_like(-status)
    os._exit(status)


if __name__ == "__main__":
    main(sys.argv[1:])
