"""MediaPipe's hand networks (Apache-2.0) as torch modules with trainable float32 weights.

- :mod:`.fetch`: take the ``.tflite`` files out of the ``mediapipe==0.10.21`` wheel into a cache,
  verified by SHA-256 (``im2hands weights fetch-mediapipe``; never committed).
- :mod:`.tflite_graph`: read a ``.tflite`` flatbuffer into plain tensors and ops.
- :mod:`.torch_graph`: run such a graph as an ``nn.Module`` (NCHW inside, TF padding rules).
- :mod:`.hand_landmark`: :class:`HandLandmarkNet`, 21 keypoints from an upright 224-px hand crop.
- :mod:`.palm`: :class:`PalmDetector`, palms from a 192-px image, SSD decoding and NMS.
Crops for them: :func:`im2hands.geometry.crops.upright_roi` and :func:`~im2hands.geometry.crops.crop_images`;
the pipeline that uses them: :mod:`im2hands.extraction.hand_crops`.

See docs/mediapipe.md.
"""

from im2hands.models.mediapipe.hand_landmark import HandLandmarkNet, HandLandmarks
from im2hands.models.mediapipe.palm import PalmDetections, PalmDetector

__all__ = ["HandLandmarkNet", "HandLandmarks", "PalmDetector", "PalmDetections"]
