"""Networks: image encoder, stage 1 (canonical occupancy), stage 2 (two-hand refinement),
stage 3 (keypoint refinement), all behind :class:`im2hands.models.base.HandsModel`."""
