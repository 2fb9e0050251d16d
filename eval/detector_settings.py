"""How the per-hand crop pipeline should use a hand detector (``hand_det``): its regions alone, its
scores as presence, its sides; each setting scored on renders and on the real photos.

    python eval/detector_settings.py --data data/synth --split test60 --detector runs/hand_det_v1/last.pt \\
        --settings mediapipe det det:p0.9 det:p0.8:s0.5 --out runs/det_settings

Each setting builds the default image pipeline (the shipped ``crop_net.pt`` giving keypoints and
sides) with

- ``mediapipe``: MediaPipe's palm detector (the pipeline before ``hand_det``);
- ``det``: the hand detector's regions (with the pipeline's searches after it, as always);
- ``:m``: the detectors merge overlapping palms, not overlapping hand regions (``merge_on``);
- ``:f``: MediaPipe's palm detector searches next while a hand is missing (``fallback_detector``);
- ``:k``: hands the detector vouches for are read by the fine-tuned crop network from the first
  crop (``detector_keypoints``);
- ``:pX``: ``detector_presence=X`` (the detector's score ≥ X keeps a hand the landmark network
  doubts); ``:sY``: ``detector_side=Y`` (the weight of the detector's side);

then runs ``im2hands extract`` (library call, meshes at 16 cells, 1 level: only keypoints are
scored) on the split's images and on eval/real_photos, and scores them with
``eval/image_keypoints.py`` (hands found, sides right, 2D px) and ``eval/real_photos.py``.
Writes ``OUT/SETTING/{renders,photos,...}`` and ``OUT/detector_settings.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import image_keypoints  # noqa: E402
import real_photos  # noqa: E402

from im2hands.extraction.estimators import default_estimator, load_estimator  # noqa: E402
from im2hands.extraction.mediapipe_hands import MediaPipePalmDetector  # noqa: E402
from im2hands.extraction.run import AUTO_KEYPOINTS, extract_folder  # noqa: E402
from im2hands.utils.io import write_text  # noqa: E402


def parse_setting(text: str) -> tuple[bool, dict]:
    """``mediapipe[:m]`` or ``det[:f][:m][:k][:pX][:sY]`` -> (uses the detector, settings)."""
    head, *parts = text.split(":")
    if head not in ("mediapipe", "det") or (head == "mediapipe" and set(parts) - {"m"}):
        raise SystemExit(f"bad setting {text!r}: mediapipe[:m], or det[:f][:m][:k][:pX][:sY]")
    kw: dict = {"detector_presence": None, "detector_side": 0.0, "fallback_detector": None, "merge_on": "region",
                "detector_keypoints": False}
    for p in parts:
        if p == "m":
            kw["merge_on"] = "palm"
        elif p == "k":
            kw["detector_keypoints"] = True
        elif p == "f":
            kw["fallback_detector"] = MediaPipePalmDetector().eval()
        elif p[:1] == "p":
            kw["detector_presence"] = float(p[1:])
        elif p[:1] == "s":
            kw["detector_side"] = float(p[1:])
        else:
            raise SystemExit(f"bad setting part {p!r} in {text!r}")
    return head == "det", kw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="test60")
    ap.add_argument("--photos", type=Path, default=Path(__file__).resolve().parent / "real_photos")
    ap.add_argument("--detector", required=True, help="a hand_det run or weights file")
    ap.add_argument("--settings", nargs="+", default=["mediapipe", "det"])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    rows = ["| setting | renders: found | sides right | 2D px mean (median) | photos: found (right side) | "
            "false hands | 2D px | MPJPE mm | MRRPE mm |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for text in args.settings:
        use_det, kw = parse_setting(text)
        pipeline, _ = load_estimator(default_estimator(), None, torch.device("cpu"), None,
                                     detector=args.detector if use_det else "mediapipe")  # fmt: skip
        merge_on = kw.pop("merge_on")
        for k, v in kw.items():
            if use_det:
                setattr(pipeline, k, v)
        for det in (pipeline.detector, pipeline.fallback_detector):
            if det is not None:
                det.merge_on = merge_on
        out = args.out / text.replace(":", "_")
        common = dict(keypoints=AUTO_KEYPOINTS, estimator=pipeline, resolution=16, upsampling_steps=1, progress=False,
                      existing="overwrite")  # fmt: skip
        extract_folder(out / "renders", dataset=args.data, split=args.split, **common)
        _, t = image_keypoints.evaluate(out / "renders", args.data, args.split)
        extract_folder(out / "photos", images=args.photos / "images", **common)
        p = real_photos.evaluate(args.photos, out / "photos", out / "photos_scores")
        f = lambda x: "-" if x is None else f"{x:.1f}"  # noqa: E731
        rows.append(f"| {text} | {t['found']} of {t['gt_hands']} | {f(t['side_right_pct'])} % | "
                    f"{f(t['error_2d_px_mean'])} ({f(t['error_2d_px_median'])}) | {p['found']} of {p['gt_hands']} "
                    f"({p['found_right_side']}) | {p['false_hands']} | {f(p['mean_error_2d_px'])} | "
                    f"{f(p['mean_mpjpe_wrist_mm'])} | {f(p['mean_mrrpe_mm'])} |")  # fmt: skip
        print(rows[-1], flush=True)
    write_text(args.out / "detector_settings.md", "\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
