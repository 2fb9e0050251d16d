"""MediaPipe's hand-landmark network (``hand_landmark_full.tflite``) as a torch module.

Input: upright square hand crops (wrist below, middle finger up, side about 1.6-2x the hand),
``(B, 3, 224, 224)`` float RGB in [0, 1]. Output: :class:`HandLandmarks`. The 21 landmarks are in
the library's ``standard`` order (wrist; thumb CMC, MCP, IP, tip; index MCP, PIP, DIP, tip;
middle; ring; pinky: :data:`im2hands.hands.joint_orders.STANDARD_NAMES`).

Which file output is which was checked against the TFLite interpreter on our renders
(docs/mediapipe.md): ``Identity`` 63 = 21 x (x, y, z) crop pixels, ``Identity_1`` the hand-presence
probability (near 0 on noise), ``Identity_2`` the handedness probability, ``Identity_3`` 63 =
21 x 3 metric "world" coordinates (metres, hand-centred).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jaxtyping import Float
from torch import Tensor, nn

from im2hands.models.mediapipe.fetch import model_path
from im2hands.models.mediapipe.tflite_graph import read_tflite
from im2hands.models.mediapipe.torch_graph import TFLiteModule
from im2hands.utils.errors import Im2HandsError

LANDMARK_FILE = "hand_landmark_full.tflite"
CROP_SIZE = 224
"""Side of the network's square input crop, pixels."""

_OUTPUTS = {"keypoints": "Identity", "presence": "Identity_1", "handedness": "Identity_2", "world": "Identity_3"}


@dataclass
class HandLandmarks:
    """Outputs of :class:`HandLandmarkNet` for a batch of B crops.

    Attributes:
        keypoints_2d: (B, 21, 2) landmark positions in crop pixels (x right, y down, 0..224).
        z: (B, 21) relative depth in the same pixel scale (MediaPipe: smaller is nearer the camera).
        presence: (B,) probability that the crop holds a hand.
        handedness: (B,) the network's handedness probability; above 0.5 reads as a right hand in an
            unmirrored crop (right for 76 of our 100 synthetic test hands, docs/mediapipe.md).
        world: (B, 21, 3) landmarks in metres, hand-centred (the network's metric output).
    """

    keypoints_2d: Float[Tensor, "B 21 2"]
    z: Float[Tensor, "B 21"]
    presence: Float[Tensor, " B"]
    handedness: Float[Tensor, " B"]
    world: Float[Tensor, "B 21 3"]


class HandLandmarkNet(nn.Module):
    """MediaPipe hand landmarks (full model) with fine-tunable float32 weights.

    Args:
        path: the ``.tflite`` file (default: the verified cached copy, see
            :func:`~im2hands.models.mediapipe.fetch.model_path`).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__()
        graph = read_tflite(path if path is not None else model_path(LANDMARK_FILE))
        self.net = TFLiteModule(graph)
        missing = [n for n in _OUTPUTS.values() if n not in self.net.output_names]
        if missing:
            raise Im2HandsError(f"{path or LANDMARK_FILE} lacks the outputs {missing}; is it hand_landmark_full?")
        self._pos = {k: self.net.output_names.index(v) for k, v in _OUTPUTS.items()}

    def forward(self, crops: Float[Tensor, "B 3 224 224"]) -> HandLandmarks:
        """Landmarks of ``crops`` (B, 3, 224, 224), RGB in [0, 1]."""
        if crops.dim() != 4 or tuple(crops.shape[1:]) != (3, CROP_SIZE, CROP_SIZE):
            raise Im2HandsError(f"HandLandmarkNet expects crops of shape (B, 3, 224, 224), got {tuple(crops.shape)}")
        out = self.net(crops)
        b = crops.shape[0]
        kp = out[self._pos["keypoints"]].reshape(b, 21, 3)  # (B, 21, 3): x, y, z
        return HandLandmarks(
            keypoints_2d=kp[..., :2],
            z=kp[..., 2],
            presence=out[self._pos["presence"]].reshape(b),
            handedness=out[self._pos["handedness"]].reshape(b),
            world=out[self._pos["world"]].reshape(b, 21, 3),
        )
