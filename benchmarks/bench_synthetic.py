"""The synthetic default dataset: generation speed, realism against the real fixtures, difficulty.

Three questions, one table each:

* speed: images/s on one core (render + BMP encode, in-process) and on all cores (the real
  `write_synthetic_dataset`, with its process pool and disk writes);
* realism: the same pixel statistics on the real C-NMC fixtures and on the generated images,
  per class;
* difficulty: the majority class, logistic regression on hand-crafted features (the
  `feature_baseline`), and the ceiling of a classifier that sees the latent cues themselves
  (all of them, or only the global and mid-scale ones); with ``--resnet``, ResNet-18 trained
  and scored by the project's own CLI (`lab3 train --profile quick`, `lab3 predict`, scored as
  `lab3 score` does) per preprocessing and working size: the tight crop and resolution effects.

    python benchmarks/bench_synthetic.py
    python benchmarks/bench_synthetic.py --train 300 --valid 100 --test 100 --tag quick
    python benchmarks/bench_synthetic.py --resnet tightcrop@48,none@48,tightcrop@64

Prints markdown tables and writes ``benchmarks/results/synthetic[_<tag>].json`` and ``.md``, each
opening with the provenance header (command, date, commit, CPU, versions).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageFilter

from lab3.bench.machine import cpu_name
from lab3.bench.provenance import (
    EXECUTION,
    command_line,
    config_execution,
    execution_summary,
    provenance,
    write_results,
)
from lab3.data import synthetic
from lab3.data.features import erode
from lab3.data.formats import TRUTH_CSV
from lab3.metrics import standard_error

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
        "--resnet",
        default="",
        help='also train ResNet-18 with lab3 per "preprocess@size", e.g. "tightcrop@48,none@48"',
    )
    p.add_argument("--resnet-args", default="", help='extra `lab3 train` flags, e.g. "--epochs 4"')
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
    inner = erode(mask, 12)
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


# --- optional: ResNet-18 trained by the project's own CLI, per preprocessing and size ---------


def parse_variants(spec: str) -> list[tuple[str, int]]:
    """ "tightcrop@48,none@48" -> [("tightcrop", 48), ("none", 48)]."""
    variants = []
    for token in filter(None, spec.split(",")):
        preprocess, _, size = token.partition("@")
        variants.append((preprocess, int(size)))
    return variants


def lab3_cli(*args: str) -> None:
    """Run `python -m lab3 ...` as a user would; its output goes to this script's stderr."""
    subprocess.run([sys.executable, "-m", "lab3", *args], check=True, stdout=sys.stderr)


def resnet_check(out: Path, args: argparse.Namespace, work: Path) -> list[dict]:
    """Train ResNet-18 with `lab3 train --profile quick` per variant; score `lab3 predict`.

    The numbers are what a user of the CLI sees: the profile's recipe (plus --resnet-args),
    the profile's test-time augmentation, scored against test_labels.csv like `lab3 score`.
    """
    from lab3.submission import score

    rows = []
    for preprocess, size in parse_variants(args.resnet):
        run = work / f"resnet18-{preprocess}-{size}"
        flags = ["--preprocess", preprocess, "--image-size", str(size), "--seed", str(args.seed)]
        start = time.perf_counter()
        lab3_cli("train", "--profile", "quick", "--model", "resnet18", "--data", str(out),
                 "--out", str(run), *flags, *shlex.split(args.resnet_args))  # fmt: skip
        seconds = time.perf_counter() - start
        lab3_cli("predict", "--checkpoint", str(run / "best.pt"), "--out", str(run / "sub.csv"))
        metrics = score(run / "sub.csv", out / TRUTH_CSV)
        config = json.loads((run / "config.json").read_text())
        config = {k: v for k, v in config.items() if k not in ("data", "out")}  # temp paths
        row = {
            "preprocess": preprocess,
            "image_size": size,
            "test_accuracy": metrics["accuracy"],
            "normal_recall": metrics["specificity"],
            "blast_recall": metrics["sensitivity"],
            "test_images": int(metrics["n"]),
            "train_seconds": seconds,
            "config": config,
        }
        print(f"resnet18 {preprocess}@{size}: test {row['test_accuracy']:.3f}", file=sys.stderr)
        rows.append(row)
    return rows


def resnet_table(rows: list[dict]) -> str:
    lines = [
        "| preprocessing | size (px) | epochs | train images | test accuracy (+- 1 se) "
        "| normal recall | train time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        acc, se = r["test_accuracy"], standard_error(r["test_accuracy"], r["test_images"])
        limit = r["config"]["train_limit"] or "all"
        lines.append(
            f"| {r['preprocess']} | {r['image_size']} | {r['config']['epochs']} | {limit} "
            f"| {acc:.3f} +- {se:.3f} | {r['normal_recall']:.3f} | {r['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line(__file__, argv, env=("OMP_NUM_THREADS",))
    setup = {
        "cpu": cpu_name(os.cpu_count() or 1),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "counts": {"train": args.train, "valid": args.valid, "test": args.test},
        "size": args.size,
        "seed": args.seed,
        "workers": args.workers,
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
        resnet = resnet_check(out, args, Path(tmp)) if args.resnet else []
    real = real_stats(args.fixtures) if args.fixtures.is_dir() else {}
    ceiling = synthetic.latent_ceiling(args.ceiling_cells, args.seed)
    coarse_ceiling = synthetic.latent_ceiling(args.ceiling_cells, args.seed, ("global", "mid"))
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
        "latent_ceiling_global_mid": coarse_ceiling,
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
        "| gradient boosting on the latent global and mid-scale cues (`latent_ceiling`, "
        f"{args.ceiling_cells} cells) | {coarse_ceiling:.3f} |\n"
        f"| the same on all the latent cues, fine ones included | {ceiling:.3f} |"
    )
    if resnet:
        difficulty["resnet18"] = resnet
        train = shlex.join(["lab3", "train", "--profile", "quick", *shlex.split(args.resnet_args)])
        difficulty_md += (
            f"\n\n### ResNet-18, `{train}`, scored on the test split\n\n{resnet_table(resnet)}"
        )
    real_note = f"{sum(g['n'] for g in real.values())} real fixtures" if real else "no fixtures"
    table = stats_table(real, synth)
    report = (
        f"## Speed\n\n{speed_md}\n\n## Real vs synthetic ({real_note}; mean (min-max))\n\n"
        f"{table}\n\n## Difficulty ({difficulty['evaluated_on']})\n\n{difficulty_md}\n"
    )
    print(report)

    stem = "synthetic" + (f"_{args.tag}" if args.tag else "")
    payload = {**setup, "speed": speed, "real": real, "synthetic": synth, "difficulty": difficulty}
    json_path, _ = write(args.out_dir / stem, command, payload, resnet, report, args)
    print(f"wrote {json_path} and .md", file=sys.stderr)
    return 0


def resnet_execution(rows: list[dict]) -> dict[str, str]:
    """bf16, torch.compile and channels_last of the ResNet-18 runs, as their saved settings
    resolve on this machine (where `lab3 train` ran them); none when no ResNet was trained."""
    if not rows:
        return {k: "not used (no ResNet trained)" for k in EXECUTION}
    from lab3.config import TrainConfig

    runs = {}
    for r in rows:
        config = TrainConfig.from_dict({**r["config"], "data": "", "out": ""})
        runs[f"{r['preprocess']}@{r['image_size']}"] = config_execution(config)
    return execution_summary(runs, "run")


def write(
    stem: Path, command: str, payload: dict, resnet: list[dict], report: str, args
) -> tuple[Path, Path]:
    """`stem`.json and .md: the provenance header, the dataset, then the report."""
    header = provenance(command, "cpu", resnet_execution(resnet))
    body = (
        f"- CPU: {payload['cpu']}; numpy {payload['numpy']}, Pillow {payload['pillow']}\n"
        f"- dataset: {args.train}/{args.valid}/{args.test} images, {args.size} px, "
        f"seed {args.seed}\n\n{report}"
    )
    return write_results(
        stem, header, payload, "Synthetic dataset: speed, realism, difficulty", body
    )


if __name__ == "__main__":
    sys.exit(main())
