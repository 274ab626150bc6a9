"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lab3.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | Path, needed: int = 0) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds.

    A write that fails for want of disk space (ENOSPC, or, for writers that hide it, any error
    while fewer than `needed` bytes are free) becomes one line naming the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600 files; give the result the permissions of an ordinary new file
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except (OSError, RuntimeError) as err:
        tmp_path.unlink(missing_ok=True)  # the torn write's space counts as free
        free = shutil.disk_usage(path.parent).free
        if getattr(err, "errno", None) == errno.ENOSPC or free < needed:
            raise no_room(path, needed, free) from None
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


def no_room(path: Path, needed: int, free: int) -> UserError:
    need = f"it needs about {needed / 2**20:.0f} MiB and " if needed else ""
    return UserError(
        f"no room to write {path.name}: {need}{free / 2**20:.0f} MiB are free on that disk; "
        "free some space, then run it again (--resume continues a training run or a workbook; "
        "the files written before are intact)",
        path.parent,
    )


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")
