"""The exceptions users see: the CLI prints their message on one line and exits 2 (bad input)
or 128 + the signal's number (stopped)."""

import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

STOPS = (signal.SIGINT, signal.SIGTERM)  # the signals that stop a command: Ctrl-C, kill, timeout, scancel


class SganError(Exception):
    """Bad input or a bad request; the message names the file and the problem."""


class WriteError(SganError):
    """An output file could not be written (no space, no permission, no such folder)."""


class Interrupted(BaseException):
    """SIGINT/SIGTERM stopped the command; `message` says what was kept. A BaseException, like
    KeyboardInterrupt, so that a library's `except Exception` cannot swallow it: a SIGINT raised
    while torch was being imported on a loaded machine once vanished so, and the run trained on."""

    def __init__(self, signum: int, message: str = "", *, quiet: bool = False) -> None:
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name}" + (f" {message}" if message else ""))
        self.signum = signum
        self.quiet = quiet  # data-parallel ranks other than 0: rank 0 says it


@contextmanager
def on_signals(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """`handler` for SIGINT and SIGTERM while the block runs, the previous handlers after it
    (only where handlers can be set: the main thread; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in STOPS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait for the block's end, then stop the command: for imports of C
    extensions, which an exception raised inside leaves half-loaded (numpy then failed with
    "cannot load module more than once per process" instead of stopping)."""
    caught: list[int] = []
    with on_signals(lambda signum, frame: caught.append(signum)):
        yield
    if caught:
        raise Interrupted(caught[0])



PAUSE_AT = "SGAN_PAUSE_AT"  # "<point>:<file>": for tests only, never set by sgan


def pause_point(name: str) -> None:
    """A moment a test stops a command at (tests/test_signals.py), instead of guessing it with
    sleeps: where the environment's SGAN_PAUSE_AT names this point, the process writes its pid to
    the file named there, waits for SIGINT or SIGTERM, and hands it to its handler as if it had
    arrived here. Nothing anywhere else."""
    point, _, file = os.environ.get(PAUSE_AT, "").partition(":")
    if point != name:
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)  # one sent before the wait stays pending for it
    try:
        Path(file).write_text(str(os.getpid()))
        signum = signal.sigwait(STOPS)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    signal.raise_signal(signum)
