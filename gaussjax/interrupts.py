"""Ctrl-C at safe points: a long loop stops between its dispatches, never halfway through a file
write and never inside a callback that swallows the interrupt. (Python ignores an exception raised
in a gc callback, JAX's among them, so a KeyboardInterrupt that lands there is lost and the run
goes on; a CI run of the encoder's Ctrl-C test caught exactly that.)

    with interrupts.stop_at_safe_points():
        while not done:
            dispatch()
            interrupts.check()    # raises KeyboardInterrupt here after a Ctrl-C

A first Ctrl-C asks for the stop (silently: the loop's own KeyboardInterrupt handler prints the
one line a user sees); a second one, while the loop is still busy, raises at once. A request no
`check` took is raised when the block ends, so none is lost. Outside the context `check` does
nothing, so library loops call it unconditionally.

Each process decides for itself: under jax.distributed a Ctrl-C reaches the processes a shell
signals (all of them for a process group), and one that alone stops leaves the others waiting in
their next collective, as before.
"""

import contextlib
import signal
import threading

_state = {"active": False, "requested": False}


def check() -> None:
    """Raises KeyboardInterrupt when a Ctrl-C came since the enclosing context began."""
    if _state["requested"]:
        _state["requested"] = False
        raise KeyboardInterrupt


@contextlib.contextmanager
def stop_at_safe_points():
    """Within the block a Ctrl-C is held until the next `check`. Re-entrant; a no-op off the
    main thread (only it may set signal handlers) or where SIGINT is ignored (a background job)."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # set outside Python: restore Python's own
        previous = signal.default_int_handler
    main = threading.current_thread() is threading.main_thread()
    if _state["active"] or not main or previous is signal.SIG_IGN:
        yield
        return

    def hold(signum, frame):
        _state["requested"] = True
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C acts at once

    _state.update(active=True, requested=False)
    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        pending = _state["requested"]
        _state.update(active=False, requested=False)
    if pending:  # the block ended normally after a Ctrl-C that no check took
        raise KeyboardInterrupt
