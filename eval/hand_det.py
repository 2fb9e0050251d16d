"""Hand detectors on whole images: MediaPipe's palm detector against fine-tuned ones (``hand_det``
runs), on the renders of a dataset split and on the real photos of eval/real_photos.

    python eval/hand_det.py --data data/synth --split test60 --detectors mediapipe runs/hand_det_v1 --out runs/det_eval

Each image is letterboxed to the detector's 192-pixel input, as the crop pipeline's detector
sees it (:class:`im2hands.extraction.mediapipe_hands.MediaPipePalmDetector`, whole image, no
tiles), and detected at each of ``--scores`` (default 0.5, MediaPipe's threshold). The ground truth of a hand is its palm box from its 2D
keypoints (:func:`im2hands.data.det_batch.palm_boxes`; renders: the dataset's ``keypoints_2d``,
real photos: ``gt/NAME.json`` projected through the camera file). A detection is matched to the
hand whose box centre is nearest, greedily by score, when within half the hand's box side;
every other detection is a false hand. Per detector and image set: hands found (%), images
with every hand found (%), false hands per image, centre error of found hands (image pixels),
and, for detectors that tell sides, sides right of found hands (%). Writes
``OUT/hand_det.json`` and ``OUT/hand_det.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_photos import project  # noqa: E402

from im2hands.data.dataset import HandsDataset  # noqa: E402
from im2hands.data.det_batch import palm_boxes  # noqa: E402
from im2hands.extraction.inputs import IMAGE_SUFFIXES, read_input_image, read_keypoints  # noqa: E402
from im2hands.geometry.crops import crop_images, crop_to_image, square_windows  # noqa: E402
from im2hands.hands.constants import SIDES  # noqa: E402
from im2hands.loading import load_model  # noqa: E402
from im2hands.models.hand_det import HandDetModel  # noqa: E402
from im2hands.models.mediapipe.palm import INPUT_SIZE, PalmDetector  # noqa: E402
from im2hands.utils.errors import Im2HandsError  # noqa: E402
from im2hands.utils.io import write_json, write_text  # noqa: E402

MEDIAPIPE = "mediapipe"


def load_detector(name: str) -> torch.nn.Module:
    """``mediapipe`` (the original palm detector) or a ``hand_det`` run / weights file."""
    if name == MEDIAPIPE:
        return PalmDetector().eval()
    model, cfg = load_model(name)
    if not isinstance(model, HandDetModel):
        raise Im2HandsError(f"{name}: model.type '{cfg.model.type}' is not a hand detector (hand_det)")
    return model.eval()


def detect(net: torch.nn.Module, image: torch.Tensor, score: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Box centres (N, 2) and sides (N,) in image pixels, and right-hand probabilities (N,) or
    None, of the hands ``net`` finds in one (3, H, W) image in [0, 1]."""
    H, W = image.shape[1:]
    window = square_windows(H, W, (), whole=True)
    det = net.detect(crop_images(image, window, INPUT_SIZE), score_threshold=score)[0]
    corners = crop_to_image(det.boxes.double().reshape(1, -1, 2) * INPUT_SIZE, window, INPUT_SIZE).reshape(-1, 2, 2)
    centre = corners.mean(1).numpy()
    side = (corners[:, 1] - corners[:, 0]).amax(-1).numpy()
    right = None if det.right_prob is None else det.right_prob.double().numpy()
    return centre, side, right


def score_image(centre: np.ndarray, right: np.ndarray | None, gt_box: dict[int, np.ndarray]) -> dict:
    """Match detections (best first) to ground-truth palm boxes ``{slot: (cx, cy, side, side)}``."""
    free = dict(gt_box)
    found, errors, sides_ok, false = [], [], [], 0
    for i in range(len(centre)):
        dist = {h: float(np.linalg.norm(centre[i] - b[:2])) for h, b in free.items()}
        h = min(dist, key=dist.get) if dist else None
        if h is None or dist[h] > 0.5 * free[h][2]:
            false += 1
            continue
        del free[h]
        found.append(h)
        errors.append(dist[h])
        if right is not None:
            sides_ok.append((right[i] >= 0.5) == (SIDES[h] == "right"))
    return {"hands": len(gt_box), "found": len(found), "false": false, "errors": errors, "sides_ok": sides_ok}


def renders(data: Path, split: str, limit: int | None):
    """(name, image (3, H, W), {slot: palm box}) of a dataset split's items."""
    ds = HandsDataset(data, split, fields=("image",))
    for i in range(len(ds) if limit is None else min(limit, len(ds))):
        item = ds[i]
        boxes = {h: palm_boxes(item["keypoints_2d"][h].double()).numpy() for h in range(2) if bool(item["hand_valid"][h])}
        yield str(i), item["image"].float(), boxes


def photos(data: Path):
    """(name, image, {slot: palm box}) of the real photos (``images/NAME`` + ``gt/NAME.json``)."""
    for path in sorted(p for p in (data / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        gt = read_keypoints(data / "gt" / f"{path.stem}.json")
        boxes = {SIDES.index(s): palm_boxes(torch.from_numpy(project(j, gt.K))).numpy() for s, j in gt.joints.items()}
        image = torch.from_numpy(read_input_image(path)).permute(2, 0, 1).float() / 255.0
        yield path.stem, image, boxes


def summarise(per_image: list[dict]) -> dict:
    hands = sum(r["hands"] for r in per_image)
    errors = [e for r in per_image for e in r["errors"]]
    sides = [s for r in per_image for s in r["sides_ok"]]
    return {
        "images": len(per_image), "hands": hands,
        "found_pct": 100.0 * sum(r["found"] for r in per_image) / max(hands, 1),
        "all_found_pct": 100.0 * np.mean([r["found"] == r["hands"] for r in per_image]),
        "false_per_image": float(np.mean([r["false"] for r in per_image])),
        "centre_px": float(np.mean(errors)) if errors else float("nan"),
        "side_right_pct": 100.0 * float(np.mean(sides)) if sides else None,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="dataset folder (renders); omit to score the real photos only")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=None, help="first N items of the split")
    ap.add_argument("--photos", default=str(Path(__file__).resolve().parent / "real_photos"), help="real photos ('' for none)")
    ap.add_argument("--detectors", nargs="+", default=[MEDIAPIPE], help="'mediapipe' and/or hand_det runs / weights files")
    ap.add_argument("--scores", nargs="+", type=float, default=[0.5], help="score thresholds to detect at")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        nets = {name: load_detector(name) for name in args.detectors}
        sets = {}
        if args.data:
            sets[f"renders {args.split}"] = list(renders(Path(args.data), args.split, args.limit))
        if args.photos:
            sets["real photos"] = list(photos(Path(args.photos)))
    except Im2HandsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result: dict = {}
    with torch.no_grad():
        for name, net in nets.items():
            for score in args.scores:
                key = name if len(args.scores) == 1 else f"{name} @ {score:g}"
                for set_name, items in sets.items():
                    rows = []
                    for _, image, boxes in tqdm(items, desc=f"{key} | {set_name}", leave=False):
                        centre, _, right = detect(net, image, score)
                        rows.append(score_image(centre, right, boxes))
                    result.setdefault(key, {})[set_name] = summarise(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "hand_det.json", result)
    lines = ["| detector | images | hands found | images all found | false hands / image | centre px | sides right |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, per_set in result.items():
        for set_name, r in per_set.items():
            side = "-" if r["side_right_pct"] is None else f"{r['side_right_pct']:.1f} %"
            lines.append(f"| {name} | {set_name} ({r['images']}) | {r['found_pct']:.1f} % of {r['hands']} | "
                         f"{r['all_found_pct']:.1f} % | {r['false_per_image']:.2f} | {r['centre_px']:.1f} | {side} |")  # fmt: skip
    write_text(out / "hand_det.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
