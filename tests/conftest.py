"""Shared fixtures: the real format samples, a small synthetic dataset, a private cache folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Every test process uses its own cache folder, never the user's.
os.environ.setdefault("LAB3_CACHE", tempfile.mkdtemp(prefix="lab3-test-cache-"))
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"real format samples not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset in the course layout (160 px images), shared by the session."""
    from lab3.data.synthetic import write_synthetic_dataset

    out = tmp_path_factory.mktemp("synthetic") / "data"
    write_synthetic_dataset(out, train=48, valid=16, test=12, size=160, seed=1, progress=False)
    return out
