"""Record the original MediaPipe networks' outputs (TFLite interpreter) for the torch port's test.

Writes ``tests/models/mediapipe/reference.npz``: the inputs (uint8) and the outputs of
``hand_landmark_full.tflite`` on three 224 x 224 crops (two hands of our synthetic renders,
ground-truth-centred and upright, and one procedural image with no hand) and of
``palm_detection_full.tflite`` on one 192 x 192 render (of four, the one the detector scores highest). Needs the TFLite interpreter of the
``ai-edge-litert`` package, which is NOT a dependency of the toolkit: install it into your own venv
(``.venv/bin/pip install ai-edge-litert``), then

    .venv/bin/python eval/record_mediapipe_reference.py [--out tests/models/mediapipe/reference.npz]

The files come from the cache (``im2hands weights fetch-mediapipe``). The inputs are made with
``im2hands.data.synthetic.synthesize`` (seed 0, the default config), so a rerun gives the same
crops; the test only needs the stored ones.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from im2hands.data.format import read_annotation, read_image
from im2hands.data.synthetic import synthesize
from im2hands.geometry.crops import crop_images, upright_roi
from im2hands.models.mediapipe.fetch import model_path

HANDS = (("0000000", "left"), ("0000001", "right"))


def run_tflite(path: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs (by tensor name) of the TFLite file for each uint8 NHWC image, stacked on the batch axis."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    outs: dict[str, list[np.ndarray]] = {}
    for img in images:
        it.set_tensor(inp["index"], (img.astype(np.float32) / 255.0)[None])
        it.invoke()
        for d in it.get_output_details():
            outs.setdefault(d["name"], []).append(it.get_tensor(d["index"])[0].copy())
    return {k: np.stack(v) for k, v in outs.items()}


def make_inputs(tmp: Path, palm_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(3, 224, 224, 3) landmark crops and (1, 192, 192, 3) palm input, uint8.

    The palm input is the render (of the first four) on which the original detector's best anchor
    scores highest, so that the stored case has detections to decode.
    """
    synthesize(tmp, 4, seed=0, workers=1, progress=False)  # the default synth settings
    crops = []
    for sid, side in HANDS:
        img = torch.from_numpy(read_image(tmp / "images" / f"{sid}.png")).permute(2, 0, 1).float()[None] / 255.0
        kp = torch.tensor(read_annotation(tmp, sid).hands[side].keypoints_2d, dtype=torch.float32)[None]
        crop = crop_images(img, upright_roi(kp, scale=1.8), 224)[0]
        crops.append((crop.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy())
    yy, xx = np.mgrid[0:224, 0:224]
    procedural = np.stack([xx, yy, (xx + yy) // 2], axis=-1).astype(np.uint8)  # smooth ramps, no hand
    crops.append(procedural)
    palms = []
    for i in range(4):
        img = torch.from_numpy(read_image(tmp / "images" / f"{i:07d}.png")).permute(2, 0, 1).float()[None]
        palm = F.interpolate(img, size=(192, 192), mode="bilinear", antialias=True, align_corners=False)
        palms.append(palm[0].permute(1, 2, 0).clamp(0, 255).round().byte().numpy())
    best = run_tflite(palm_file, np.stack(palms))["Identity_1"].max(axis=(1, 2))
    return np.stack(crops), palms[int(np.argmax(best))][None]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests/models/mediapipe/reference.npz"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        crops, palm = make_inputs(Path(tmp), model_path("palm_detection_full.tflite"))
    lm = run_tflite(model_path("hand_landmark_full.tflite"), crops)
    pd = run_tflite(model_path("palm_detection_full.tflite"), palm)
    out = Path(args.out)
    tmp_out = out.with_name(out.stem + ".tmp.npz")
    np.savez_compressed(
        tmp_out, landmark_inputs=crops, palm_inputs=palm,
        **{f"landmark_{k}": v for k, v in lm.items()}, **{f"palm_{k}": v for k, v in pd.items()},
    )
    os.replace(tmp_out, out)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")
    for k, v in {**lm, **{f"palm {k}": v for k, v in pd.items()}}.items():
        print(k, v.shape, v.reshape(len(v), -1)[:, :4].round(3).tolist())


if __name__ == "__main__":
    main()
