"""A file that cannot be written for want of disk space: one line, the old file intact."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lab3.engine.checkpoint import save_checkpoint, state_bytes
from lab3.errors import UserError
from lab3.fileio import write_text_atomic

MIB = 2**20
# what torch's zip writer says when the disk fills under it
TORCH_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 35577472 vs 35577368"


def state(mib: int = 8) -> dict:
    weights = torch.zeros(mib * MIB // 4)  # float32
    return {"model": {"w": weights}, "history": [{"epoch": 1}], "rng": (torch.zeros(256),)}


def failing_save(error: Exception):
    def save(obj, path) -> None:
        Path(path).write_bytes(b"partial")  # a torn write, as the full disk leaves it
        raise error

    return save


def free_space(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    usage = SimpleNamespace(total=100 * 2**30, used=100 * 2**30 - free, free=free)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage)


def test_state_bytes_counts_nested_tensors() -> None:
    assert state_bytes(state(8)) == 8 * MIB + 256 * 4
    assert state_bytes({"config": {"lr": 0.1}, "names": ["a"]}) == 0


@pytest.mark.parametrize(
    "error", [RuntimeError(TORCH_FULL), OSError(errno.ENOSPC, "No space left on device")]
)
def test_a_full_disk_is_named_and_the_last_checkpoint_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    last = tmp_path / "last.pt"
    save_checkpoint(last, {"model": {"w": torch.ones(3)}, "epoch": 1})
    before = last.read_bytes()
    monkeypatch.setattr(torch, "save", failing_save(error))
    # ENOSPC is a full disk whatever the free space reads afterwards
    free_space(monkeypatch, 2 * MIB if isinstance(error, RuntimeError) else 10 * 2**30)
    with pytest.raises(UserError) as caught:
        save_checkpoint(last, state(8))
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}: no room to write last.pt")
    assert "needs about 8 MiB" in message and "--resume" in message
    if isinstance(error, RuntimeError):
        assert "2 MiB are free" in message
    assert "\n" not in message and "inline_container" not in message
    assert last.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left


def test_another_write_error_keeps_its_own_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room to spare, a failed write is not blamed on the disk."""
    monkeypatch.setattr(torch, "save", failing_save(RuntimeError(TORCH_FULL)))
    free_space(monkeypatch, 10 * 2**30)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        save_checkpoint(tmp_path / "best.pt", state(1))
    assert list(tmp_path.iterdir()) == []


def test_any_atomic_write_names_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same line for every file written atomically (history, config, reports), where Python
    reports ENOSPC; the old file stays."""
    history = tmp_path / "history.csv"
    write_text_atomic(history, "epoch\n1\n")

    def full(self, text) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    free_space(monkeypatch, 3 * MIB)
    with pytest.raises(UserError) as caught:
        write_text_atomic(history, "epoch\n1\n2\n")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}: no room to write history.csv: 3 MiB are free")
    assert "needs" not in message and "--resume" in message
    assert history.read_bytes() == b"epoch\n1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]
