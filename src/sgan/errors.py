"""The one exception type users see: the CLI prints its message on one line and exits 2."""


class SganError(Exception):
    """Bad input or a bad request; the message names the file and the problem."""
