"""``kill PID`` (SIGTERM) stops a dglmm command the way Ctrl-C (SIGINT) does: a ``KeyboardInterrupt`` in the main
thread, so ``train`` saves its last completed epoch, ``tune`` fails its running trial (run again on resume) and
``leaderboard`` stops its worker processes and records the interruption.  The exit status is 128 + the signal:
130 after Ctrl-C, 143 after SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []


def _raise(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def _ignore(signum: int, frame: object) -> None:
    """A handler that does nothing: unlike ``SIG_IGN`` it also absorbs a signal that arrived just before it was
    set (Python would raise "Signal N ignored due to race condition" there)."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises ``KeyboardInterrupt`` (in the main thread only: elsewhere Python
    cannot set a handler, and the block runs unchanged).  A handler that the block sets in its place stays
    (a torchrun rank's: SIGTERM there means a peer failed, :mod:`dglmm.train.distributed`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is _raise:
            signal.signal(signal.SIGTERM, previous)


def interrupt_once() -> None:
    """In a worker process: the first SIGTERM (or SIGINT, unless it is ignored, as in a command started in the
    background) raises ``KeyboardInterrupt``; later ones are ignored while the worker records its state (its
    parent kills it if that takes too long)."""
    def stop(signum: int, frame: object) -> None:
        for number in STOP_SIGNALS:
            signal.signal(number, _ignore)
        _raise(signum, frame)

    signal.signal(signal.SIGTERM, stop)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, stop)


@contextlib.contextmanager
def ignoring_stop_signals() -> Iterator[None]:
    """SIGINT and SIGTERM ignored while the block runs: a second Ctrl-C or ``kill`` cannot cut short the
    stopping of worker processes (which is bounded in time)."""
    previous = {number: signal.signal(number, _ignore) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def deferred_stop_signals() -> Iterator[None]:
    """SIGINT and SIGTERM held back while the block runs, then delivered to the handlers that were in place
    (so the block is never cut in the middle: a storage update is applied whole).  Main thread only; an ignored
    signal stays ignored; blocks may nest."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {number: handler for number in STOP_SIGNALS
                if (handler := signal.getsignal(number)) not in (signal.SIG_IGN, None)}  # None: set outside Python
    for number in previous:
        signal.signal(number, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in pending[:1]:  # the first one stops; the handlers in place decide about it
            signal.raise_signal(number)


def stop_requested() -> bool:
    """Whether this process received SIGINT or SIGTERM through these handlers (any exception that follows is
    part of stopping, not a failure of its own)."""
    return bool(_received)


def exit_status() -> int:
    """128 + the stop signal last received: 143 after SIGTERM, 130 after Ctrl-C (or no signal seen)."""
    return 128 + (_received[-1] if _received else signal.SIGINT)


def die_with_parent(parent: int) -> None:
    """Linux: this process gets SIGTERM when its parent (pid ``parent``) dies, even by SIGKILL, so no orphan worker
    runs on; elsewhere nothing."""
    import ctypes
    import os

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGTERM) != 0:  # PR_SET_PDEATHSIG
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
