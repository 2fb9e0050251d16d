"""The ``im2hands`` command: parse arguments, set up logging, call one library function.

No logic lives here: each subcommand imports the function it calls lazily (so ``--help`` is
fast) and turns :class:`~im2hands.utils.errors.Im2HandsError` into one clear line on stderr
and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from im2hands.cli_extract import add_extract
from im2hands.utils.errors import Im2HandsError

log = logging.getLogger("im2hands")

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help lines end with ``(default: X)`` for every option whose help does not already say
    its default; flags (store_true) and options without a default are left as they are."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or default in (None, False, argparse.SUPPRESS)
            or action.nargs in (argparse.ZERO_OR_MORE, argparse.REMAINDER)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose help gives every default (sub-commands inherit the class)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname).1s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# --------------------------------------------------------------------------- subcommands


def _cmd_config(args: argparse.Namespace) -> int:
    from im2hands.config import config_to_yaml, load_config

    cfg = load_config(args.config, args.overrides)
    sys.stdout.write(config_to_yaml(cfg))
    return 0


def _add_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="print the resolved config (defaults < inherit_from < file < overrides)")
    p.add_argument("config", nargs="?", default=None, help="YAML config file (omit for the defaults)")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides")
    p.set_defaults(func=_cmd_config)


def _cmd_handmodel_build(args: argparse.Namespace) -> int:
    from im2hands.hands.builder import write_hand_model

    for path in write_hand_model(args.out, version=args.version):
        log.info("wrote %s", path)
    return 0


def _add_handmodel(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("handmodel", help="the open hand model (MANO file format, no licence needed)")
    hsub = p.add_subparsers(dest="handmodel_command", metavar="ACTION", required=True)
    b = hsub.add_parser("build", help="build MANO_RIGHT.pkl and MANO_LEFT.pkl deterministically")
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument("--version", type=int, default=2, choices=(1, 2),
                   help="2: calibrated against real MANO hands, the committed files the shipped networks are "
                   "trained on (default); 1: the first design (docs/hand_model.md)")
    b.set_defaults(func=_cmd_handmodel_build)


def _cmd_mano_convert(args: argparse.Namespace) -> int:
    from im2hands.hands.mano_io import convert_mano

    for path in convert_mano(args.src, args.out):
        log.info("wrote %s", path)
    return 0


def _add_mano(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mano", help="licensed MANO files")
    msub = p.add_subparsers(dest="mano_command", metavar="ACTION", required=True)
    c = msub.add_parser("convert", help="write plain-numpy copies of MANO_{RIGHT,LEFT}.pkl (no chumpy needed)")
    c.add_argument("--src", required=True, help="folder holding the licensed MANO_RIGHT.pkl and MANO_LEFT.pkl")
    c.add_argument("--out", required=True, help="output folder for the converted files")
    c.set_defaults(func=_cmd_mano_convert)


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from im2hands.config import load_config
    from im2hands.data.synthetic import synthesize
    from im2hands.engine.builders import synth_arguments

    cfg = load_config(args.config, args.overrides)
    if args.device is not None:
        cfg.synth.device = args.device  # checked by synthesize; written into config.yaml
    summary = synthesize(args.out, args.num, seed=args.seed, workers=args.workers, **synth_arguments(cfg))
    log.info(
        "%s: %d written, %d already there, %d failed, %.1f samples/s",
        args.out, summary["written"], summary["skipped"], len(summary["failed"]), summary["samples_per_s"],
    )
    return 1 if summary["failed"] else 0


def _cmd_data_show(args: argparse.Namespace) -> int:
    from im2hands.data.show import show_sample

    log.info("wrote %s", show_sample(args.dir, args.index, args.out, mano_dir=args.mano_dir))
    return 0


def _cmd_data_interhand(args: argparse.Namespace) -> int:
    from im2hands.data.interhand import prepare_interhand

    summary = prepare_interhand(
        args.root, args.out, split=args.split, mano_dir=args.mano_dir, hand_type=args.hand_type,
        workers=args.workers, shard=args.shard, limit=args.limit, progress=not args.no_progress,
    )
    log.info(
        "%s: split %s: %d kept, %d assigned, %d written, %d already there, %d dark, %d failed; %d complete "
        "(report %s)",
        args.out, summary["split"], summary["kept"], summary["assigned"], summary["written"], summary["skipped"],
        len(summary["dark"]), len(summary["failed"]), summary["complete"], summary["report"],
    )
    return 1 if summary["failed"] else 0


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="datasets: generate synthetic two-hand data, look at samples")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    s = dsub.add_parser("synth", help="generate a synthetic two-hand dataset (resumable)")
    s.add_argument("--out", required=True, help="dataset folder (an unfinished one is continued)")
    s.add_argument("--num", type=int, required=True, help="number of samples")
    s.add_argument("--seed", type=int, default=0, help="run seed; sample i depends only on (seed, i)")
    s.add_argument("--workers", type=int, default=1, help="worker processes")
    s.add_argument("--device", default=None, metavar="DEVICE",
                   help="where the meshes are posed and rasterized: cpu, cuda, cuda:N or auto (cuda when available); "
                   "default: synth.device of the config (cpu)")
    s.add_argument("--config", default=None, help="YAML config (synth and hand_model sections)")
    s.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. synth.image_size=128")
    s.set_defaults(func=_cmd_data_synth)
    w = dsub.add_parser("show", help="picture of one sample: image, masks, keypoints, meshes, depth")
    w.add_argument("dir", help="dataset folder")
    w.add_argument("--index", type=int, default=0, help="sample position in the sorted ids")
    w.add_argument("--out", required=True, help="output PNG")
    w.add_argument("--mano-dir", default=None, help="hand-model folder (default: IM2HANDS_MANO_DIR or the open model)")
    w.set_defaults(func=_cmd_data_show)
    ih = dsub.add_parser(
        "interhand", help="prepare InterHand2.6M v1.0 (crops, masks, depth, MANO meshes; resumable, shardable)",
        description="Reads ROOT/annotations/SPLIT/InterHand2.6M_SPLIT_*.json and ROOT/images/SPLIT/, keeps samples "
        "as IntagHand does and writes the toolkit's dataset format into --out. The exit code is 1 when any "
        "image was missing or unreadable. See docs/interhand.md.",
    )
    ih.add_argument("--root", required=True, help="InterHand2.6M root (holds annotations/ and images/)")
    ih.add_argument("--mano-dir", default=None,
                    help="folder with MANO_RIGHT.pkl and MANO_LEFT.pkl (default: $IM2HANDS_MANO_DIR)")
    ih.add_argument("--split", required=True, choices=("train", "val", "test"), help="split to prepare")
    ih.add_argument("--out", required=True,
                    help="dataset folder (an unfinished one is continued; the splits can share it)")
    ih.add_argument("--hand-type", default="interacting", choices=("interacting", "right", "left", "all"),
                    help="annotations to keep (default interacting: the IntagHand protocol)")
    ih.add_argument("--workers", type=int, default=1, help="worker processes")
    ih.add_argument("--shard", default=None, metavar="I/N",
                    help="prepare only the kept samples I, I+N, I+2N, ... (sample ids stay global)")
    ih.add_argument("--limit", type=int, default=None, help="only the first N kept samples")
    ih.add_argument("--no-progress", action="store_true", help="no progress bar")
    ih.set_defaults(func=_cmd_data_interhand)


def _cmd_demo(args: argparse.Namespace) -> int:
    from im2hands.demo import run_demo

    run_demo(args.out, num=args.num, workers=args.workers, progress=not args.no_progress)
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="the main job on built-in defaults: synthetic images -> shipped models -> meshes -> metrics",
        description="Generates a small held-out synthetic set, extracts both hands' meshes from its images with the "
        "shipped weights (and, for reference, from its ground-truth keypoints), evaluates them and writes pictures "
        "and a results table into --out. See README.md.",
    )
    p.add_argument("--out", default="demo_out", help="output folder")
    p.add_argument("--num", type=int, default=8, help="synthetic samples to generate")
    p.add_argument("--workers", type=int, default=2, help="worker processes for the synthesis")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)


def _cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from im2hands.engine import load_train_config, train

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).is_file():  # `train --resume RUN a.b=1`
        config, overrides = None, [config, *overrides]
    cfg = load_train_config(config, overrides, resume=args.resume)
    result = train(cfg, resume=args.resume)
    log.info("run folder: %s", result.run_dir)
    return 130 if result.summary["stopped_by"] == "interrupted" else 0  # 130: the shell's code for Ctrl-C


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train any stage (one loop); torchrun --nproc_per_node N -m im2hands train ... for DDP",
        description="Train the model named by model.type. The dataset folder is data.root=DIR or $IM2HANDS_DATA; "
        "outputs go to train.out_dir (default runs/<name>/<timestamp>). See docs/training.md.",
    )
    p.add_argument("config", nargs="?", default=None, help="YAML config (optional with --resume: the run's config.yaml)")
    p.add_argument("overrides", nargs="*", help="key.path=value overrides (e.g. data.root=DIR train.max_steps=2000)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue the run in RUN_DIR from its last.pt")
    p.set_defaults(func=_cmd_train)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    def run(args: argparse.Namespace) -> int:
        from im2hands.metrics.evaluator import evaluate_folder

        summary = evaluate_folder(
            args.pred, args.gt, args.out, split=args.split, n_points=args.points, seed=args.seed,
            mano_dir=args.mano_dir, plots=not args.no_plots, align=args.align,
        )
        log.info("wrote %s/summary.json, per_item.csv%s", args.out, "" if args.no_plots else " and plots")
        return 1 if summary["counts"]["failed"] else 0

    p = sub.add_parser(
        "eval", help="evaluate predicted meshes against ground truth (IoU, Chamfer, F-score, MPJPE, MRRPE, penetration)",
        description="Items are matched by NAME: NAME_left.obj, NAME_right.obj [, NAME_keypoints.json] in --pred. "
        "The exit code is 1 when any item failed. See docs/metrics.md.",
    )
    p.add_argument("--pred", required=True, help="folder of predicted meshes (camera frame, metres)")
    p.add_argument("--gt", required=True, help="dataset folder, or folder of ground-truth meshes named like --pred")
    p.add_argument("--out", required=True, help="output folder: per_item.csv, summary.json, plots")
    p.add_argument("--split", default=None,
                   help="split to evaluate ('all': every item); default: test for a dataset (as extract), all for meshes")
    p.add_argument("--points", type=int, default=100_000, help="IoU points and surface samples per mesh")
    p.add_argument("--seed", type=int, default=0, help="seed; item NAME's draws depend only on (seed, NAME)")
    p.add_argument("--mano-dir", default=None, help="hand-model folder (default: IM2HANDS_MANO_DIR or the open model)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--align", default="none", choices=("none", "root"),
                   help="root: move each predicted hand onto the ground truth's middle-finger MCP before the shape "
                   "metrics (image-only protocol; needs NAME_keypoints.json); none: camera frame as given (default)")
    p.set_defaults(func=run)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    def run(args: argparse.Namespace) -> int:
        from im2hands.benchmarks.suite import format_table, run_bench

        result = run_bench(quick=args.quick, device=args.device, threads=args.threads, out=args.out)
        sys.stdout.write(format_table(result) + "\n")
        log.info("wrote %s", args.out)
        return 0

    p = sub.add_parser(
        "bench", help="time decoding, MISE extraction, evaluation and data generation; check the targets",
        description="Medians of several runs, written as JSON with machine info and pass/fail per target, and "
        "printed as a table. See docs/benchmarks.md.",
    )
    p.add_argument("--out", default="bench.json", help="JSON file to write (default bench.json)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs, measures nothing")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="device of the network")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the targets are for 2 cores)")
    p.set_defaults(func=run)


def _add_curves(sub: argparse._SubParsersAction) -> None:
    def run(args: argparse.Namespace) -> int:
        from im2hands.engine.curves import curves_table, load_runs, plot_curves

        logs = load_runs(args.runs, args.labels)
        table = curves_table(logs, metric=args.metric)  # checks the metric before anything is written
        out = plot_curves(logs, args.out, metric=args.metric, by_time=args.time)
        sys.stdout.write(table + "\n")
        log.info("wrote %s", out)
        return 0

    p = sub.add_parser(
        "curves", help="learning curves of training runs (PNG) and a markdown table of their numbers",
        description="Reads RUN/metrics.jsonl of each run: training loss (left) and a validation metric (right) "
        "against step or wall time; prints per run the steps, wall minutes, last loss and best value. "
        "See docs/training.md.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="training run folders (each holds metrics.jsonl)")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--labels", nargs="+", default=None, help="one legend label per run (default: the folder names)")
    p.add_argument("--metric", default=None,
                   help="validation metric, e.g. iou or mpjpe_mm (default: the runs' best metric)")
    p.add_argument("--time", action="store_true", help="x axis in wall-time minutes instead of steps")
    p.set_defaults(func=run)


def _add_weights(sub: argparse._SubParsersAction) -> None:
    def run_list(args: argparse.Namespace) -> int:
        from im2hands.loading import SHIPPED, WEIGHTS_DIR, read_manifest

        files = read_manifest().get("files", {})
        for role, name in SHIPPED.items():
            path = WEIGHTS_DIR / name
            info = files.get(name, {})
            size = f"{path.stat().st_size / 1e6:.1f} MB" if path.is_file() else "missing"
            sys.stdout.write(f"{role:14s} {name:18s} {size:>9s}  {info.get('trained_with', '')}\n")
        return 0

    def run_export(args: argparse.Namespace) -> int:
        from im2hands.engine.weights import export_weights

        info = export_weights(args.run, args.out, dtype=args.dtype, trained_with=args.trained_with)
        log.info("wrote %s (%.1f MB, %s, step %s)", info["path"], info["bytes"] / 1e6, info["dtype"], info["step"])
        return 0

    p = sub.add_parser("weights", help="the shipped weights: list, export, check; fetch MediaPipe's hand networks")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    ls = wsub.add_parser("list", help="the shipped weights files, their sizes and the commands that trained them")
    ls.set_defaults(func=run_list)
    ex = wsub.add_parser("export", help="write a run's best (else last) checkpoint without its training state")
    ex.add_argument("run", help="training run folder or checkpoint file")
    ex.add_argument("--out", required=True, help="output .pt file")
    ex.add_argument("--dtype", default="float16", choices=("float16", "float32"),
                    help="storage type of the weights (float16: half the size; evaluated in float32)")
    ex.add_argument("--trained-with", default=None, metavar="COMMAND",
                    help="the command that trained the run: records the file in the MANIFEST.json beside --out")
    ex.set_defaults(func=run_export)

    def run_check(args: argparse.Namespace) -> int:
        from im2hands.demo import check_weights

        check_weights(args.out, num=args.num, write=args.write, progress=not args.no_progress)
        return 0

    ck = wsub.add_parser("check", help="held-out numbers of the shipped weights (the demo's steps on its seed)")
    ck.add_argument("--out", required=True, help="output folder (data, meshes, evaluations)")
    ck.add_argument("--num", type=int, default=8, help="held-out synthetic samples (as many as make demo)")
    ck.add_argument("--write", default=None, metavar="FILE",
                    help="write a copy of the shipped MANIFEST.json with these numbers recorded to FILE (to update "
                    "the repository's, name im2hands/assets/weights/MANIFEST.json); default: write nothing")
    ck.add_argument("--no-progress", action="store_true", help="no progress bars")
    ck.set_defaults(func=run_check)

    def run_fetch_mediapipe(args: argparse.Namespace) -> int:
        from im2hands.models.mediapipe.fetch import fetch_mediapipe

        for path in fetch_mediapipe(args.dir, wheel=args.wheel):
            log.info("ok %s", path)
        return 0

    fm = wsub.add_parser(
        "fetch-mediapipe", help="fetch MediaPipe's hand networks (Apache-2.0) from the mediapipe 0.10.21 wheel",
        description="Downloads the mediapipe==0.10.21 wheel with pip (nothing is installed), takes "
        "hand_landmark_full.tflite and palm_detection_full.tflite out of it, checks their SHA-256 and writes them "
        "into the cache folder. Does nothing when both files are there and verified. See docs/mediapipe.md.",
    )
    fm.add_argument("--dir", default=None,
                    help="cache folder (default: $IM2HANDS_CACHE/mediapipe, else ~/.cache/im2hands/mediapipe)")
    fm.add_argument("--wheel", default=None, help="use this mediapipe 0.10.21 wheel file instead of downloading it")
    fm.set_defaults(func=run_fetch_mediapipe)


_REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_config,
    _add_data,
    _add_demo,
    _add_handmodel,
    _add_mano,
    _add_train,
    _add_eval,
    add_extract,
    _add_bench,
    _add_curves,
    _add_weights,
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every working subcommand."""
    from im2hands import __version__

    parser = _Parser(
        prog="im2hands",
        description="Two interacting hands from one RGB image: data, training, extraction, evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"im2hands {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``im2hands`` console command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    _setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except Im2HandsError as exc:
        sys.stderr.write(f"im2hands: error: {exc}\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("im2hands: interrupted\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
