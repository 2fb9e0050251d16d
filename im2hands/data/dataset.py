"""The torch Dataset over the toolkit's dataset format (synthetic or prepared InterHand2.6M).

Each item holds the image, masks, depth, camera, both hands' keypoints and ground-truth meshes
(rebuilt from the stored hand-model parameters), and freshly drawn occupancy samples. The
occupancy points of item ``i`` in epoch ``e`` are a pure function of ``(seed, e, i)``, so
multi-worker loading and distributed samplers give the same points whatever the worker
layout; call :meth:`HandsDataset.set_epoch` each epoch for new points.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from im2hands.data import format as fmt
from im2hands.data.files import read_keypoints
from im2hands.data.sampling import sample_occupancy_points
from im2hands.geometry.frames import palm_frame, project
from im2hands.hands.constants import SIDES
from im2hands.hands.joint_orders import FINGERTIPS_STANDARD
from im2hands.hands.layer import HandModel, load_hand_models
from im2hands.utils.errors import DataError

log = logging.getLogger(__name__)

ALL_FIELDS = ("image", "masks", "depth", "mesh", "occupancy")


def mesh_in_camera(
    model: HandModel, hand: fmt.HandAnnotation, R: np.ndarray, t: np.ndarray
) -> torch.Tensor:
    """Ground-truth vertices of one hand in the camera frame (metres), shape ``(V', 3)``."""
    dtype = model.dtype
    pose = torch.as_tensor(hand.pose, dtype=dtype)[None]
    shape = torch.as_tensor(hand.shape, dtype=dtype)[None]
    trans = torch.as_tensor(hand.trans, dtype=dtype)[None]
    with torch.no_grad():
        verts_world = model(pose, shape, trans).vertices[0]  # (V', 3)
    R_t = torch.as_tensor(R, dtype=dtype)
    t_t = torch.as_tensor(t, dtype=dtype)
    return verts_world @ R_t.T + t_t  # (V', 3) camera frame


class HandsDataset(Dataset):
    """Samples of a dataset folder as dicts of tensors.

    Item keys (``2`` is the hand axis, ``LEFT = 0``, ``RIGHT = 1``; camera frame, metres):

    - ``image`` (3, H, W) float in [0, 1]; ``masks_amodal``, ``masks_visible`` (2, H, W) bool;
      ``depth`` (H, W) metres (0 = no hand)
    - ``K`` (3, 3) pixels; ``R`` (3, 3), ``t`` (3,) world to camera
    - ``keypoints`` (2, 21, 3) standard order; ``keypoints_2d`` (2, 21, 2) pixels;
      ``hand_valid`` (2,) bool; ``pose`` (2, 48), ``shape`` (2, 10), ``trans`` (2, 3) (world frame)
    - ``vertices`` (2, V', 3) and ``faces`` (2, F', 3) int64: ground-truth closed meshes
    - ``points`` (2, N, 3) and ``occupancy`` (2, N) float: labelled query points per hand,
      ``uniform_ratio`` of them uniform in the hand's palm-frame cube, the rest near its surface
    - ``index`` int, ``id`` str
    - with ``predicted_keypoints``: ``keypoints_pred`` (2, 21, 3), a keypoint estimator's
      prediction of the hands (camera frame, metres), and ``keypoints_pred_valid`` (2,) bool:
      the file gives that hand, the ground truth has it, and the prediction's mean 2D distance
      to the ground truth's keypoints is at most ``predicted_max_px`` (a hand found on the other
      hand, or on nothing, is not a noisy version of this one)

    Args:
        root: dataset folder.
        split: split name (``splits/<split>.txt``) or ``all``.
        hand_models: ``{"left": HandModel, "right": HandModel}``; loaded from ``mano_dir``
            when None. Their ``model_name`` must match the dataset's.
        mano_dir: hand-model folder used when ``hand_models`` is None.
        num_points: query points per hand; uniform_ratio, box_side (m), surface_sigma (m): the
            occupancy sampler's settings.
        tip_ratio, tip_radius (m): fraction of the near-surface points drawn within tip_radius of
            the fingertip keypoints (``focus`` of :func:`sample_occupancy_points`); 0: off.
        seed: base seed of occupancy sampling.
        fields: which of ``image, masks, depth, mesh, occupancy`` to load (cameras and
            keypoints are always there; ``occupancy`` implies ``mesh``).
        check: check every sample of the split once here (annotation JSON, the files of
            ``fields``: headers and end markers; about 1 ms a sample). False: problems show
            only when an item is loaded.
        skip_bad: leave out the samples the check finds bad, with a warning (listed in
            ``skipped``), and replace an item that still fails to load by the next one, with a
            warning. False: the first bad sample raises :class:`DataError`.
        predicted_keypoints: folder of keypoint files (docs/keypoints_format.md), ``ID.json`` or
            ``ID_keypoints.json`` (as ``im2hands extract`` writes them) per sample id: what a
            keypoint estimator predicts on these images. None: no ``keypoints_pred``. A sample
            without a file gets ``keypoints_pred_valid`` all False (counted in
            ``predicted_missing``, with a warning).
        predicted_max_px: largest mean 2D distance (pixels) of a predicted hand from the ground
            truth's for it to count as that hand's prediction.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "all",
        *,
        hand_models: dict[str, HandModel] | None = None,
        mano_dir: str | None = None,
        num_points: int = 2048,
        uniform_ratio: float = 0.5,
        box_side: float = 0.44,
        surface_sigma: float = 0.004,
        tip_ratio: float = 0.0,
        tip_radius: float = 0.025,
        seed: int = 0,
        fields: Sequence[str] = ALL_FIELDS,
        check: bool = True,
        skip_bad: bool = True,
        predicted_keypoints: str | Path | None = None,
        predicted_max_px: float = 40.0,
    ) -> None:
        self.root = Path(root)
        self.meta = fmt.read_meta(self.root)
        if self.meta.get("status", "done") != "done":
            log.warning("%s: its writer did not finish (meta.json status %r); rerun the same command "
                        "to complete it", self.root, self.meta["status"])
        self.split = split
        self.ids = fmt.list_samples(self.root, split)
        if not self.ids:
            raise DataError(f"{self.root}: split '{split}' holds no complete samples")
        unknown = set(fields) - set(ALL_FIELDS)
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}; expected a subset of {ALL_FIELDS}")
        self.fields = set(fields) | ({"mesh"} if "occupancy" in fields else set())
        self.skip_bad = bool(skip_bad)
        self.skipped: dict[str, str] = self._check_samples() if check else {}
        self.num_points, self.uniform_ratio = int(num_points), float(uniform_ratio)
        self.box_side, self.surface_sigma = float(box_side), float(surface_sigma)
        self.tip_ratio, self.tip_radius = float(tip_ratio), float(tip_radius)
        self.seed, self.epoch = int(seed), 0
        self._models = hand_models
        self._mano_dir = mano_dir
        self.predicted_max_px = float(predicted_max_px)
        self.predicted_files: dict[str, Path] | None = None
        self.predicted_missing: list[str] = []
        if predicted_keypoints is not None:
            self._find_predictions(Path(predicted_keypoints))
        if "mesh" in self.fields:
            self._check_model(self.models)

    def _find_predictions(self, folder: Path) -> None:
        if not folder.is_dir():
            raise DataError(f"data.predicted_keypoints: {folder} is not a folder of keypoint files")
        self.predicted_files = {}
        for sid in self.ids:
            for name in (f"{sid}.json", f"{sid}_keypoints.json"):
                if (folder / name).is_file():
                    self.predicted_files[sid] = folder / name
                    break
            else:
                self.predicted_missing.append(sid)
        if not self.predicted_files:
            raise DataError(f"data.predicted_keypoints: {folder} holds no keypoint file of split "
                            f"'{self.split}' (ID.json or ID_keypoints.json, e.g. {self.ids[0]}.json)")
        if self.predicted_missing:
            log.warning("%s: %d of %d samples of split '%s' have no predicted keypoints (e.g. %s); "
                        "they get none", folder, len(self.predicted_missing), len(self.ids), self.split,
                        self.predicted_missing[0])

    @property
    def models(self) -> dict[str, HandModel]:
        if self._models is None:
            self._models = load_hand_models(self._mano_dir)
        return self._models

    def _check_model(self, models: dict[str, HandModel]) -> None:
        want = self.meta.get("hand_model", {}).get("name")
        have = models["right"].model_name
        if want is not None and want != have:
            raise DataError(
                f"{self.root}: the dataset was made with hand model '{want}' but '{have}' is loaded; "
                "point hand_model.mano_dir (or IM2HANDS_MANO_DIR) at the matching files"
            )

    def _check_samples(self) -> dict[str, str]:
        """Check the split's samples (see ``skip_bad``); returns ``{id: reason}`` of those left out."""
        files = tuple(f for f, field in (("image", "image"), ("mask", "masks"), ("depth", "depth"))
                      if field in self.fields)
        bad: dict[str, str] = {}
        for sid in self.ids:
            try:
                fmt.check_sample(self.root, sid, files)
            except DataError as exc:
                if not self.skip_bad:
                    raise DataError(f"{exc} (data.skip_bad_samples=true leaves bad samples out)") from None
                bad[sid] = str(exc)
        if bad:
            self.ids = [sid for sid in self.ids if sid not in bad]
            log.warning("%s: %d bad sample(s) of split '%s' left out, e.g. %s", self.root, len(bad),
                        self.split, next(iter(bad.values())))
            if not self.ids:
                raise DataError(f"{self.root}: every sample of split '{self.split}' is bad, e.g. {next(iter(bad.values()))}")
        return bad

    def set_epoch(self, epoch: int) -> None:
        """Draw new occupancy points for the next epoch (same points for the same epoch)."""
        self.epoch = int(epoch)

    @property
    def faces(self) -> torch.Tensor:
        """(2, F', 3) int64 closed faces of both hands."""
        return torch.stack([self.models[s].closed_faces.cpu() for s in SIDES])

    def __len__(self) -> int:
        return len(self.ids)

    def _generator(self, index: int) -> torch.Generator:
        seq = np.random.SeedSequence([self.seed, self.epoch, index])
        return torch.Generator().manual_seed(int(seq.generate_state(1, np.uint64)[0] >> 1))

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self.ids) <= index < len(self.ids):  # ends a plain `for item in dataset`
            raise IndexError(f"index {index} out of range for {len(self.ids)} samples")
        index = index % len(self.ids)
        if not self.skip_bad:
            return self._load(index)
        for attempt in range(len(self.ids)):
            i = (index + attempt) % len(self.ids)
            try:
                return self._load(i)
            except (DataError, OSError, ValueError) as exc:  # pixels the start-up check could not see
                log.warning("%s: sample %s skipped: %s", self.root, self.ids[i], exc)
        raise DataError(f"{self.root}: no sample of split '{self.split}' could be loaded")

    def _load(self, index: int) -> dict[str, Any]:
        sid = self.ids[index]
        ann = fmt.read_annotation(self.root, sid)
        missing = [s for s in SIDES if s not in ann.hands]
        if missing and "mesh" in self.fields:
            raise DataError(f"{self.root}/annotations/{sid}.json: no annotation for the {missing[0]} hand")
        item: dict[str, Any] = {"index": index, "id": sid}
        item["K"] = torch.as_tensor(ann.K, dtype=torch.float32)
        item["R"] = torch.as_tensor(ann.R, dtype=torch.float32)
        item["t"] = torch.as_tensor(ann.t, dtype=torch.float32)
        hands = [ann.hands.get(s) for s in SIDES]
        zeros = {"pose": np.zeros(48), "shape": np.zeros(10), "trans": np.zeros(3),
                 "keypoints": np.zeros((21, 3)), "keypoints_2d": np.zeros((21, 2))}
        for key, default in zeros.items():
            arr = np.stack([getattr(h, key) if h is not None else default for h in hands])
            item[key] = torch.as_tensor(arr, dtype=torch.float32)
        item["hand_valid"] = torch.tensor([h is not None and h.valid for h in hands])
        if "image" in self.fields:
            img = fmt.read_image(self.root / ann.image)
            item["image"] = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0  # (3, H, W)
        if "masks" in self.fields:
            m = fmt.read_masks(self.root / ann.mask)
            item["masks_amodal"] = torch.from_numpy(np.stack([m["left_amodal"], m["right_amodal"]]))
            item["masks_visible"] = torch.from_numpy(np.stack([m["left_visible"], m["right_visible"]]))
        if "depth" in self.fields:
            item["depth"] = torch.from_numpy(fmt.read_depth(self.root / ann.depth))
        if "mesh" in self.fields:
            verts = [mesh_in_camera(self.models[s], ann.hands[s], ann.R, ann.t) for s in SIDES]
            item["vertices"] = torch.stack(verts).float()  # (2, V', 3)
            item["faces"] = self.faces
        if "occupancy" in self.fields:
            item.update(self._occupancy(item, index))
        if self.predicted_files is not None:
            item.update(self._predicted(sid, item))
        return item

    def _predicted(self, sid: str, item: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``keypoints_pred`` and ``keypoints_pred_valid`` of one sample (see the class docstring)."""
        pred = torch.zeros(2, 21, 3)
        ok = torch.zeros(2, dtype=torch.bool)
        path = self.predicted_files.get(sid)  # type: ignore[union-attr]
        if path is not None:
            joints = read_keypoints(path, camera_frame=True, require_hand=False).joints
            for h, side in enumerate(SIDES):
                if side not in joints or not bool(item["hand_valid"][h]):
                    continue
                kp = torch.as_tensor(joints[side], dtype=torch.float32)
                dist = (project(kp, item["K"]) - item["keypoints_2d"][h]).norm(dim=-1).mean()
                if float(dist) <= self.predicted_max_px:
                    pred[h], ok[h] = kp, True
        return {"keypoints_pred": pred, "keypoints_pred_valid": ok}

    def _occupancy(self, item: dict[str, Any], index: int) -> dict[str, torch.Tensor]:
        gen = self._generator(index)
        kp = item["keypoints"].double()  # (2, 21, 3)
        T = palm_frame(kp, torch.tensor([True, False]))  # (2, 4, 4) camera -> palm frame
        points, occ = [], []
        for h in range(2):
            axes = T[h, :3, :3].T  # (3, 3) palm axes as columns (mirrored for the left hand)
            p, o = sample_occupancy_points(
                item["vertices"][h].double(), item["faces"][h], kp[h, 0], axes, self.num_points,
                uniform_ratio=self.uniform_ratio, side=self.box_side, sigma=self.surface_sigma, seed=gen,
                focus=kp[h, list(FINGERTIPS_STANDARD)], focus_ratio=self.tip_ratio, focus_radius=self.tip_radius,
            )
            points.append(p.float())
            occ.append(torch.as_tensor(o).float())
        return {"points": torch.stack(points), "occupancy": torch.stack(occ)}
