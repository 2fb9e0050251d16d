"""``im2hands extract``'s arguments (a part of :mod:`im2hands.cli`, which it follows: no logic
here, the library function is imported lazily)."""

from __future__ import annotations

import argparse


def add_extract(sub: argparse._SubParsersAction) -> None:
    def run(args: argparse.Namespace) -> int:
        existing = "overwrite" if args.overwrite else "resume" if args.resume else "refuse"
        if args.keypoints_only:
            from im2hands.extraction.keypoint_job import estimate_keypoints_folder

            if args.keypoints not in (None, "auto"):
                p.error("--keypoints-only estimates the keypoints: give no --keypoints DIR (or --keypoints auto)")
            summary = estimate_keypoints_folder(
                args.out, images=args.images, dataset=args.dataset, split=args.split, estimator=args.estimator,
                refiner=args.refiner, focal=args.focal, pair_scale=args.pair_scale, detector=args.detector,
                device=args.device, limit=args.limit, progress=not args.no_progress, existing=existing,
            )
            return 1 if summary["totals"]["failed"] else 0
        from im2hands.extraction.run import extract_folder

        summary = extract_folder(
            args.out, model=args.model, images=args.images, keypoints=args.keypoints, dataset=args.dataset,
            split=args.split, resolution=args.resolution, upsampling_steps=args.upsampling_steps,
            threshold=args.threshold, device=args.device, points_batch_size=args.points_batch_size,
            limit=args.limit, progress=not args.no_progress, estimator=args.estimator, refiner=args.refiner,
            focal=args.focal, pair_scale=args.pair_scale, detector=args.detector, existing=existing,
            mesh_format=args.mesh_format, keypoint_convention=args.keypoint_convention, precision=args.precision,
        )
        return 1 if summary["totals"]["failed"] else 0

    p = sub.add_parser(
        "extract", help="meshes of both hands (MISE + marching cubes) for keypoint files, images or a dataset split",
        description="Writes NAME_left.obj / NAME_right.obj (camera frame, metres), NAME.png over the input image, and "
        "summary.json into --out. The exit code is 1 when any item failed. See extract/README.md and "
        "docs/keypoints_format.md.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", default=None,
                   help="training run folder or checkpoint (default: the shipped stage 2 with images, the shipped "
                   "keypoint-only stage 1 without)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", default=None, help="dataset folder (docs/data_format.md); with --split")
    src.add_argument("--images", default=None, help="folder of NAME.jpg|png|webp|bmp|tif images, at least 32 pixels a side "
                     "(keypoints from --keypoints DIR, else estimated)")
    p.add_argument("--keypoints", default=None,
                   help="folder of NAME.json keypoint files (docs/keypoints_format.md), or 'auto': estimate them "
                   "from the images (--images or --dataset) with --estimator")
    p.add_argument("--estimator", default=None,
                   help="how keypoints are found in images: a crop_net run or checkpoint (per-hand crops: MediaPipe's "
                   "networks find hands and sides, the fine-tuned crop network gives keypoints; default: the shipped "
                   "crop_net.pt), 'mediapipe' (MediaPipe's networks alone), or a whole-image kpts_est run; docs/estimator.md")
    p.add_argument("--detector", default=None,
                   help="how a crop_net estimator finds hands: a hand_det run or checkpoint (default: the shipped "
                   "hand_det.pt) or 'mediapipe' (MediaPipe's palm detector); docs/estimator.md")
    p.add_argument("--refiner", default=None,
                   help="keypoint refinement run or checkpoint (kpts_ref, e.g. im2hands/assets/weights/kpts_ref.pt) "
                   "for estimated keypoints; 'none': no refinement (default: none)")
    p.add_argument("--focal", type=float, default=None,
                   help="focal length in pixels of images without a camera file NAME.json beside them "
                   "(docs/keypoints_format.md; default: the image's EXIF 35 mm equivalent focal length when it "
                   "states one, else the estimator's model.kpts_est.default_focal_factor, 1.2, x the longer side)")
    p.add_argument("--pair-scale", default=None, choices=("best", "own", "geometric", "arithmetic"),
                   help="sizes of a found pair (per-hand crops): own, or one shared size (docs/estimator.md; default best)")
    p.add_argument("--split", default="test", help="dataset split (default test; 'all' for every sample)")
    p.add_argument("--resolution", type=int, default=32, help="MISE start resolution, cells per side")
    p.add_argument("--upsampling-steps", type=int, default=3, help="MISE levels after the first (3 from 32: 256 cells)")
    p.add_argument("--threshold", type=float, default=None, help="occupancy iso-level (default: the model's, 0.5 / 0.45)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                   help="occupancy decoding precision (extract/README.md): auto = bfloat16 on CPUs with native "
                   "bfloat16 dot products (AVX512-BF16, AMX), else float32")
    p.add_argument("--points-batch-size", type=int, default=100_000, help="query points per hand per decode call")
    p.add_argument("--limit", type=int, default=None, help="process only the first N items")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--keypoints-only", action="store_true",
                   help="estimate keypoints only: NAME_keypoints.json and summary.json, no occupancy model, no meshes "
                   "(e.g. stage 3's training inputs, data.predicted_keypoints; docs/estimator.md)")
    p.add_argument("--mesh-format", default="obj", choices=("obj", "ply", "glb"),
                   help="obj (what im2hands eval reads), ply (one file per hand) or glb (both hands in one coloured "
                   "scene, for viewers)")
    p.add_argument("--keypoint-convention", default=None, choices=("mano", "annotation"),
                   help="where the PIP/DIP keypoints of --keypoints files sit: mano (MANO's regressor) or annotation "
                   "(manual annotations, e.g. InterHand2.6M joint_3d); moved to the model's (docs/keypoints_format.md). "
                   "Default: as the model's training data")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--overwrite", action="store_true",
                       help="--out holds an earlier run: remove its files first (default: refuse)")
    again.add_argument("--resume", action="store_true",
                       help="--out holds an earlier run with the same settings: keep its finished items, do the rest")
    p.set_defaults(func=run)
