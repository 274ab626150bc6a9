"""The one exception type for mistakes a user can make (bad path, bad CSV, wrong checkpoint).

The command line turns it into a single line on stderr and exit code 2; everything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem the user can fix; the message names the file and what to do."""

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)
