"""What a kernel forked by the fork server does before and after `python -m wmss_kernels`'s main
(docs/kernel-launch.md): become the process a plain start would have made, run the kernel the
way `python -m` runs it, and end the way the interpreter would have ended. Never returns.
"""

import atexit
import os
import runpy
import signal
import sys
import threading
import traceback


def run(conn, fds, request, num_threads, close_fds):
    """In the child right after fork. `fds`: the client's stdin, stdout, stderr; `close_fds`: the
    server's own descriptors; `num_threads`: torch's intra-op threads when the job's environment
    asks for other than the server's (None: the same as the server)."""
    code = 1
    try:
        os.setsid()  # its own session and process group, like the bridge's detached spawn
        _default_signals()
        for fd in close_fds:
            _close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            _close(fd)
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        os.environ.clear()
        os.environ.update(request["env"])
        _die_with_client(conn)
        _fresh_state(request["cwd"], num_threads)
        sys.argv = ["-m", *request["argv"][2:]]
        code = _run_kernel_main()
    except BaseException:  # noqa: BLE001 - whatever happens, this process must not return into the server
        try:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code or 1)
    os._exit(code)


def _close(fd):
    try:
        os.close(fd)
    except OSError:
        pass


def _default_signals():
    """The server's handlers and wake-up fd are not the kernel's: start as a fresh interpreter."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _die_with_client(conn):
    """The client stands for this kernel towards the bridge. When it dies (the bridge SIGKILLed
    its process group: a stall, the end of the cancellation grace), so does the kernel."""
    conn.setblocking(True)

    def watch():
        try:
            while conn.recv(64):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="wmss-fork-client-watch", daemon=True).start()


def _fresh_state(cwd, num_threads):
    """wmss_kernels reads its environment when imported (faults, protocol): the server dropped
    those modules after preloading, so they load again here with the job's environment."""
    for name in [m for m in sys.modules if m == "wmss_kernels" or m.startswith("wmss_kernels.")]:
        del sys.modules[name]
    if sys.path and sys.path[0] != cwd:
        sys.path[0] = cwd  # `python -m` puts its working directory first
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()  # a fresh process draws a fresh global seed
    if num_threads is not None:
        import torch

        torch.set_num_threads(num_threads)


def _run_kernel_main():
    """runpy is what `python -m wmss_kernels` uses; the end mirrors the interpreter's exit."""
    code = 0
    try:
        runpy.run_module("wmss_kernels", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = _exit_code(e.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        _finish()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)  # Python dies of SIGINT on an uncaught KeyboardInterrupt
    except BaseException:  # noqa: BLE001 - printed as the interpreter would, exit code 1
        sys.excepthook(*sys.exc_info())
        code = 1
    _finish()
    return code


def _exit_code(value):
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _finish():
    """Interpreter shutdown, the parts a kernel can see: wait for non-daemon threads, run atexit
    handlers (logging flushes its files there), flush stdout and stderr."""
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
