"""The synthetic default dataset: generation speed, realism against the real fixtures, difficulty.

Three questions, one table each:

* speed: images/s on one core (render + BMP encode, in-process) and on all cores (the real
  `write_synthetic_dataset`, with its process pool and disk writes);
* realism: the same pixel statistics on the real C-NMC fixtures and on the generated images,
  per class;
* difficulty: the majority class, logistic regression on hand-crafted features (the
  `feature_baseline`), and the ceiling of a classifier that sees the latent cues themselves;
  with ``--cnn``, lab3's ResNet-18 trained from scratch on the whole frame resized vs a tight crop
  around the cell, which is where the fine cues should make preprocessing matter.

    python benchmarks/bench_synthetic.py
    python benchmarks/bench_synthetic.py --train 300 --valid 100 --test 100 --tag quick
    python benchmarks/bench_synthetic.py --train 6000 --valid 1000 --test 1000 --cnn --tag cnn

Prints markdown tables and writes ``benchmarks/results/synthetic[_<tag>].json`` and ``.md`` with
the exact command, versions and CPU.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageFilter

from lab3.bench.machine import cpu_name
from lab3.data import synthetic

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
FIXTURES = ROOT.parent / "shared" / "fixtures" / "cnmc"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=int, default=synthetic.DEFAULT_TRAIN)
    p.add_argument("--valid", type=int, default=synthetic.DEFAULT_VALID)
    p.add_argument("--test", type=int, default=synthetic.DEFAULT_TEST)
    p.add_argument("--size", type=int, default=450)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--speed-images", type=int, default=40, help="per one-core repeat")
    p.add_argument("--repeats", type=int, default=3, help="one-core timing repeats")
    p.add_argument("--stats-images", type=int, default=400, help="generated images measured")
    p.add_argument("--fixtures", type=Path, default=FIXTURES, help="folder of real C-NMC BMPs")
    p.add_argument("--ceiling-cells", type=int, default=20000)
    p.add_argument(
        "--cnn", action="store_true", help="also train ResNet-18 per preprocessing (GPU advised)"
    )
    p.add_argument("--cnn-epochs", type=int, default=20)
    p.add_argument("--tag", default="")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    return p.parse_args(argv)


# --- speed -----------------------------------------------------------------------------------


def one_core_speed(args: argparse.Namespace) -> dict:
    """Render and BMP-encode in this process: the per-worker cost, without pool or disk."""
    subjects = synthetic.make_subjects(args.seed)
    rates = []
    for r in range(args.repeats):
        start = time.perf_counter()
        for i in range(args.speed_images):
            label = int(i % 3 != 0)
            style = subjects[i % len(subjects)]
            rng = synthetic.image_rng(args.seed, "train", r * args.speed_images + i)
            img = synthetic.render_cell(rng, label, style, args.size)
            Image.fromarray(img).save(io.BytesIO(), format="BMP")
        rates.append(args.speed_images / (time.perf_counter() - start))
    return {"median": statistics.median(rates), "best": max(rates), "repeats": rates}


# --- pixel statistics ------------------------------------------------------------------------


def image_stats(img: np.ndarray) -> dict[str, float]:
    """What the fixtures README measures, plus texture energy inside the cell."""
    mask = img.max(axis=2) > 0
    rgb = img.astype(np.float32)
    lum = rgb.mean(axis=2)
    inner = synthetic._erode(mask, 12)
    blurred = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(2)), np.float32)
    coarse = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(8)), np.float32)
    return {
        "mean_pixel": float(img.mean()),
        "black_fraction": float((~mask).mean()),
        "diameter_px": float(2 * np.sqrt(mask.sum() / np.pi)),
        "cell_r": float(rgb[mask][:, 0].mean()),
        "cell_g": float(rgb[mask][:, 1].mean()),
        "cell_b": float(rgb[mask][:, 2].mean()),
        "lum_sd": float(lum[inner].std()),
        "fine_energy": float((lum - blurred.mean(axis=2))[inner].std()),
        "mid_energy": float((blurred.mean(axis=2) - coarse.mean(axis=2))[inner].std()),
    }


def summarise(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    keys = rows[0].keys()
    return {
        k: {
            "mean": float(np.mean([r[k] for r in rows])),
            "min": float(np.min([r[k] for r in rows])),
            "max": float(np.max([r[k] for r in rows])),
        }
        for k in keys
    }


def real_stats(folder: Path) -> dict[str, dict]:
    groups: dict[str, list] = {"hem (0)": [], "all (1)": []}
    for path in sorted(folder.glob("*.bmp")):
        img = np.asarray(Image.open(path).convert("RGB"))
        groups["all (1)" if path.stem.endswith("_all") else "hem (0)"].append(image_stats(img))
    return {g: {"n": len(rows), **summarise(rows)} for g, rows in groups.items() if rows}


def synthetic_stats(out: Path, meta, n: int) -> dict[str, dict]:
    result = {}
    for label, name in ((0, "hem (0)"), (1, "all (1)")):
        paths = meta[meta["label"] == label]["path"].tolist()[: max(1, n // 2)]
        rows = [image_stats(np.asarray(Image.open(out / p))) for p in paths]
        result[name] = {"n": len(rows), **summarise(rows)}
    return result


STAT_COLUMNS = [
    ("mean_pixel", "mean pixel", 1),
    ("black_fraction", "black fraction", 3),
    ("diameter_px", "cell diameter (px)", 0),
    ("cell_r", "cell R", 0),
    ("cell_g", "cell G", 0),
    ("cell_b", "cell B", 0),
    ("lum_sd", "interior lum. sd", 1),
    ("fine_energy", "fine texture (<2 px)", 2),
    ("mid_energy", "mid texture (2-8 px)", 2),
]


def stats_table(real: dict, synth: dict) -> str:
    head = "| data | class | n | " + " | ".join(label for _, label, _ in STAT_COLUMNS) + " |"
    lines = [head, "|---|---|---:|" + "---:|" * len(STAT_COLUMNS)]
    for source, groups in (("real", real), ("synthetic", synth)):
        for group, s in groups.items():
            cells = [
                f"{s[k]['mean']:.{d}f} ({s[k]['min']:.{d}f}-{s[k]['max']:.{d}f})"
                for k, _, d in STAT_COLUMNS
            ]
            lines.append(f"| {source} | {group} | {s['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- optional: a CNN per preprocessing ---------------------------------------------------------


def prepare(task: tuple[str, str, int]) -> np.ndarray:
    """One image as the CNN sees it: the whole frame resized, or a square tight crop resized."""
    path, mode, size = task
    img = np.asarray(Image.open(path).convert("RGB"))
    if mode == "crop":
        ys, xs = np.nonzero(img.max(axis=2))
        side = max(ys.max() - ys.min(), xs.max() - xs.min()) + 9
        cy, cx = (ys.max() + ys.min()) // 2, (xs.max() + xs.min()) // 2
        canvas = np.zeros((side, side, 3), np.uint8)
        y0, x0 = cy - side // 2, cx - side // 2
        sy = slice(max(y0, 0), min(y0 + side, img.shape[0]))
        sx = slice(max(x0, 0), min(x0 + side, img.shape[1]))
        canvas[sy.start - y0 : sy.stop - y0, sx.start - x0 : sx.stop - x0] = img[sy, sx]
        img = canvas
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))


def cnn_check(out: Path, meta, args: argparse.Namespace) -> list[dict]:
    """Train lab3's ResNet-18 from scratch per preprocessing; accuracy on valid+test."""
    import multiprocessing as mp

    import torch
    import torch.nn.functional as F

    from lab3.models import build_model

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train = (meta["split"] == "train").to_numpy()
    labels = torch.tensor(meta["label"].to_numpy())
    rows = []
    for mode, size in (("full", 224), ("crop", 224), ("full", 112), ("crop", 112)):
        tasks = [(str(out / p), mode, size) for p in meta["path"]]
        with mp.get_context("spawn").Pool(args.workers) as pool:
            images = np.stack(pool.map(prepare, tasks, chunksize=32))
        x = torch.as_tensor(images).permute(0, 3, 1, 2).contiguous().to(device)
        y = labels.to(device)
        x_train, y_train, x_eval, y_eval = x[train], y[train], x[~train], y[~train]
        mean = x_train.float().mean(dim=(0, 2, 3), keepdim=True)
        std = x_train.float().std(dim=(0, 2, 3), keepdim=True)
        torch.manual_seed(args.seed)
        model = build_model("resnet18", num_classes=2).to(device, memory_format=torch.channels_last)
        batch = 128
        steps = args.cnn_epochs * ((len(x_train) + batch - 1) // batch)
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
        use_amp = device.type == "cuda"
        history = []
        start = time.perf_counter()
        for _ in range(args.cnn_epochs):
            model.train()
            for idx in torch.randperm(len(x_train), device=device).split(batch):
                xb = (x_train[idx].float() - mean) / std
                xb = torch.rot90(xb, int(torch.randint(4, ())), dims=(2, 3))  # cells have no up
                if torch.rand(()) < 0.5:
                    xb = xb.flip(3)
                with torch.autocast(device.type, torch.bfloat16, enabled=use_amp):
                    loss = F.cross_entropy(
                        model(xb.contiguous(memory_format=torch.channels_last)), y_train[idx]
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            model.eval()
            correct = 0
            with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=use_amp):
                for idx in torch.arange(len(x_eval), device=device).split(256):
                    xb = (x_eval[idx].float() - mean) / std
                    correct += int((model(xb).argmax(1) == y_eval[idx]).sum())
            history.append(correct / len(x_eval))
        row = {
            "preprocess": f"{'whole frame' if mode == 'full' else 'tight crop'} -> {size} px",
            "final": history[-1],
            "best": max(history),
            "epochs": args.cnn_epochs,
            "train_images": int(train.sum()),
            "eval_images": int((~train).sum()),
            "seconds": time.perf_counter() - start,
            "history": history,
        }
        print(
            f"cnn {row['preprocess']}: final {row['final']:.3f} best {row['best']:.3f}",
            file=sys.stderr,
        )
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raw = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "benchmarks/bench_synthetic.py", *raw])
    setup = {
        "command": command,
        "cpu": cpu_name(os.cpu_count() or 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "counts": {"train": args.train, "valid": args.valid, "test": args.test},
        "size": args.size,
        "seed": args.seed,
        "workers": args.workers,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(f"{command}\n{setup['cpu']}", file=sys.stderr)

    one = one_core_speed(args)
    print(f"one core: {one['median']:.1f} img/s (best {one['best']:.1f})", file=sys.stderr)
    n_images = args.train + args.valid + args.test
    with tempfile.TemporaryDirectory(prefix="bench-synthetic-") as tmp:
        out = Path(tmp) / "data"
        start = time.perf_counter()
        meta = synthetic.write_synthetic_dataset(
            out, args.train, args.valid, args.test, args.size, args.seed, args.workers, True
        )
        wall = time.perf_counter() - start
        print(f"all cores: {n_images / wall:.1f} img/s ({wall:.1f} s)", file=sys.stderr)
        synth = synthetic_stats(out, meta, args.stats_images)
        start = time.perf_counter()
        baseline = synthetic.feature_baseline(meta, out, args.workers)
        baseline_s = time.perf_counter() - start
        cnn = cnn_check(out, meta, args) if args.cnn else []
    real = real_stats(args.fixtures) if args.fixtures.is_dir() else {}
    ceiling = synthetic.latent_ceiling(args.ceiling_cells, args.seed)
    evaluated = meta[meta["split"] != "train"]["label"]
    majority = float(max(evaluated.mean(), 1 - evaluated.mean()))

    speed = {
        "one_core_img_per_s": one,
        "all_cores_img_per_s": n_images / wall,
        "all_cores_wall_s": wall,
        "workers": args.workers,
        "images": n_images,
    }
    difficulty = {
        "majority": majority,
        "feature_baseline": baseline,
        "feature_baseline_s": baseline_s,
        "latent_ceiling": ceiling,
        "evaluated_on": f"valid+test ({len(evaluated)} images), trained on train ({args.train})",
    }
    speed_md = (
        "| measure | value |\n|---|---:|\n"
        f"| one core, render + BMP encode (median of {args.repeats} x {args.speed_images}) "
        f"| {one['median']:.1f} img/s (best {one['best']:.1f}) |\n"
        f"| all cores ({args.workers} workers), write_synthetic_dataset, {n_images} images "
        f"| {n_images / wall:.1f} img/s ({wall:.1f} s) |"
    )
    difficulty_md = (
        "| classifier | accuracy |\n|---|---:|\n"
        f"| majority class (always 1) | {majority:.3f} |\n"
        "| logistic regression on 10 hand-crafted features (`feature_baseline`) "
        f"| {baseline:.3f} |\n"
        "| gradient boosting on the latent cues (`latent_ceiling`, "
        f"{args.ceiling_cells} cells) | {ceiling:.3f} |"
    )
    if cnn:
        difficulty["cnn"] = cnn
        difficulty_md += "".join(
            f"\n| ResNet-18 from scratch, {r['preprocess']}, {r['epochs']} epochs (final / best) "
            f"| {r['final']:.3f} / {r['best']:.3f} |"
            for r in cnn
        )
    real_note = f"{sum(g['n'] for g in real.values())} real fixtures" if real else "no fixtures"
    table = stats_table(real, synth)
    report = (
        f"## Speed\n\n{speed_md}\n\n## Real vs synthetic ({real_note}; mean (min-max))\n\n"
        f"{table}\n\n## Difficulty ({difficulty['evaluated_on']})\n\n{difficulty_md}\n"
    )
    print(report)

    stem = "synthetic" + (f"_{args.tag}" if args.tag else "")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    payload = {**setup, "speed": speed, "real": real, "synthetic": synth, "difficulty": difficulty}
    (args.out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")
    md = (
        "# Synthetic dataset: speed, realism, difficulty\n\n"
        f"- command: `{command}`\n"
        f"- CPU: {setup['cpu']}; Python {setup['python']}, numpy {np.__version__}, "
        f"Pillow {PIL.__version__}\n"
        f"- dataset: {args.train}/{args.valid}/{args.test} images, {args.size} px, "
        f"seed {args.seed}\n"
        f"- date: {setup['date']}\n\n"
        f"{report}"
    )
    (args.out_dir / f"{stem}.md").write_text(md)
    print(f"wrote {args.out_dir / stem}.json and .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
