"""Ctrl-C at safe points (gaussjax/interrupts.py): held until the loop's next check, never lost."""

import gc
import os
import signal

import pytest

from gaussjax import interrupts


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """A suite started as a background job inherits SIGINT ignored; these tests need Python's."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_waits_for_the_next_check_and_a_second_acts_at_once():
    with interrupts.stop_at_safe_points():
        ctrl_c()
        reached = True  # no KeyboardInterrupt before the check: the current step finishes
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
        interrupts.check()  # one Ctrl-C, one stop
    assert reached
    with pytest.raises(KeyboardInterrupt):
        with interrupts.stop_at_safe_points():
            ctrl_c()
            ctrl_c()  # the loop is still busy: a second Ctrl-C acts at once
            pytest.fail("the second Ctrl-C was held too")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_that_lands_in_a_gc_callback_is_not_lost():
    """Python ignores exceptions raised in gc callbacks (JAX registers one): a plain
    KeyboardInterrupt there vanishes, the held request does not."""

    def interrupted_collection(phase, info):
        if phase == "start":
            gc.callbacks.remove(interrupted_collection)
            ctrl_c()

    with interrupts.stop_at_safe_points():
        gc.callbacks.append(interrupted_collection)
        gc.collect()
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()


def test_check_is_a_no_op_outside_the_context_and_the_context_nests():
    interrupts.check()
    with interrupts.stop_at_safe_points():
        with interrupts.stop_at_safe_points():
            ctrl_c()
        with pytest.raises(KeyboardInterrupt):  # the inner block left the outer's request
            interrupts.check()
    interrupts.check()


def test_a_request_no_check_took_is_raised_when_the_block_ends():
    with pytest.raises(KeyboardInterrupt):
        with interrupts.stop_at_safe_points():
            ctrl_c()  # e.g. while the last batch was saved: the run still stops, with its message
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
