"""``dglmm.interrupts``: SIGTERM raises ``KeyboardInterrupt`` as Ctrl-C does, with real signals to this process."""

from __future__ import annotations

import os
import signal
import time

import pytest

from dglmm.interrupts import (
    deferred_stop_signals,
    exit_status,
    ignoring_stop_signals,
    interrupt_once,
    stop_requested,
    terminate_as_interrupt,
)


@pytest.fixture(autouse=True)
def restore_handlers():
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


def _deliver(number: int) -> None:
    os.kill(os.getpid(), number)
    time.sleep(0.05)  # the Python handler runs between bytecodes, here at the latest


def test_sigterm_raises_keyboard_interrupt_in_the_block_only():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), terminate_as_interrupt():
        _deliver(signal.SIGTERM)
    assert exit_status() == 143 and signal.getsignal(signal.SIGTERM) == before
    with pytest.raises(KeyboardInterrupt), terminate_as_interrupt():
        raise KeyboardInterrupt  # Ctrl-C, or an interrupt raised by code
    assert exit_status() == 130


def test_a_handler_set_inside_the_block_stays():
    def peer_failed(signum, frame):
        raise RuntimeError("peer")

    with terminate_as_interrupt():
        signal.signal(signal.SIGTERM, peer_failed)
    assert signal.getsignal(signal.SIGTERM) is peer_failed


def test_a_worker_is_interrupted_once_and_ignores_later_signals():
    signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupt_once()
    with pytest.raises(KeyboardInterrupt):
        _deliver(signal.SIGINT)
    _deliver(signal.SIGTERM)  # while it records its state: nothing happens
    _deliver(signal.SIGINT)
    assert exit_status() == 130


def test_an_ignored_sigint_stays_ignored_in_a_worker():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a command started in the background
    interrupt_once()
    _deliver(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        _deliver(signal.SIGTERM)
    assert exit_status() == 143


def test_stop_signals_are_absorbed_while_workers_are_stopped():
    with terminate_as_interrupt():
        with ignoring_stop_signals():
            _deliver(signal.SIGTERM)
            _deliver(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            _deliver(signal.SIGTERM)  # the handler is back after the block


def test_a_deferred_signal_is_delivered_after_the_block_to_the_handler_in_place():
    finished = []
    with pytest.raises(KeyboardInterrupt), terminate_as_interrupt():
        with deferred_stop_signals():
            _deliver(signal.SIGTERM)
            with deferred_stop_signals():  # nested: held back by both
                _deliver(signal.SIGTERM)
            finished.append("inner")
            _deliver(signal.SIGINT)
            finished.append("outer")
        finished.append("after")  # not reached: delivered at the end of the outer block
    assert finished == ["inner", "outer"] and exit_status() == 143 and stop_requested()


def test_an_ignored_signal_stays_ignored_through_a_deferred_block():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with deferred_stop_signals():
        _deliver(signal.SIGINT)
    _deliver(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
