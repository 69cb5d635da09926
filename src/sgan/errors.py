"""The exceptions users see: the CLI prints their message on one line and exits 2 (bad input)
or 128 + the signal's number (stopped)."""

import signal


class SganError(Exception):
    """Bad input or a bad request; the message names the file and the problem."""


class WriteError(SganError):
    """An output file could not be written (no space, no permission, no such folder)."""


class Interrupted(Exception):
    """SIGINT/SIGTERM stopped the command; `message` says what was kept."""

    def __init__(self, signum: int, message: str = "", *, quiet: bool = False) -> None:
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name}" + (f" {message}" if message else ""))
        self.signum = signum
        self.quiet = quiet  # data-parallel ranks other than 0: rank 0 says it
