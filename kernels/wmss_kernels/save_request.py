"""Save on request: SIGUSR1 asks a training kernel for a checkpoint now (docs/kernel-protocol.md).

The activity sends SIGUSR1 when someone runs `wmss checkpoint <run>`. The handler only sets a
flag; the training loop reads it after the optimizer step in flight, saves a complete checkpoint
there as it does every `save_every` steps, and carries on training. The checkpoint line it prints
is the activity's answer. Several requests before the next step end make one checkpoint.

The handler is installed first thing in every kernel (__main__.main), before the kernel records
its pid for the activity to signal: SIGUSR1's default action would kill the process, and a kernel
that does not train (entropy, evaluate) then just ignores the request.
"""

import signal

_requested = False


def install():
    def handler(signum, frame):
        global _requested
        _requested = True

    signal.signal(signal.SIGUSR1, handler)


def take() -> bool:
    """Whether a save was asked for since the last call; clears the request."""
    global _requested
    asked, _requested = _requested, False
    return asked
