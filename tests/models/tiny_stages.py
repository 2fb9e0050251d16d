"""Tiny models of every stage built from keyword arguments (no YAML) and a fixed synthetic batch,
shared by the loss regression (test_loss_regression.py) and the per-family shape tests
(test_model_shapes.py). Named apart from tests/engine/tiny_models.py: the test folders share
one import namespace."""

import pytest
import torch

from im2hands.geometry.frames import project
from im2hands.hands.constants import LEFT, RIGHT
from im2hands.models.encoder import ImageEncoder
from im2hands.models.init_occ import InitOccNet
from im2hands.models.kpts_est import KptsEstModel
from im2hands.models.kpts_ref import KeypointRefiner, KptsRefModel
from im2hands.models.ref_occ import RefOccNet

S = 64  # image side


@pytest.fixture(autouse=True)
def one_thread():
    """Import into a test module to run its tests on one thread (the numbers do not depend on
    the machine's thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_encoder(with_global: bool = False) -> ImageEncoder:
    return ImageEncoder(depth=10, width=8, head_channels=8, feature_channels=8, image_size=S, with_global=with_global)


def tiny_batch(B: int = 2, N: int = 48, seed: int = 0) -> dict:
    """Hand-sized keypoint sets 0.5 m in front of the camera, query points around each hand with
    sphere occupancy, 2D keypoints, masks and the image."""
    g = torch.Generator().manual_seed(seed)
    kp = 0.02 * torch.randn(B, 2, 21, 3, generator=g)
    kp[:, LEFT, :, 0] -= 0.05
    kp[:, RIGHT, :, 0] += 0.05
    kp[..., 2] += 0.5
    centre = kp.mean(2, keepdim=True)
    pts = centre + 0.03 * torch.randn(B, 2, N, 3, generator=g)
    K = torch.tensor([[110.0, 0.0, S / 2], [0.0, 110.0, S / 2], [0.0, 0.0, 1.0]]).expand(B, 3, 3).clone()
    return {
        "image": torch.rand(B, 3, S, S, generator=g), "K": K, "keypoints": kp, "points": pts,
        "occupancy": ((pts - centre).norm(dim=-1) < 0.03).float(), "hand_valid": torch.ones(B, 2, dtype=torch.bool),
        "keypoints_2d": project(kp.view(B, 42, 3), K).view(B, 2, 21, 2),
        "masks_amodal": torch.rand(B, 2, S, S, generator=g) > 0.7, "masks_visible": torch.rand(B, 2, S, S, generator=g) > 0.8,
        "keypoints_noisy": kp + 0.005 * torch.randn(B, 2, 21, 3, generator=g), "index": torch.arange(B),
    }  # fmt: skip


def tiny_init_occ() -> InitOccNet:
    torch.manual_seed(1)
    return InitOccNet(encoder=tiny_encoder(), hidden=16, point_dim=4, patch_grid=2, heads=2, dropout=0.0, aux_weight=0.1)


def tiny_ref_occ() -> RefOccNet:
    stage1 = tiny_init_occ().eval()
    torch.manual_seed(2)
    anchor = dict(bone_samples=1, rays=4, ray_length=0.03, ray_steps=3, bisections=2)
    return RefOccNet(init_occ=stage1, encoder=tiny_encoder(with_global=True), num_anchors=32, anchor=anchor,
                     encoder_layers=(16, 8), encoder_neighbors=4, encoder_reduced_dim=8, encoder_dim=16,
                     encoder_full_blocks=1, query_neighbors=4, attention_dim=16, decoder_hidden=8,
                     decoder_blocks=1)  # fmt: skip


def tiny_kpts_est() -> KptsEstModel:
    torch.manual_seed(3)
    return KptsEstModel(encoder=tiny_encoder(), feature_dim=8, dim=16, iterations=2, heads=2, dropout=0.0)


def tiny_kpts_ref() -> KptsRefModel:
    torch.manual_seed(4)
    refiner = KeypointRefiner(feature_channels=8, feature_size=S // 4, dim=16, layers=1, patch_grid=2, heads=2,
                              dropout=0.0)  # fmt: skip
    for head in refiner.heads:  # the heads start at zero (identity refinement): make the loss depend on them
        torch.nn.init.normal_(head[-1].weight, std=0.1)
    return KptsRefModel(encoder=tiny_encoder(), refiner=refiner, abs_weight=0.1)


STAGES = {"init_occ": tiny_init_occ, "ref_occ": tiny_ref_occ, "kpts_est": tiny_kpts_est, "kpts_ref": tiny_kpts_ref}
