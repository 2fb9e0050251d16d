"""Shape annotations and the dimension glossary used at public signatures.

Dimension letters (used in ``Float[Tensor, "B N 3"]`` annotations and ``# (B, N, 3)`` comments):

====  ==========================================================
B     batch
N     query points
J     21 hand keypoints
K     16 hand-model joints / occupancy parts (palm + 15 phalanges)
V     hand-model vertices
F     faces (triangles)
C     channels
H W   image height and width in pixels
R     grid resolution
2     the hand axis, index ``LEFT = 0``, ``RIGHT = 1``
====  ==========================================================
"""

from jaxtyping import Bool, Float, Int, Shaped
from torch import Tensor

__all__ = ["Bool", "Float", "Int", "Shaped", "Tensor"]
