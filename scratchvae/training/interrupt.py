"""Ctrl-C during training: finish the step, save, then stop.

A ``KeyboardInterrupt`` raised in the middle of a step would leave the parameters half
updated, a state nobody can save. So while a run trains, the first Ctrl-C (SIGINT) only
sets a flag; the loop looks at it after every step, saves a checkpoint there and stops.
A second Ctrl-C stops at once, keeping the checkpoint saved before.
"""
import contextlib
import signal
import threading


class StopRequest:
    """``requested`` turns True at the first Ctrl-C."""
    requested = False


@contextlib.contextmanager
def deferred_ctrl_c():
    """Within the block, the first SIGINT sets ``requested`` on the yielded object instead of
    raising. Python's own handler is kept where it cannot be replaced (a thread other than
    the main one) or where someone else has replaced it already."""
    stop = StopRequest()
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield stop
        return

    def handler(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
