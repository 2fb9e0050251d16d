"""Stage 2, two-hand occupancy refinement in the camera frame (reference section 2.2).

For a batch of images with both hands' keypoints (camera frame, metres):

1. **Frozen stage 1** (:class:`~im2hands.models.init_occ.InitOccNet`, loaded with
   :func:`load_stage1`): always in eval mode and without gradients. Its occupancy at a query
   point is an input feature of the refinement (not a residual).
2. **Anchors** (:class:`~im2hands.models.anchors.AnchorFinder`): ``num_anchors`` points per
   hand on the stage-1 surface, found from the stage-1 field directly (rays from the keypoint
   skeleton, bisection, farthest point sampling; no mesh extraction).
3. **Anchor encoding**: each anchor gets its pixel-aligned feature (bilinear sample of the
   encoder's ``query_features`` at its projection with ``K``) and a hand one-hot; each hand's
   anchors go through the same :class:`~im2hands.models.point_transformer.PointTransformerEncoder`
   (positions relative to the centre of the box around both hands' anchors, in decimetres).
4. **Two-hand context**: ``z'_s = Linear([z_s, z_other, g_img])`` (one layer for both hands),
   ``g_img`` the encoder's global code.
5. **Query decoding** (:class:`~im2hands.models.point_transformer.QueryAnchorAttention`): each
   camera-frame query point of hand ``s`` attends over the 9 nearest anchors of hand ``s`` plus
   a global token, and a ResNet-FC decoder maps ``[position, pixel-aligned feature, stage-1
   probability of hand s at the point]`` plus the attention output to a logit.

The penetration term evaluates each hand's refined field at the other hand's query points as
well. Every query point is in the camera frame and each stage-1 decoder maps camera points into
its own hand's frame, so this is correct by construction (the original fed one hand's
normalised coordinates to the other hand's decoder; reference section 7).

The stage-2 image encoder (``model.encoder``, with the global code) starts from the stage-1
encoder's weights wherever tensor names and shapes match (all but the global conv when both
use the same encoder config); the frozen stage 1 keeps its own encoder.

A stage-2 checkpoint is self-contained: its state_dict holds the stage-1 weights
(``init_occ.*``) and, as the model's extra state (``_extra_state``, plain strings), the
stage-1 run's resolved config as YAML text. :meth:`RefOccNet.from_checkpoint` (which
:func:`im2hands.loading.load_model` calls) builds stage 1 from that stored config, so
the stage-1 run named by ``model.ref_occ.init_occ`` is needed only to build stage 2 from a
config (:meth:`RefOccNet.from_config`: training, resuming).

Differences from the original (reference section 2.2): anchors come from the stage-1 field
(rays + bisection) instead of ``sample_surface_even`` on extracted meshes; pixel-aligned
features are sampled from the encoder's ``query_features`` (a 1x1 conv over both heads' last
maps at S/4) instead of the same conv applied after upsampling the maps to S (bilinear sampling
of the one equals bilinear sampling of an upsampled other up to the interpolation kernel);
positions are in decimetres relative to the two-hand box centre (OpenCV camera axes, no y/z
flip); LayerNorm replaces BatchNorm in the point transformer; the penetration branch re-uses
each hand's own frame (above).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from im2hands.geometry.frames import project
from im2hands.hands.constants import LEFT, RIGHT
from im2hands.models.anchors import AnchorFinder
from im2hands.models.base import HandsModel
from im2hands.models.encoder import ImageEncoder, ImageFeatures
from im2hands.models.measures import OCC_LOSSES, hand_iou, occupancy_loss
from im2hands.models.point_transformer import PointTransformerEncoder, QueryAnchorAttention
from im2hands.loading import build_from_stored_config, load_frozen
from im2hands.registry import MODELS
from im2hands.typing import Float, Int, Tensor
from im2hands.utils.batch import hand_valid
from im2hands.utils.errors import Im2HandsError

# AnchorFinder lives in im2hands.models.anchors; re-exported here for existing imports.
__all__ = ["POSITION_UNIT", "load_stage1", "sample_pixel_features", "AnchorFinder", "RefOccFeatures",
           "RefOccNet"]  # fmt: skip

log = logging.getLogger(__name__)

POSITION_UNIT: float = 0.1
"""Length unit of the positions fed to the point transformer and decoder, metres (decimetres:
two hands span about +-1.5)."""

_EXTRA_STATE = "_extra_state"  # torch's state_dict key of the root module's get_extra_state()
STAGE1_SOURCE = "model.ref_occ.init_occ"


def load_stage1(path: str | Path) -> HandsModel:
    """Rebuild a trained stage-1 model from a run folder or a checkpoint file.

    A folder gives its ``best.pt``, else its ``last.pt``. The architecture comes from the
    config stored in the checkpoint, then the weights are loaded strictly
    (:func:`im2hands.loading.load_frozen`).

    Returns:
        The model in eval mode on the CPU.

    Raises:
        Im2HandsError: missing path, unreadable or foreign file, or not a stage-1 checkpoint;
            the message names the path.
    """
    return load_frozen(path, source=STAGE1_SOURCE, stage="init_occ")[0]


def sample_pixel_features(
    feature_map: Float[Tensor, "B C h w"],
    p_cam: Float[Tensor, "B N 3"],
    K: Float[Tensor, "B 3 3"],
    image_hw: tuple[int, int],
) -> Float[Tensor, "B N C"]:
    """Pixel-aligned features: bilinear samples of a feature map at the points' projections.

    The map covers the whole input image (``H x W`` pixels, ``K`` of that image); pixel
    ``(u, v)`` maps to ``(2u / W - 1, 2v / H - 1)`` with ``align_corners=False`` (the pixel-corner
    convention of :mod:`~im2hands.geometry.frames`). Points projecting outside get zeros.

    Args:
        feature_map: ``(B, C, h, w)``.
        p_cam: ``(B, N, 3)`` camera-frame points, metres.
        K: ``(B, 3, 3)`` intrinsics of the input image.
        image_hw: ``(H, W)`` of the input image, pixels.

    Returns:
        ``(B, N, C)`` features.
    """
    H, W = image_hw
    dtype = torch.promote_types(p_cam.dtype, torch.float32)
    with torch.autocast(device_type=p_cam.device.type, enabled=False):  # pixels need at least float32
        uv = project(p_cam.to(dtype), K.to(dtype))  # (B, N, 2) pixels
    grid = torch.stack([2.0 * uv[..., 0] / W - 1.0, 2.0 * uv[..., 1] / H - 1.0], -1)  # (B, N, 2)
    out = F.grid_sample(feature_map, grid[:, :, None].to(feature_map.dtype), mode="bilinear",
                        padding_mode="zeros", align_corners=False)  # (B, C, N, 1)  # fmt: skip
    return out[..., 0].transpose(1, 2)  # (B, N, C)


@dataclass
class RefOccFeatures:
    """What :meth:`RefOccNet.encode` computes once per batch (``2`` = hand axis, left first).

    Attributes:
        stage1: the frozen stage 1's features (its ``encode`` output).
        image: the stage-2 encoder's :class:`ImageFeatures`.
        K: ``(B, 3, 3)`` intrinsics; image_hw: input image ``(H, W)``, pixels.
        anchors: ``(B, 2, M, 3)`` anchors on the stage-1 surface, camera frame, metres.
        anchor_counts: ``(B, 2)`` threshold crossings the anchor finder found per hand.
        centre: ``(B, 3)`` centre of the box around both (valid) hands' anchors, camera frame.
        anchor_points: ``(B, 2, P, 3)`` the encoder's last-level points, relative to ``centre``
            in :data:`POSITION_UNIT`.
        anchor_features: ``(B, 2, P, C)`` their features.
        context: ``(B, 2, C)`` two-hand context code per hand.
    """

    stage1: Any
    image: ImageFeatures
    K: Float[Tensor, "B 3 3"]
    image_hw: tuple[int, int]
    anchors: Float[Tensor, "B 2 M 3"]
    anchor_counts: Int[Tensor, "B 2"]
    centre: Float[Tensor, "B 3"]
    anchor_points: Float[Tensor, "B 2 P 3"]
    anchor_features: Float[Tensor, "B 2 P C"]
    context: Float[Tensor, "B 2 C"]


def _accept_missing_extra_state(module: "RefOccNet", state_dict: dict, prefix: str, *unused: Any) -> None:
    """``load_state_dict`` pre-hook: a state_dict saved before the stage-1 config was stored
    (no ``_extra_state``) keeps the model's own instead of failing a strict load."""
    state_dict.setdefault(prefix + _EXTRA_STATE, module.get_extra_state())


@MODELS.register("ref_occ")
class RefOccNet(HandsModel):
    """Stage 2 (see the module docstring).

    Args:
        init_occ: the trained stage-1 model (frozen here: no gradients, always eval mode, not
            in :meth:`trainable_parameters`).
        encoder: the stage-2 image encoder; must compute a global code (``with_global=True``).
        num_anchors, threshold, penetration_weight, loss: as in ``RefOccConfig``.
        anchor: keyword arguments of :class:`AnchorFinder` (``bone_samples``, ``rays``,
            ``ray_length``, ``ray_steps``, ``bisections``).
        encoder_layers, encoder_neighbors, encoder_reduced_dim, encoder_dim,
            encoder_full_blocks: the anchor :class:`PointTransformerEncoder`.
        query_neighbors, attention_dim, decoder_hidden, decoder_blocks: the
            :class:`QueryAnchorAttention` decoder.
        init_encoder: copy the stage-1 encoder's tensors into ``encoder`` where names and
            shapes match (the stage-2 global conv has no stage-1 counterpart).
        decode_chunk: without autograd, :meth:`decode` works through this many points (over the
            batch and per hand) at a time.
        init_occ_config: the stage-1 run's resolved config as YAML text,
            kept as the model's extra state so that a checkpoint rebuilds stage 1 on its own
            (:meth:`from_checkpoint`); None: not stored (such a checkpoint needs the stage-1 run).
    """

    stage = "ref_occ"
    val_metric = "iou"
    val_mode = "max"
    data_fields = ("image", "occupancy")
    uses_image = True
    decodes_occupancy = True

    def __init__(
        self,
        *,
        init_occ: HandsModel,
        encoder: ImageEncoder,
        num_anchors: int = 512,
        threshold: float = 0.45,
        penetration_weight: float = 0.001,
        loss: str = "mse",
        anchor: Optional[dict[str, Any]] = None,
        encoder_layers: tuple[int, ...] = (256, 128),
        encoder_neighbors: int = 16,
        encoder_reduced_dim: int = 120,
        encoder_dim: int = 256,
        encoder_full_blocks: int = 3,
        query_neighbors: int = 9,
        attention_dim: int = 200,
        decoder_hidden: int = 32,
        decoder_blocks: int = 5,
        init_encoder: bool = True,
        decode_chunk: int = 8192,
        init_occ_config: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.init_occ_config = init_occ_config
        self.register_load_state_dict_pre_hook(_accept_missing_extra_state)
        if encoder.global_conv is None:
            raise ValueError("the stage-2 encoder needs a global code: build it with with_global=True")
        if encoder_layers and max(encoder_layers) >= num_anchors:
            raise ValueError(f"encoder_layers {tuple(encoder_layers)} must stay below num_anchors={num_anchors}")
        if loss not in OCC_LOSSES:
            raise ValueError(f"loss must be 'mse' or 'bce', got {loss!r}")
        self.threshold, self.penetration_weight, self.decode_chunk = threshold, penetration_weight, decode_chunk
        self.loss = loss
        self.init_occ = init_occ
        for p in self.init_occ.parameters():
            p.requires_grad_(False)
        self.init_occ.eval()
        self.encoder = encoder
        self.encoder_init_tensors = 0
        """Encoder tensors copied from stage 1 (0: none)."""
        stage1_encoder = init_occ.encoder if init_occ.uses_image else None
        if init_encoder and stage1_encoder is not None:
            own = encoder.state_dict()
            same = {k: v for k, v in stage1_encoder.state_dict().items() if k in own and own[k].shape == v.shape}
            encoder.load_state_dict(same, strict=False)
            self.encoder_init_tensors = len(same)
            log.info("stage-2 encoder: %d of %d tensors initialised from stage 1", len(same), len(own))
        self.anchor_finder = AnchorFinder(
            num_anchors=num_anchors, threshold=float(init_occ.threshold), **(anchor or {})
        )
        C = encoder.feature_channels
        self.anchor_encoder = PointTransformerEncoder(
            in_dim=C + 2, layers=tuple(encoder_layers), reduced_dim=encoder_reduced_dim, dim=encoder_dim,
            neighbors=encoder_neighbors, full_blocks=encoder_full_blocks,
        )  # fmt: skip
        D, G = self.anchor_encoder.out_dim, 2 * encoder.head_channels
        self.context = nn.Linear(2 * D + G, D)
        self.decoder = QueryAnchorAttention(
            code_dim=D, query_dim=2 * C, dim=attention_dim, neighbors=query_neighbors,
            hidden=decoder_hidden, blocks=decoder_blocks,
        )  # fmt: skip

    @property
    def image_size(self) -> int:
        return int(self.encoder.image_size)

    # ------------------------------------------------------------------ frozen stage 1, extra state

    def get_extra_state(self) -> dict[str, Optional[str]]:
        """``{"init_occ_config": YAML text or None}``: saved in the state_dict as ``_extra_state``
        (plain strings, so checkpoints still load with ``torch.load(weights_only=True)``)."""
        return {"init_occ_config": self.init_occ_config}

    def set_extra_state(self, state: Any) -> None:
        """Inverse of :meth:`get_extra_state` (called by ``load_state_dict``)."""
        value = state.get("init_occ_config") if isinstance(state, dict) else state
        if value is not None and not isinstance(value, str):
            raise RuntimeError(f"RefOccNet extra state: expected {{'init_occ_config': str or None}}, got {state!r:.80}")
        self.init_occ_config = value

    def train(self, mode: bool = True) -> "RefOccNet":
        """Set train/eval mode; stage 1 always stays in eval mode."""
        super().train(mode)
        self.init_occ.eval()
        return self

    def trainable_parameters(self):
        """Every parameter except the frozen stage 1's."""
        frozen = {id(p) for p in self.init_occ.parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in frozen]

    # ------------------------------------------------------------------ encode / decode

    def encode(self, batch: dict[str, Any]) -> RefOccFeatures:
        """Stage-1 features, anchors, anchor codes and two-hand contexts.

        Args:
            batch: ``image`` ``(B, 3, H, W)`` in [0, 1], ``K`` ``(B, 3, 3)``, ``keypoints``
                ``(B, 2, 21, 3)`` camera frame, metres; optional ``hand_valid`` ``(B, 2)``.
        """
        kp, image, K = batch["keypoints"], batch["image"], batch["K"]
        if kp.dim() != 4 or kp.shape[1:] != (2, 21, 3):
            raise ValueError(f"expected keypoints of shape (B, 2, 21, 3), got {tuple(kp.shape)}")
        B = kp.shape[0]
        with torch.no_grad():
            s1 = self.init_occ.encode(batch)
            anchors, counts = self.anchor_finder(lambda p: self.init_occ.decode(p, s1), kp)  # (B, 2, M, 3)
        M = anchors.shape[2]
        img = self.encoder(image)
        hw = (int(image.shape[-2]), int(image.shape[-1]))
        use = hand_valid(batch, kp)
        use = use | ~use.any(1, keepdim=True)  # no valid hand: centre on both
        w = use[:, :, None, None]  # (B, 2, 1, 1)
        lo, hi = anchors.masked_fill(~w, math.inf).amin((1, 2)), anchors.masked_fill(~w, -math.inf).amax((1, 2))
        centre = 0.5 * (lo + hi)  # (B, 3)
        pix = sample_pixel_features(img.query_features, anchors.flatten(1, 2), K, hw).view(B, 2, M, -1)  # (B, 2, M, C)
        onehot = torch.eye(2, dtype=pix.dtype, device=pix.device)[None, :, None].expand(B, 2, M, 2)  # left [1, 0]
        pos = (anchors - centre[:, None, None]) / POSITION_UNIT  # (B, 2, M, 3)
        inputs = torch.cat([pix, onehot], -1).flatten(0, 1)  # (2 B, M, C + 2)
        code, pts, feats = self.anchor_encoder(inputs, pos.flatten(0, 1).to(pix.dtype))
        code = code.view(B, 2, -1)  # (B, 2, D)
        g = img.global_feature[:, None].expand(B, 2, -1).to(code.dtype)  # (B, 2, G)
        context = self.context(torch.cat([code, code.flip(1), g], -1))  # (B, 2, D)
        return RefOccFeatures(
            stage1=s1, image=img, K=K, image_hw=hw, anchors=anchors, anchor_counts=counts, centre=centre,
            anchor_points=pts.view(B, 2, *pts.shape[1:]), anchor_features=feats.view(B, 2, *feats.shape[1:]),
            context=context,
        )  # fmt: skip

    def _decode_chunk(self, points: Tensor, f: RefOccFeatures) -> tuple[Tensor, Tensor]:
        B, _, n, _ = points.shape
        with torch.no_grad():
            p1 = self.init_occ.decode(points, f.stage1)  # (B, 2, n) stage-1 probability of hand h
        pix = sample_pixel_features(f.image.query_features, points.flatten(1, 2), f.K, f.image_hw).view(B, 2, n, -1)
        p1_in = p1.to(pix.dtype)[..., None].expand(B, 2, n, pix.shape[-1])  # repeated as the original
        pos = ((points - f.centre[:, None, None]) / POSITION_UNIT).to(pix.dtype)  # (B, 2, n, 3)
        logits = self.decoder(
            pos.flatten(0, 1), torch.cat([pix, p1_in], -1).flatten(0, 1), f.anchor_points.flatten(0, 1),
            f.anchor_features.flatten(0, 1), f.context.flatten(0, 1),
        )  # (2 B, n)  # fmt: skip
        return logits.view(B, 2, n).float(), p1.float()

    def decode_with_init(
        self, points: Float[Tensor, "B 2 N 3"], features: RefOccFeatures
    ) -> tuple[Float[Tensor, "B 2 N"], Float[Tensor, "B 2 N"]]:
        """``(refined logits, stage-1 probabilities)`` of camera-frame query points (see :meth:`decode`)."""
        if points.dim() != 4 or points.shape[1] != 2 or points.shape[-1] != 3:
            raise ValueError(f"expected points of shape (B, 2, N, 3), got {tuple(points.shape)}")
        B, _, N, _ = points.shape
        step = N if torch.is_grad_enabled() else max(1, self.decode_chunk // B)
        parts = [self._decode_chunk(points[:, :, i : i + step], features) for i in range(0, N, step)]
        if len(parts) == 1:
            return parts[0]
        return torch.cat([p[0] for p in parts], 2), torch.cat([p[1] for p in parts], 2)

    def decode(self, points: Float[Tensor, "B 2 N 3"], features: RefOccFeatures) -> Float[Tensor, "B 2 N"]:
        """Refined occupancy probabilities.

        Args:
            points: ``(B, 2, N, 3)`` query points per hand, camera frame, metres (any points:
                hand ``h``'s field is evaluated at the points in slot ``h``).
            features: from :meth:`encode`.

        Returns:
            ``(B, 2, N)`` probabilities (float32).
        """
        return torch.sigmoid(self.decode_with_init(points, features)[0])

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Refined and stage-1 occupancy at ``batch["points"]`` ``(B, 2, N, 3)``.

        Returns ``occupancy``, ``logits``, ``occupancy_init`` ``(B, 2, N)``, ``anchors``
        ``(B, 2, M, 3)``, ``anchor_counts`` ``(B, 2)`` and, when ``penetration_weight > 0``,
        ``occupancy_at_other`` / ``occupancy_init_at_other`` ``(B, 2, N)``: hand ``h``'s refined /
        stage-1 occupancy at the *other* hand's query points.
        """
        f = self.encode(batch)
        pts = batch["points"]
        N = pts.shape[2]
        pen = self.penetration_weight > 0
        query = torch.cat([pts, pts.flip(1)], 2) if pen else pts  # hand h: its own points, then the other's
        logits, p1 = self.decode_with_init(query, f)  # (B, 2, N or 2 N)
        out = {"occupancy": torch.sigmoid(logits[..., :N]), "logits": logits[..., :N], "occupancy_init": p1[..., :N],
               "anchors": f.anchors, "anchor_counts": f.anchor_counts}  # fmt: skip
        if pen:
            out["occupancy_at_other"], out["occupancy_init_at_other"] = torch.sigmoid(logits[..., N:]), p1[..., N:]
        return out

    # ------------------------------------------------------------------ loss / metrics

    def compute_loss(self, batch: dict[str, Any], outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """The occupancy loss per hand (MSE of probabilities, or BCE of the refined logits with
        ``loss="bce"``; mean over valid samples, summed over hands) plus ``penetration_weight`` x
        the penetration sum over samples with both hands valid and points:
        ``left(x_R) right(x_R) + right(x_L) left(x_L)`` at each hand's query points.

        Returns ``loss``, ``mse_left``, ``mse_right``, ``penetration`` (0 without the branch),
        and ``bce_left``, ``bce_right`` with ``loss="bce"``.
        """
        occ = outputs["occupancy"]
        valid = hand_valid(batch, occ)
        data_loss, out = occupancy_loss(occ, outputs["logits"], batch["occupancy"], valid, self.loss)
        pen = occ.new_zeros(())
        if "occupancy_at_other" in outputs:
            other = outputs["occupancy_at_other"]  # (B, 2, N): hand h at the other hand's points
            overlap = other[:, LEFT] * occ[:, RIGHT] + other[:, RIGHT] * occ[:, LEFT]  # (B, N)
            pen = (overlap.sum(-1) * valid.all(1).to(occ.dtype)).sum()
        return {"loss": data_loss + self.penetration_weight * pen, **out, "penetration": pen.detach()}

    @torch.no_grad()
    def metrics(self, batch: dict[str, Any], outputs: dict[str, Tensor]) -> dict[str, float]:
        """Volumetric IoU per hand of the refined field (at ``threshold``) and of stage 1 on the
        same points (at stage 1's threshold, ``iou_init*``), averaged over valid hands (NaN when
        none; a sample with empty prediction and ground truth counts as 1); ``anchor_crossings``:
        the surface points the anchor finder found per valid hand."""
        gt = batch["occupancy"].to(outputs["occupancy"].device) >= 0.5
        valid = hand_valid(batch, gt)
        thr1 = float(self.init_occ.threshold)
        out: dict[str, float] = {}
        preds = {"iou": outputs["occupancy"] >= self.threshold, "iou_init": outputs["occupancy_init"] >= thr1}
        for key, pred in preds.items():
            iou = hand_iou(pred, gt)  # (B, 2)
            for suffix, m, v in (("", valid, iou), ("_left", valid[:, LEFT], iou[:, LEFT]),
                                 ("_right", valid[:, RIGHT], iou[:, RIGHT])):  # fmt: skip
                out[key + suffix] = float(v[m].mean()) if bool(m.any()) else float("nan")
        if "anchor_counts" in outputs:  # threshold crossings found per hand (before sampling)
            counts = outputs["anchor_counts"].float()
            out["anchor_crossings"] = float(counts[valid].mean()) if bool(valid.any()) else float("nan")
        return out

    # ------------------------------------------------------------------ config

    @classmethod
    def from_config(cls, cfg: Any, *, init_occ_config: Optional[str] = None) -> "RefOccNet":
        """Build from an ExperimentConfig: stage 1 from ``model.ref_occ.init_occ`` (see
        :func:`load_stage1`; its config is kept, see ``init_occ_config``), the encoder from
        ``model.encoder`` (with a global code; the stage-1 copy is skipped when
        ``model.encoder.weights`` names a file), the rest from ``model.ref_occ``.

        Given ``init_occ_config`` (a stored stage-1 config, YAML text; :meth:`from_checkpoint`),
        stage 1 is built untrained from it instead, and neither ``model.ref_occ.init_occ`` nor
        ``model.encoder.weights`` is read: the weights are to be loaded from a checkpoint.

        Raises:
            Im2HandsError: ``model.ref_occ.init_occ`` unset, missing or not a stage-1 checkpoint.
        """
        enc, r = cfg.model.encoder, cfg.model.ref_occ
        stored = init_occ_config is not None
        if stored:
            stage1, init_occ_config = build_from_stored_config(
                init_occ_config, source="stage-1 config stored in the stage-2 checkpoint", stage="init_occ"
            )
        elif not r.init_occ:
            raise Im2HandsError(
                "model.ref_occ.init_occ is not set: give the stage-1 run folder or checkpoint, "
                "e.g. model.ref_occ.init_occ=runs/init_occ/<stamp>"
            )
        else:
            stage1, init_occ_config = load_frozen(r.init_occ, source=STAGE1_SOURCE, stage="init_occ")
        encoder = ImageEncoder.from_config(enc, with_global=True, weights=None if stored else enc.weights)
        anchor = dict(bone_samples=r.anchor_bone_samples, rays=r.anchor_rays, ray_length=r.anchor_ray_length,
                      ray_steps=r.anchor_ray_steps, bisections=r.anchor_bisections)  # fmt: skip
        return cls(
            init_occ=stage1, encoder=encoder, num_anchors=r.num_anchors, threshold=r.threshold,
            penetration_weight=r.penetration_weight, loss=r.loss, anchor=anchor, encoder_layers=tuple(r.encoder_layers),
            encoder_neighbors=r.encoder_neighbors, encoder_reduced_dim=r.encoder_reduced_dim,
            encoder_dim=r.encoder_dim, encoder_full_blocks=r.encoder_full_blocks, query_neighbors=r.query_neighbors,
            attention_dim=r.attention_dim, decoder_hidden=r.decoder_hidden, decoder_blocks=r.decoder_blocks,
            init_encoder=r.init_encoder and not stored and enc.weights is None, init_occ_config=init_occ_config,
        )  # fmt: skip

    @classmethod
    def from_checkpoint(cls, cfg: Any, state: Mapping[str, Any]) -> "RefOccNet":
        """The (untrained) model a stage-2 checkpoint holds, stage 1 built from the config stored
        in it (``_extra_state``), so the stage-1 run may be gone; a checkpoint from before that
        config was stored falls back to :meth:`from_config`.

        Args:
            cfg: the stage-2 ExperimentConfig stored in the checkpoint.
            state: the checkpoint's ``model`` state_dict (only ``_extra_state`` is read).
        """
        extra = state.get(_EXTRA_STATE)
        return cls.from_config(cfg, init_occ_config=extra.get("init_occ_config") if isinstance(extra, dict) else None)
