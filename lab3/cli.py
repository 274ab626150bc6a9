"""The `lab3` command line. Every mistake a user can make ends in one line on stderr and exit 2."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from lab3.config import CHOICES, COURSE_MODELS, DEFAULT_PROFILE, MODEL_NAMES, PROFILES
from lab3.data.layouts import DEFAULT_DATA, DEFAULT_SPLIT_MODE
from lab3.data.preprocess import AUGMENTATIONS
from lab3.errors import UserError

# `lab3 run`'s settings when it starts a run, each read from where lab3 defines it; a resumed
# run keeps those it was started with.
RUN_DEFAULTS = {
    "data": DEFAULT_DATA,
    "profile": DEFAULT_PROFILE,
    "models": ",".join(COURSE_MODELS),
    "nproc": 1,
    "split_mode": DEFAULT_SPLIT_MODE,
}
SPLIT_MODE_HELP = (
    "how a layout without a split of its own (C-NMC's folds) is split: random, stratified "
    "(per image, as the course does; default), or subject (each patient's cells in one split)"
)


def _add_device(p: argparse.ArgumentParser, default: str | None = "auto") -> None:
    p.add_argument("--device", choices=CHOICES["device"], default=default)


def _add_split_mode(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split-mode", choices=CHOICES["split_mode"], help=SPLIT_MODE_HELP)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train one ResNet; writes a run folder with history and checkpoints"
    )
    p.add_argument(
        "--model",
        help=f"{', '.join(MODEL_NAMES)}; or torchvision:<name> (outside the course's rules)",
    )
    p.add_argument("--data", help=f"dataset folder (default: {DEFAULT_DATA})")
    p.add_argument("--profile", choices=sorted(PROFILES), default=DEFAULT_PROFILE)
    p.add_argument(
        "--init",
        help="initial weights: scratch (default, the course's rule), imagenet (torchvision's, "
        "from $TORCH_HOME's hub cache), or a state dict / checkpoint path",
    )
    p.add_argument(
        "--config", help="start from a saved config.json (a run's settings); flags override it"
    )
    p.add_argument("--epochs", type=int, help="passes over a large training set")
    p.add_argument(
        "--min-steps",
        type=int,
        help="floor on training in batches of --batch-size (small sets train more epochs); "
        "it counts images seen, so N processes reach it in 1/N of the steps",
    )
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--image-size", type=int)
    p.add_argument("--preprocess", help='host steps, e.g. "tightcrop,equalize"')
    p.add_argument("--augment", help=f'"{",".join(AUGMENTATIONS)}", a part of it, or "none"')
    p.add_argument("--optimizer", choices=CHOICES["optimizer"])
    p.add_argument("--schedule", choices=CHOICES["schedule"])
    p.add_argument("--class-balance", choices=CHOICES["class_balance"])
    p.add_argument("--ema", type=float)
    p.add_argument(
        "--precise-bn", type=int, help="training images to re-estimate BatchNorm statistics on"
    )
    p.add_argument("--tta", type=int, help="dihedral views averaged at evaluation (1-8)")
    p.add_argument("--train-limit", type=int, help="use only this many training images")
    _add_split_mode(p)
    p.add_argument(
        "--amp",
        choices=CHOICES["amp"],
        help="mixed precision; auto: bf16 where native (GPUs from compute capability 8.0, CPUs "
        "with AVX512-BF16/AMX), fp16 with loss scaling on older GPUs, float32 on other CPUs",
    )
    p.add_argument(
        "--compile",
        choices=CHOICES["compile"],
        help="torch.compile; auto: on for CUDA (a failed compile falls back to eager)",
    )
    p.add_argument(
        "--channels-last",
        choices=CHOICES["channels_last"],
        help="auto: on for the CPU, on CUDA where amp is",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="run folder (default outputs/runs/<model>-<timestamp>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from last.pt with the settings it started with (another "
        "value is refused; the device, precision and compilation may change)",
    )
    _add_device(p, default=None)
    p.add_argument(
        "--sync-bn",
        action="store_const",
        const=True,
        help="under torchrun: BatchNorm statistics over all processes' batches (CUDA only)",
    )


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from lab3.bench.run import NO_MODELS, BenchSettings

    # every flag but --out is a BenchSettings field of the same name, and defaults as it does
    settings = BenchSettings  # its class attributes are the fields' defaults
    p = sub.add_parser(
        "bench", help="time lab3's loader and training against the usual PyTorch pipeline"
    )
    _add_device(p, default=settings.device)
    models = ",".join(settings.models)
    p.add_argument("--models", default=models, help=f"{NO_MODELS}: data only")
    p.add_argument("--out", help="results JSON (default benchmarks/results/bench_<device>.json)")
    p.add_argument("--data", default=settings.data, help="dataset folder (default: %(default)s)")
    full = PROFILES["full"]
    p.add_argument(
        "--image-size", type=int, help=f"default: the full profile's ({full['image_size']})"
    )
    p.add_argument(
        "--batch-size", type=int, help=f"default: the full profile's ({full['batch_size']})"
    )
    p.add_argument("--augment", help="lab3's augmentation (default: the full profile's)")
    p.add_argument(
        "--images", type=int, default=settings.images, help="training images (default: all)"
    )
    p.add_argument(
        "--rounds", type=int, default=settings.rounds, help="interleaved timed passes per side"
    )
    p.add_argument(
        "--workers", type=int, default=settings.workers, help="usual DataLoader workers (0: cores)"
    )
    p.add_argument(
        "--profile-steps", type=int, default=settings.profile_steps, help="steps profiled per model"
    )
    p.add_argument(
        "--threads", type=int, default=settings.threads, help="torch threads (0: torch's default)"
    )


def _add_synth(sub: argparse._SubParsersAction) -> None:
    from lab3.data import synthetic
    from lab3.data.synthetic import retinopathy

    p = sub.add_parser("synth", help="generate the synthetic default dataset (course layout)")
    # --out and --size default by --kind, so their defaults are None here: a value given
    # explicitly, even one equal to the other kind's default, is always the one used
    p.add_argument(
        "--out", help=f"default {synthetic.DEFAULT_OUT} (retinopathy: {retinopathy.DEFAULT_OUT})"
    )
    p.add_argument("--train", type=int)
    p.add_argument("--valid", type=int)
    p.add_argument("--test", type=int)
    p.add_argument(
        "--size",
        type=int,
        help=f"image side in pixels (default {synthetic.DEFAULT_SIZE}; "
        f"retinopathy {retinopathy.DEFAULT_SIZE})",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--force", action="store_true", help="replace a dataset already in --out (nothing else)"
    )
    p.add_argument(
        "--kind",
        choices=("leukemia", "retinopathy"),
        default="leukemia",
        help="leukemia: the course's cells (default); retinopathy: the earlier edition's five "
        f"grades of fundus-like images (out default {retinopathy.DEFAULT_OUT}, "
        f"{retinopathy.DEFAULT_SIZE} px, no --valid)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab3", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    _add_synth(sub)
    p = sub.add_parser("data", help="inspect a dataset folder")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    s = data_sub.add_parser(
        "summary", help="layout, counts, image sizes; builds or checks the cache"
    )
    s.add_argument("--data", default=DEFAULT_DATA)
    s.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=DEFAULT_PROFILE,
        help="the profile you will train with: the cache is built at its image size and "
        "preprocessing, so training finds it ready (default: %(default)s)",
    )
    s.add_argument("--image-size", type=int, help="default: the profile's")
    s.add_argument("--preprocess", help="default: the profile's (e.g. tightcrop)")
    _add_split_mode(s)

    _add_train(sub)

    p = sub.add_parser(
        "evaluate", help="the demo: load trained weights, print metrics, save the confusion matrix"
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", help="dataset folder (default: the one it was trained on)")
    p.add_argument("--split", choices=("valid", "test"), default="valid")
    p.add_argument("--tta", type=int, help="dihedral views to average, 1-8 (default: the run's)")
    _add_device(p)

    p = sub.add_parser("predict", help="write the Kaggle submission CSV of a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", help="dataset folder (default: the one it was trained on)")
    p.add_argument("--test-csv", help="default: resnet_<depth>_test.csv of the data folder")
    p.add_argument("--out", required=True, help="submission CSV to write")
    p.add_argument("--tta", type=int, help="dihedral views to average, 1-8 (default: the run's)")
    _add_device(p)

    p = sub.add_parser("score", help="score a submission against the truth (local leaderboard)")
    p.add_argument("submission")
    p.add_argument("--truth", required=True)

    p = sub.add_parser("run", help="run the whole workbook (all notebooks) headlessly")
    p.add_argument("--data", help=f"dataset folder (default {RUN_DEFAULTS['data']})")
    p.add_argument("--profile", help=f"default {RUN_DEFAULTS['profile']}")
    p.add_argument("--models", help=f"default {RUN_DEFAULTS['models']}")
    p.add_argument("--out", help="run folder (default outputs/<timestamp>)")
    p.add_argument(
        "--resume",
        metavar="RUN",
        help="continue this interrupted or killed run with its own settings",
    )
    p.add_argument("--nproc", type=int, help="processes training each depth (torchrun, DDP)")
    _add_split_mode(p)
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="also train each depth from ImageNet weights and compare (outside the course's "
        "rules; reported apart from its tables)",
    )

    p = sub.add_parser(
        "demo", help="the course demo: each depth's trained weights loaded and evaluated"
    )
    p.add_argument("--run", default="outputs/latest", help="a workbook run folder")
    p.add_argument("--data", help="dataset folder (default: the one each depth was trained on)")
    _add_device(p)

    p = sub.add_parser(
        "explain", help="Grad-CAM maps: where each depth looks, right and wrong (PNG)"
    )
    p.add_argument("--run", help="a workbook run folder (or a `lab3 train` run folder)")
    p.add_argument("--model", help="only this depth of the run, e.g. resnet18")
    p.add_argument("--n", type=int, default=8, help="cells per depth's panel (default 8)")
    p.add_argument("--split", choices=("valid", "test"), help="default: test when labelled")
    p.add_argument("--checkpoint", help="one checkpoint, with --images and --out")
    p.add_argument("--images", nargs="+", help="image files to explain with --checkpoint")
    p.add_argument("--out", help="the PNG to write for --images")
    p.add_argument(
        "--layer", help="the stage the maps come from (default: layer4 from 192 px, else finer)"
    )
    p.add_argument("--data", help="dataset folder (default: the one it was trained on)")
    _add_device(p)

    p = sub.add_parser("report", help="build report.pdf from an executed workbook run")
    p.add_argument("--run", default="outputs/latest")
    _add_lab(sub)
    _add_bench(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except UserError as err:
        print(f"lab3 {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"lab3 {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "synth":
        return _synth(args)
    if args.command == "data":
        return _data_summary(args)
    if args.command == "train":
        return _train(args)
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "predict":
        from lab3.engine.evaluate import predict_submission
        from lab3.submission import write_submission

        out = Path(args.out)
        frame = predict_submission(
            args.checkpoint,
            args.data,
            args.test_csv,
            tta=args.tta,
            device=args.device,
        )
        write_submission(frame, out)
        counts = frame["label"].value_counts().sort_index().to_dict()
        print(f"wrote {out}: {len(frame)} rows, labels {counts}")
        return 0
    if args.command == "score":
        from lab3.metrics import format_metrics
        from lab3.submission import score

        print(format_metrics(score(args.submission, args.truth)))
        return 0
    if args.command == "run":
        return _run(args)
    if args.command == "demo":
        from lab3.workbook.results import demo

        print(demo(args.run, args.data, args.device))
        return 0
    if args.command == "explain":
        return _explain(args)
    if args.command == "report":
        from lab3.workbook.report import build_report

        path = build_report(Path(args.run))
        print(f"report: {path}")
        return 0
    if args.command == "bench":
        return _bench(args)
    if args.command == "lab":
        return _lab(args)
    raise AssertionError(args.command)


def _add_lab(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lab",
        help="JupyterLab on your own copies of the notebooks in one run folder (`make lab`)",
    )
    p.add_argument("--data", default=RUN_DEFAULTS["data"], help="dataset folder")
    p.add_argument("--profile", default=RUN_DEFAULTS["profile"])
    p.add_argument("--models", default=RUN_DEFAULTS["models"])
    p.add_argument("--run", help="the run folder of your notebooks (default outputs/lab)")
    p.add_argument(
        "jupyter", nargs=argparse.REMAINDER, help="after --, options of jupyter lab (--port ...)"
    )


def _lab(args: argparse.Namespace) -> int:
    """Prepare the student's run folder, then become JupyterLab (exec: Ctrl-C reaches it)."""
    from lab3.workbook.interactive import LAB_RUN, jupyter_command, prepare_lab

    run = prepare_lab(args.data, args.profile, args.models, args.run or LAB_RUN)
    print(
        f"lab: your notebooks are {run / 'notebooks'}/01 ... 05; run each top to bottom, in "
        f"order, then: lab3 report --run {run}",
        flush=True,
    )
    command = jupyter_command(run, [a for a in args.jupyter if a != "--"])
    os.execv(command[0], command)
    return 0  # not reached


def _run(args: argparse.Namespace) -> int:
    from lab3.workbook.runner import resume_workbook, run_workbook

    if args.resume:
        given = [
            f"--{name.replace('_', '-')}"
            for name in (*RUN_DEFAULTS, "out", "pretrained")
            if getattr(args, name) not in (None, False)
        ]
        if given:
            raise UserError(
                f"--resume continues a run with its own settings; drop {', '.join(given)}"
            )
        resume_workbook(args.resume)
        return 0
    from lab3.workbook.gpu_notice import cpu_fallback_notice

    # an explicit value is used as given (`--nproc 0` is refused, not replaced by the default)
    settings = {
        name: default if getattr(args, name) is None else getattr(args, name)
        for name, default in RUN_DEFAULTS.items()
    }
    notice = cpu_fallback_notice(settings["profile"])
    if notice is not None:
        print(f"lab3 run: {notice}", file=sys.stderr)
    run_workbook(**settings, out=args.out, pretrained=args.pretrained)
    return 0


def _data_summary(args: argparse.Namespace) -> int:
    """The folder's layout and counts; its cache is built at the size `--profile` trains at, so
    the `lab3 run --profile` that follows decodes nothing again."""
    from lab3.config import make_config
    from lab3.data.summary import dataset_summary

    config = make_config(args.profile, image_size=args.image_size, preprocess=args.preprocess)
    print(
        dataset_summary(
            args.data,
            image_size=config.image_size,
            preprocess=config.preprocess,
            split_mode=args.split_mode or config.split_mode,
        )
    )
    return 0


def _synth(args: argparse.Namespace) -> int:
    if args.kind == "retinopathy":
        return _synth_retinopathy(args)
    from lab3.data import synthetic

    counts = {
        "train": args.train if args.train is not None else synthetic.DEFAULT_TRAIN,
        "valid": args.valid if args.valid is not None else synthetic.DEFAULT_VALID,
        "test": args.test if args.test is not None else synthetic.DEFAULT_TEST,
    }
    out = Path(args.out or synthetic.DEFAULT_OUT)
    size = args.size if args.size is not None else synthetic.DEFAULT_SIZE
    meta = synthetic.write_synthetic_dataset(
        out, **counts, size=size, seed=args.seed, force=args.force
    )
    print(
        f"wrote {len(meta)} images to {out} ({counts['train']}/{counts['valid']}/{counts['test']})"
    )
    return 0


def _synth_retinopathy(args: argparse.Namespace) -> int:
    from lab3.data.synthetic import MIN_SIZE, retinopathy

    if args.valid is not None:
        raise UserError("the retinopathy layout has no valid split of its own; drop --valid")
    if args.force:
        raise UserError("--force replaces only a leukemia dataset; delete the old folder yourself")
    out = Path(args.out or retinopathy.DEFAULT_OUT)
    train = args.train if args.train is not None else retinopathy.DEFAULT_TRAIN
    test = args.test if args.test is not None else retinopathy.DEFAULT_TEST
    size = args.size if args.size is not None else retinopathy.DEFAULT_SIZE
    if size < MIN_SIZE:
        raise UserError(f"--size must be at least {MIN_SIZE} pixels, not {size}")
    plan = retinopathy.write_retinopathy_dataset(out, train, test, size=size, seed=args.seed)
    grades = plan["label"].value_counts().sort_index().to_dict()
    print(f"wrote {len(plan)} fundus images to {out} ({train}/{test}; grades {grades})")
    return 0


def _train(args: argparse.Namespace) -> int:
    from lab3.config import TrainConfig, make_config
    from lab3.engine.loop import fit

    # every train flag is a TrainConfig field of the same name (`--profile` picks the defaults)
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"profile"}
    settings = {name: value for name, value in vars(args).items() if name in fields}
    profile = args.profile
    if args.config:  # the saved settings, then the flags given on top
        saved = TrainConfig.read(args.config)
        profile = saved.profile
        settings = {**saved.to_dict(), **{k: v for k, v in settings.items() if v is not None}}
        settings.pop("profile")
    elif args.model is None:
        raise UserError("--model is required (or --config with a saved config.json)")
    if settings["data"] is None:
        settings["data"] = DEFAULT_DATA
    config = make_config(profile, **settings)
    result = fit(config, resume=args.resume)
    print(
        f"run folder: {result.run_dir}  best valid acc {result.best_valid_acc:.2%} "
        f"(epoch {result.best_epoch})"
    )
    return 130 if result.interrupted else 0


def _evaluate(args: argparse.Namespace) -> int:
    from lab3.engine.evaluate import evaluate_checkpoint
    from lab3.metrics import format_metrics
    from lab3.plots import plot_confusion_matrix

    result = evaluate_checkpoint(
        args.checkpoint, args.data, args.split, tta=args.tta, device=args.device
    )
    print(f"{result.config.model} on the {args.split} split of {result.config.data}")
    print(format_metrics(result.metrics))
    assert result.confusion is not None
    print("confusion matrix (rows: true, columns: predicted):")
    print(result.confusion)
    figure = Path(args.checkpoint).with_name(f"confusion_{args.split}.png")
    plot_confusion_matrix(
        result.confusion,
        result.class_names,
        path=figure,
        title=f"{result.config.model} ({args.split}, accuracy {result.metrics['accuracy']:.2%})",
    )
    print(f"figure: {figure}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from lab3.workbook import attention

    if args.checkpoint or args.images:
        if args.run or args.model:
            raise UserError("give either --run (a run's depths) or --checkpoint with --images")
        if not (args.checkpoint and args.images and args.out):
            raise UserError("--checkpoint needs --images FILE ... and --out FILE.png")
        out = attention.explain_images(
            args.checkpoint, args.images, args.out, args.data, args.device, args.layer
        )
        print(f"figure: {out}")
        return 0
    if not args.run:
        raise UserError("give --run RUN (a run folder) or --checkpoint best.pt --images ...")
    if args.out:
        raise UserError("--out goes with --images; --run writes into the run's figures folder")
    if args.n < 1:
        raise UserError(f"--n is a number of cells, at least 1, not {args.n}")
    for path in attention.explain_run(
        args.run, args.model, args.n, args.split, args.data, args.device, args.layer
    ):
        print(f"figure: {path}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import shlex

    from lab3.bench import BenchSettings, format_table, run_bench, write_results

    # every bench flag is a BenchSettings field of the same name
    fields = {f.name for f in dataclasses.fields(BenchSettings)}
    settings = BenchSettings(**{k: v for k, v in vars(args).items() if k in fields})
    # the command as run, every option spelled out, so the results say exactly what made them
    options = [
        (f"--{name.replace('_', '-')}", str(value))
        for name, value in vars(args).items()
        if name != "command" and value is not None
    ]
    command = shlex.join(["lab3", "bench", *(part for option in options for part in option)])
    document = run_bench(settings, command, report=lambda line: print(line, file=sys.stderr))
    device = document["settings"]["device_type"]
    out = Path(args.out or f"benchmarks/results/bench_{device}.json")
    markdown = write_results(document, out)
    print(format_table(document))
    print(f"wrote {out} and {markdown}")
    return 0
