"""The working size follows the data's cells within a profile's budget, and says why; the quick
profile keeps its 48 px on the synthetic default's cells."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab3.config import WORKING_SIZE, make_config
from lab3.data.synthetic import write_synthetic_dataset
from lab3.data.working_size import SizeRule, choose_size

QUICK, FULL = WORKING_SIZE["quick"], WORKING_SIZE["full"]


@pytest.mark.parametrize(
    ("side", "rule", "size", "because"),
    [
        (230, QUICK, 48, "the smallest size within the limit of 6"),  # the synthetic default
        (107, QUICK, 48, "within the limit of 6: the profile's own size"),  # smear lymphocytes
        (400, QUICK, 80, "the smallest size within the limit of 6"),  # larger cells: more px
        (700, QUICK, 96, "over the limit of 6: the time budget's largest"),
        (107, FULL, 112, "the smallest size within the limit of 1"),  # no blowing up to 224
        (251, FULL, 224, "over the limit of 1: the time budget's largest"),  # the course's
    ],
)
def test_the_size_is_the_smallest_within_the_blur_limit_and_the_budget(
    side: float, rule: SizeRule, size: int, because: str
) -> None:
    chosen, reason = choose_size(side, rule)
    assert chosen == size and reason.endswith(because)
    assert f"{side:.0f} px a side" in reason and f"averages {side / size:.1f}" in reason


def test_the_quick_profile_keeps_48_px_on_the_synthetic_defaults_cells(tmp_path: Path) -> None:
    data = tmp_path / "synthetic"
    write_synthetic_dataset(data, train=16, valid=4, test=4, size=450, seed=0, progress=False)
    config = make_config("quick", data=str(data))
    assert config.image_size == 48
    assert (
        "px a side" in config.image_size_reason and "the smallest size" in config.image_size_reason
    )
    config.save(tmp_path / "config.json")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["image_size_reason"] == config.image_size_reason, "config.json records why"


def test_an_explicit_size_or_an_unreadable_folder_keeps_the_size_unmeasured(
    tmp_path: Path, small_synthetic: Path
) -> None:
    explicit = make_config("quick", data=str(small_synthetic), image_size=64)
    assert (explicit.image_size, explicit.image_size_reason) == (64, "")
    missing = make_config("full", data=str(tmp_path / "nowhere"))
    assert (missing.image_size, missing.image_size_reason) == (224, "")
    unmeasured = make_config("tiny", data=str(small_synthetic))
    assert (unmeasured.image_size, unmeasured.image_size_reason) == (32, ""), "no rule: tiny"
