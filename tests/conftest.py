"""Shared fixtures: format samples (real, or stand-ins), small datasets, a private cache folder."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from builders import write_course_dataset, write_format_samples
from hypothesis import HealthCheck, settings

# Property tests: few examples by default, so the suite stays minutes on 2 cores;
# HYPOTHESIS_PROFILE=thorough runs many more (before a release, or hunting a bug).
settings.register_profile(
    "ci", max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Every test process uses its own cache folder, never the user's, and removes it when it ends
# (a mutation run starts pytest once per mutant).
if "LAB3_CACHE" not in os.environ:
    os.environ["LAB3_CACHE"] = tempfile.mkdtemp(prefix="lab3-test-cache-")
    atexit.register(shutil.rmtree, os.environ["LAB3_CACHE"], ignore_errors=True)
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
# The real format samples sit beside the project; LAB3_FIXTURES points elsewhere (a missing
# folder shows what a plain clone runs).
FIXTURES = Path(os.environ.get("LAB3_FIXTURES", ROOT.parent / "shared" / "fixtures"))


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real format samples when present, else stand-ins with the same names and formats:
    the format tests always run, and on a checkout beside ../shared also on the real files."""
    if FIXTURES.is_dir():
        return FIXTURES
    return write_format_samples(tmp_path_factory.mktemp("fixtures"))


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset in the course layout (160 px images), shared by the session."""
    from lab3.data.synthetic import write_synthetic_dataset

    out = tmp_path_factory.mktemp("synthetic") / "data"
    write_synthetic_dataset(out, train=48, valid=16, test=12, size=160, seed=1, progress=False)
    return out


@pytest.fixture(scope="session")
def learnable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny course-layout dataset a few epochs of ResNet18 learn (a colour cue), so checks on
    labels, accuracy and per-ID predictions are not satisfied by a majority-class model."""
    return write_course_dataset(tmp_path_factory.mktemp("learnable") / "data")
