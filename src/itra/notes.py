"""A note: one line on stderr, `note: <message>`, about something a run does other than what its flags say (a flag it
does not read, a warm-up longer than the run, worker processes it does not start). Not an error: the run goes on.
The CLI and the library print notes through `note`, so every note reads the same, whoever prints it."""
from __future__ import annotations

import sys


def note(message: str) -> None:
    """Print `note: <message>` on stderr (under torchrun the caller prints from rank 0 only)."""
    print(f"note: {message}", file=sys.stderr)
