import pytest
import torch

from im2hands.models.encoder import HEATMAP_CHANNELS, MASK_CHANNELS, ImageEncoder, ImageFeatures
from im2hands.utils.errors import Im2HandsError

TINY = dict(width=8, head_channels=8, feature_channels=4, image_size=64)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is faster, and immune to the synchronisation stalls that a
    busy machine inflicts on every parallel region (tests ran 30x slower under load with 2)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("depth, expansion", [(10, 1), (18, 1), (34, 1), (50, 4)])
def test_output_shapes(depth, expansion):
    enc = ImageEncoder(depth=depth, with_global=True, **TINY)
    out = enc(torch.rand(2, 3, 64, 64))
    assert isinstance(out, ImageFeatures)
    for i, (layer, side) in enumerate(zip((out.layer1, out.layer2, out.layer3, out.layer4), (16, 8, 4, 2))):
        assert layer.shape == (2, 8 * 2**i * expansion, side, side)
    assert enc.stage_channels == tuple(8 * 2**i * expansion for i in range(4))
    assert [m.shape[-1] for m in out.heatmap_pyramid] == [2, 4, 8, 16] == [m.shape[-1] for m in out.mask_pyramid]
    assert out.heatmap_features.shape == out.mask_features.shape == (2, 8, 16, 16)
    assert out.heatmaps.shape == (2, HEATMAP_CHANNELS, 16, 16) and HEATMAP_CHANNELS == 42
    assert out.masks.shape == (2, MASK_CHANNELS, 16, 16) and MASK_CHANNELS == 8
    assert out.query_features.shape == (2, 4, 16, 16) and enc.feature_size == 16
    assert out.global_feature.shape == (2, 16)
    assert ImageEncoder(depth=depth, **TINY)(torch.rand(1, 3, 64, 64)).global_feature is None


def test_normalisation_inside_and_not_in_state_dict():
    enc = ImageEncoder(depth=10, **TINY).eval()
    assert {"mean", "std"} <= {n for n, _ in enc.named_buffers()}
    assert not any(k in ("mean", "std") for k in enc.state_dict())
    # an image equal to the ImageNet mean is all zeros after normalisation: the stem sees zeros
    mean_img = enc.mean.expand(1, 3, 64, 64).clone()
    stem_in = []
    enc.stem.register_forward_hook(lambda m, i, o: stem_in.append(i[0]))
    enc(mean_img)
    assert stem_in[0].abs().max() < 1e-6


def test_other_image_sizes_are_resized():
    enc = ImageEncoder(depth=10, **TINY).eval()
    out = enc(torch.rand(1, 3, 96, 96))
    assert out.query_features.shape == (1, 4, 16, 16)
    with pytest.raises(ValueError, match="B, 3, 64, 64"):
        enc(torch.rand(1, 64, 64))


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        ImageEncoder(depth=20, **TINY)
    with pytest.raises(ValueError, match="multiple of 32"):
        ImageEncoder(depth=10, width=8, image_size=100)


def test_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    a = ImageEncoder(depth=18, **TINY)
    with torch.no_grad():  # non-trivial BN statistics too
        a.train()(torch.rand(2, 3, 64, 64))
    path = tmp_path / "enc.pt"
    torch.save(a.state_dict(), path)
    torch.manual_seed(1)
    b = ImageEncoder(depth=18, weights=path, **TINY)
    fresh = ImageEncoder(depth=18, **TINY)
    x = torch.rand(1, 3, 64, 64)
    ya, yb, yf = a.eval()(x), b.eval()(x), fresh.eval()(x)
    assert torch.equal(ya.query_features, yb.query_features) and torch.equal(ya.heatmaps, yb.heatmaps)
    assert not torch.allclose(ya.query_features, yf.query_features)
    torch.save({"model": a.state_dict()}, tmp_path / "nested.pt")  # a checkpoint-style dict works too
    c = ImageEncoder(depth=18, weights=tmp_path / "nested.pt", **TINY).eval()
    assert torch.equal(c(x).masks, ya.masks)


def test_weights_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(Im2HandsError, match="nope.pt"):
        ImageEncoder(depth=10, weights=missing, **TINY)
    path = tmp_path / "r18.pt"
    torch.save(ImageEncoder(depth=18, **TINY).state_dict(), path)
    with pytest.raises(Im2HandsError, match=r"r18\.pt.*unexpected"):
        ImageEncoder(depth=10, weights=path, **TINY)
    wide = tmp_path / "wide.pt"
    torch.save(ImageEncoder(depth=10, width=16, head_channels=8, feature_channels=4, image_size=64).state_dict(), wide)
    with pytest.raises(Im2HandsError, match=r"wide\.pt.*shape mismatch"):
        ImageEncoder(depth=10, weights=wide, **TINY)
