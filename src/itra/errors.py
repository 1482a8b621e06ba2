"""The one exception type of a user's mistake: bad input, missing data, a missing optional package, no network, a
service that does not start, a full disk.

Raised at the boundary (where the input is first read) with a one-line message that names the value or file and
what to do; `itra`'s CLI prints it as `itra <command>: error: <message>` and exits with 2. Any other exception is a
bug of itra's and traces back. Each kind is also the builtin exception it refines, so `except ValueError` in a
user's code still catches a bad value.
"""


class UserError(Exception):
    """A user's mistake, told in one line (module docstring)."""


class BadValue(UserError, ValueError):
    """A value (flag, argument, config field, file content) that is out of range or contradicts another."""


class MissingFile(UserError, FileNotFoundError):
    """A dataset, run directory, checkpoint or model directory that is not there."""


class MissingPackage(UserError, ModuleNotFoundError):
    """An optional package that is not installed (the message says what to install)."""


class NoNetwork(UserError, ConnectionError):
    """A download that needs the network this machine does not have."""


class CannotStart(UserError, RuntimeError):
    """A service a command starts on this machine (a local Ray instance) that fails to; the message quotes why."""


class CannotWrite(UserError, OSError):
    """A file of a run that cannot be written (a full disk, a read-only folder); the message names it."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of `error`'s message, or its type's name when it has none (`EOFError()`):
    what a one-line message quotes of an exception raised by another library."""
    return next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
