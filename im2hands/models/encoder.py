"""The image encoder: a ResNet backbone written here (no torchvision) plus two upsampling heads.

Layout follows IntagHand's ``ResNetSimple`` (reference section 2.1), with selectable depth and
width so that CPU-sized variants exist:

- input ``(B, 3, S, S)`` RGB in ``[0, 1]``, ImageNet-normalised inside the module;
- stem (7x7 conv stride 2, BN, ReLU, 3x3 max-pool stride 2), then ``layer1..layer4`` at
  ``S/4, S/8, S/16, S/32`` (64, 32, 16, 8 for ``S = 256``) with ``width * (1, 2, 4, 8)``
  channels (times 4 for the bottleneck ResNet-50); no classifier;
- two "simple baseline" heads on layer4: a 1x1 conv (BN, ReLU) at ``S/32``, then three steps of
  bilinear x2 upsampling + 3x3 conv + BN + ReLU up to ``S/4``, then a 1x1 output conv. The
  heatmap head outputs 42 channels (21 keypoints per hand, left first); the mask head 8
  (2 amodal hand masks as logits, left first, then 6 part channels);
- ``query_features``: a 1x1 conv over both heads' last feature maps (what stage 1 attends to);
- optionally a global vector (stage 2): a conv with kernel ``S/32`` over each head's first
  (``S/32``) map, the two outputs concatenated.

Initialisation: He-normal (fan-out) convolutions, BN weight 1 and bias 0, conv biases 0 (the
usual ResNet scheme); pretrained weights come only from a user-supplied file (``weights``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from im2hands.loading import load_state_file
from im2hands.typing import Float, Tensor
from im2hands.utils.errors import Im2HandsError

__all__ = ["DEPTHS", "IMAGENET_MEAN", "IMAGENET_STD", "ImageFeatures", "ImageEncoder", "load_state_file"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""Per-channel mean of ImageNet RGB images in [0, 1]."""
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""Per-channel standard deviation of ImageNet RGB images in [0, 1]."""

HEATMAP_CHANNELS = 42
"""Heatmap head outputs: 21 keypoints (``standard`` order) for the left, then the right hand."""
MASK_CHANNELS = 8
"""Mask head outputs: left and right amodal mask logits, then 6 part channels."""


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual (ResNet-10/18/34)."""

    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride: int) -> None:
        super().__init__()
        out = ch * self.expansion
        self.conv1 = nn.Conv2d(in_ch, ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.shortcut = _shortcut(in_ch, out, stride)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x), inplace=True)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand x4, with a residual (ResNet-50)."""

    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride: int) -> None:
        super().__init__()
        out = ch * self.expansion
        self.conv1 = nn.Conv2d(in_ch, ch, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.conv3 = nn.Conv2d(ch, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.shortcut = _shortcut(in_ch, out, stride)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = F.relu(self.bn2(self.conv2(y)), inplace=True)
        y = self.bn3(self.conv3(y))
        return F.relu(y + self.shortcut(x), inplace=True)


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


DEPTHS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    10: (BasicBlock, (1, 1, 1, 1)),
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}
"""Supported depths: block type and blocks per stage."""


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)
    )


class UpsampleHead(nn.Module):
    """IntagHand-style "simple baseline" head: 1x1 conv at S/32, ``steps`` x (bilinear x2, 3x3
    conv, BN, ReLU), then a 1x1 output conv.

    With ``skip_channels`` (the backbone's channels at S/16, S/8, S/4, coarse to fine), each
    upsampled map first gets a 1x1 projection of the backbone map of its size added (a feature
    pyramid's lateral connections), which carries the fine detail that S/32 lacks.
    """

    def __init__(self, in_ch: int, ch: int, out_ch: int, steps: int = 3,
                 skip_channels: Sequence[int] | None = None) -> None:
        super().__init__()
        self.flat = _conv_bn_relu(in_ch, ch, 1)
        self.up = nn.ModuleList([_conv_bn_relu(ch, ch, 3) for _ in range(steps)])
        if skip_channels is not None and len(skip_channels) != steps:
            raise ValueError(f"skip_channels needs one entry per step ({steps}), got {list(skip_channels)}")
        self.lateral = None if skip_channels is None else nn.ModuleList([nn.Conv2d(c, ch, 1) for c in skip_channels])
        self.out = nn.Conv2d(ch, out_ch, 1)

    def forward(self, x: Tensor, skips: Sequence[Tensor] = ()) -> tuple[tuple[Tensor, ...], Tensor]:
        """``x`` at S/32; ``skips``: the backbone maps at S/16, S/8, S/4 (used with lateral convs)."""
        maps = [self.flat(x)]
        for i, conv in enumerate(self.up):
            up = F.interpolate(maps[-1], scale_factor=2.0, mode="bilinear", align_corners=False)
            if self.lateral is not None:
                up = up + self.lateral[i](skips[i])
            maps.append(conv(up))
        return tuple(maps), self.out(maps[-1])


@dataclass
class ImageFeatures:
    """Everything the encoder computes for a batch of ``B`` images of side ``S``.

    Attributes:
        layer1..layer4: backbone stage maps ``(B, C_i, S/4 .. S/32, ...)``.
        heatmap_pyramid: the heatmap head's feature maps, coarse to fine (``S/32 .. S/4``).
        mask_pyramid: the mask head's feature maps, coarse to fine.
        heatmaps: ``(B, 42, S/4, S/4)`` keypoint heatmaps (left 21, then right 21).
        masks: ``(B, 8, S/4, S/4)`` logits: left mask, right mask, 6 part channels.
        query_features: ``(B, C, S/4, S/4)``, 1x1 conv over both heads' last maps.
        global_feature: ``(B, 2 * head_channels)`` or None when the encoder has no global conv.
    """

    layer1: Float[Tensor, "B C H W"]
    layer2: Float[Tensor, "B C H W"]
    layer3: Float[Tensor, "B C H W"]
    layer4: Float[Tensor, "B C H W"]
    heatmap_pyramid: tuple[Tensor, ...]
    mask_pyramid: tuple[Tensor, ...]
    heatmaps: Float[Tensor, "B 42 H W"]
    masks: Float[Tensor, "B 8 H W"]
    query_features: Float[Tensor, "B C H W"]
    global_feature: Optional[Float[Tensor, "B C"]] = None

    @property
    def heatmap_features(self) -> Float[Tensor, "B C H W"]:
        """The heatmap head's last feature map ``(B, head_channels, S/4, S/4)``."""
        return self.heatmap_pyramid[-1]

    @property
    def mask_features(self) -> Float[Tensor, "B C H W"]:
        """The mask head's last feature map ``(B, head_channels, S/4, S/4)``."""
        return self.mask_pyramid[-1]


class ImageEncoder(nn.Module):
    """ResNet backbone + heatmap and mask heads + query feature map (see the module docstring).

    Args:
        depth: 10, 18, 34 (basic blocks) or 50 (bottlenecks).
        width: channels of the stem and layer1 (64 for standard ResNets).
        head_channels: channels of both heads' feature maps.
        feature_channels: channels ``C`` of ``query_features``.
        image_size: input side ``S`` in pixels, a multiple of 32.
        with_global: also compute ``global_feature`` (stage 2).
        skips: lateral connections from the backbone into both heads (:class:`UpsampleHead`).
        weights: optional file to load (strict) after initialisation.
    """

    _UNSET = object()

    @classmethod
    def from_config(cls, enc: Any, *, with_global: bool = False, weights: Any = _UNSET) -> "ImageEncoder":
        """The one place an encoder is built from a config: the ``model.encoder`` section
        (:class:`~im2hands.config.schema.EncoderConfig`: ``depth``, ``width``, ``head_channels``,
        ``feature_channels``, ``image_size``, ``skips``, ``weights``).

        Args:
            enc: the ``model.encoder`` section.
            with_global: also compute the global code (stage 2).
            weights: a file to load instead of ``enc.weights`` (None: none, for a model whose
                weights come from a checkpoint).
        """
        return cls(
            depth=enc.depth, width=enc.width, head_channels=enc.head_channels, feature_channels=enc.feature_channels,
            image_size=enc.image_size, with_global=with_global, skips=enc.skips,
            weights=enc.weights if weights is cls._UNSET else weights,
        )  # fmt: skip

    def __init__(
        self,
        *,
        depth: int = 18,
        width: int = 64,
        head_channels: int = 128,
        feature_channels: int = 32,
        image_size: int = 256,
        with_global: bool = False,
        skips: bool = False,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth}")
        if image_size % 32 != 0 or image_size <= 0:
            raise ValueError(f"image_size must be a positive multiple of 32, got {image_size}")
        self.depth, self.width, self.image_size = depth, width, image_size
        self.head_channels, self.feature_channels = head_channels, feature_channels
        self.feature_size = image_size // 4
        """Side of the heads' last maps and of ``query_features`` (64 for 256-pixel images)."""
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        block, counts = DEPTHS[depth]
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )  # fmt: skip
        in_ch, stages = width, []
        for i, n in enumerate(counts):
            ch, blocks = width * 2**i, []
            for j in range(n):
                blocks.append(block(in_ch, ch, 2 if (i > 0 and j == 0) else 1))
                in_ch = ch * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.stage_channels = tuple(width * 2**i * block.expansion for i in range(4))

        self.skips = skips
        lateral = tuple(reversed(self.stage_channels[:3])) if skips else None
        self.heatmap_head = UpsampleHead(in_ch, head_channels, HEATMAP_CHANNELS, skip_channels=lateral)
        self.mask_head = UpsampleHead(in_ch, head_channels, MASK_CHANNELS, skip_channels=lateral)
        self.query_conv = nn.Conv2d(2 * head_channels, feature_channels, 1)
        self.global_conv = nn.Conv2d(head_channels, head_channels, image_size // 32) if with_global else None
        self.reset_parameters()
        if weights is not None:
            self.load_weights(weights)

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def load_weights(self, path: str | Path) -> None:
        """Load a state dict file (strict: every key, every shape).

        Raises:
            Im2HandsError: missing file, unreadable file, or keys/shapes that do not match,
                naming the file and the first offending keys.
        """
        state = load_state_file(path)
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = [
            f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
            for k, v in own.items()
            if k in state and state[k].shape != v.shape
        ]
        if missing or unexpected or wrong:
            found = (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong))
            parts = [f"{name}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}" for name, keys in found if keys]
            raise Im2HandsError(
                f"{path}: weights do not match ImageEncoder(depth={self.depth}, width={self.width}, "
                f"head_channels={self.head_channels}, feature_channels={self.feature_channels}); " + "; ".join(parts)
            )
        self.load_state_dict(state)

    def forward(self, image: Float[Tensor, "B 3 S S"]) -> ImageFeatures:
        """Encode RGB images.

        Args:
            image: ``(B, 3, S, S)`` RGB in ``[0, 1]`` with ``S = image_size`` (other sizes are
                resized to it, bilinear with antialiasing).

        Returns:
            :class:`ImageFeatures` (maps at ``S/4`` are ``feature_size`` wide).
        """
        if image.dim() != 4 or image.shape[1] != 3:
            S = self.image_size
            raise ValueError(f"expected images of shape (B, 3, {S}, {S}), got {tuple(image.shape)}")
        if image.shape[-2:] != (self.image_size, self.image_size):  # other sizes: resized (bilinear)
            size = (self.image_size, self.image_size)
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
        x = (image - self.mean.to(image.dtype)) / self.std.to(image.dtype)
        c1 = self.layer1(self.stem(x))  # (B, C1, S/4, S/4)
        c2 = self.layer2(c1)  # (B, C2, S/8, S/8)
        c3 = self.layer3(c2)  # (B, C3, S/16, S/16)
        c4 = self.layer4(c3)  # (B, C4, S/32, S/32)
        fine = (c3, c2, c1) if self.skips else ()
        hm_maps, heatmaps = self.heatmap_head(c4, fine)
        mk_maps, masks = self.mask_head(c4, fine)
        query = self.query_conv(torch.cat([hm_maps[-1], mk_maps[-1]], 1))  # (B, C, S/4, S/4)
        glob = None
        if self.global_conv is not None:
            glob = torch.cat([self.global_conv(m[0]).flatten(1) for m in (hm_maps, mk_maps)], 1)  # (B, 2 Ch)
        return ImageFeatures(
            layer1=c1, layer2=c2, layer3=c3, layer4=c4, heatmap_pyramid=hm_maps, mask_pyramid=mk_maps,
            heatmaps=heatmaps, masks=masks, query_features=query, global_feature=glob,
        )  # fmt: skip
