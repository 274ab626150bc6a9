"""Decode every image once into a uint8 memmap at the working resolution.

The cache folder is named by what it depends on (dataset folder, layout, host preprocessing) and
holds ``images.npy`` (N x H x W x C, the layout table's order) and ``index.json`` (the file list
with sizes and mtimes, and per-channel statistics of the training split). When a file is added,
removed or touched the fingerprint changes and the cache is rebuilt, atomically: a run that
breaks off leaves the previous cache or none, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from lab3.data.layouts import Layout
from lab3.data.preprocess import Pipeline, load_image
from lab3.errors import UserError

CACHE_VERSION = 3  # 2: grey in float64 (one level apart in 0.03 % of pixels); 3: tightcrop finds
# the cell on a smear's background (black-frame crops are unchanged)


def default_cache_root() -> Path:
    return Path(os.environ.get("LAB3_CACHE", Path.home() / ".cache" / "lab3")).expanduser()


@dataclass
class ImageCache:
    """Decoded images (a read-only memmap) aligned with the layout table's rows."""

    folder: Path
    images: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pipeline: str
    rebuilt: bool

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape)


def fingerprint(paths: list[str]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise UserError("image not found; restore it or remove it from the CSV", path) from None
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_folder(layout: Layout, pipeline: Pipeline, cache_root: Path | None = None) -> Path:
    key = f"v{CACHE_VERSION}|{layout.root}|{layout.name}|{pipeline}"
    name = f"{layout.root.name}-{layout.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    return (cache_root or default_cache_root()) / name


def load_or_build(
    layout: Layout,
    pipeline: Pipeline,
    cache_root: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> ImageCache:
    """The cache for this layout and pipeline, built (or rebuilt) if missing or stale."""
    folder = cache_folder(layout, pipeline, cache_root)
    paths = layout.table["path"].tolist()
    print_ = tqdm.write if progress else (lambda *_: None)
    current = fingerprint(paths)
    index_file = folder / "index.json"
    if index_file.is_file():
        try:
            index = json.loads(index_file.read_text())
        except json.JSONDecodeError:
            index = {}
        if index.get("fingerprint") == current and index.get("paths") == paths:
            return _open(folder, index, pipeline, rebuilt=False)
        print_(f"cache: inputs changed, rebuilding {folder.name}")
    _build(folder, layout.table, pipeline, current, workers, progress)
    return _open(folder, json.loads(index_file.read_text()), pipeline, rebuilt=True)


def _open(folder: Path, index: dict, pipeline: Pipeline, rebuilt: bool) -> ImageCache:
    images = np.load(folder / "images.npy", mmap_mode="r")
    return ImageCache(
        folder, images, tuple(index["mean"]), tuple(index["std"]), str(pipeline), rebuilt
    )


def _decode(args: tuple[str, str]) -> np.ndarray:
    path, spec = args
    return Pipeline.parse(spec)(load_image(path))


def _build(
    folder: Path,
    table: pd.DataFrame,
    pipeline: Pipeline,
    current: str,
    workers: int | None,
    progress: bool,
) -> None:
    paths = table["path"].tolist()
    spec = str(pipeline)
    first = _decode((paths[0], spec))
    shape = (len(paths), *first.shape)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        images = np.lib.format.open_memmap(
            tmp / "images.npy", mode="w+", dtype=np.uint8, shape=shape
        )
        images[0] = first
        workers = workers or os.cpu_count() or 1
        jobs = ((p, spec) for p in paths[1:])
        bar = tqdm(
            total=len(paths), initial=1, desc="decoding images", unit="img", disable=not progress
        )
        with bar:
            if workers > 1 and len(paths) > 64:
                with ProcessPoolExecutor(workers) as pool:
                    results = pool.map(_decode, jobs, chunksize=32)
                    for i, image in enumerate(results, start=1):
                        images[i] = _check_shape(image, shape, paths[i])
                        bar.update()
            else:
                for i, job in enumerate(jobs, start=1):
                    images[i] = _check_shape(_decode(job), shape, paths[i])
                    bar.update()
        images.flush()
        train = np.flatnonzero((table["split"] == "train").to_numpy())
        mean, std = channel_stats(images, train)
        del images
        index = {
            "version": CACHE_VERSION,
            "pipeline": spec,
            "fingerprint": current,
            "shape": list(shape),
            "mean": mean,
            "std": std,
            "paths": paths,
        }
        (tmp / "index.json").write_text(json.dumps(index))
        if folder.exists():
            old = folder.with_name(folder.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_shape(image: np.ndarray, shape: tuple[int, ...], path: str) -> np.ndarray:
    if image.shape != shape[1:]:
        raise UserError(
            f"decodes to {image.shape}, the others to {shape[1:]}; add a resize step "
            "(e.g. --preprocess tightcrop,resize:224) so every image ends the same size",
            path,
        )
    return image


def channel_stats(
    images: np.ndarray, rows: np.ndarray, chunk: int = 64
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (in [0, 1]) of the given rows, computed in chunks."""
    channels = images.shape[-1]
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    count = 0
    for start in range(0, len(rows), chunk):
        block = (
            images[np.sort(rows[start : start + chunk])].reshape(-1, channels).astype(np.float64)
            / 255
        )
        total += block.sum(0)
        total_sq += (block**2).sum(0)
        count += block.shape[0]
    count = max(count, 1)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return mean.round(6).tolist(), std.round(6).tolist()
