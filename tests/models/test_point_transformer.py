import itertools

import pytest
import torch

from im2hands.models import point_transformer as pt
from im2hands.models.point_transformer import (
    PointTransformerEncoder,
    QueryAnchorAttention,
    VectorAttentionBlock,
    farthest_point_sample,
    gather_neighbors,
    knn,
)


@pytest.fixture(autouse=True)
def _one_thread(_seed_everything):
    """These models are tiny: one thread avoids OpenMP synchronisation stalls on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _min_pairwise(p: torch.Tensor) -> float:
    d = torch.cdist(p, p)
    return float(d[~torch.eye(len(p), dtype=torch.bool)].min())


# --- KNN / gather ------------------------------------------------------------------------


@pytest.mark.parametrize("block", [None, 64])  # 64: forces many query chunks
def test_knn_matches_brute_force(monkeypatch, block):
    if block is not None:
        monkeypatch.setattr(pt, "_KNN_BLOCK", block)
    g = torch.Generator().manual_seed(1)
    q, r = torch.randn(2, 37, 3, generator=g), torch.randn(2, 23, 3, generator=g)
    idx = knn(q, r, 5)
    assert idx.shape == (2, 37, 5)
    for b, m in itertools.product(range(2), range(37)):
        dist = ((r[b] - q[b, m]) ** 2).sum(-1).tolist()
        expected = sorted(range(23), key=lambda j: dist[j])[:5]  # naive reference, nearest first
        assert idx[b, m].tolist() == expected
    assert knn(q, r, 50).shape == (2, 37, 23)  # k clamped to N


def test_gather_neighbors_matches_loop_and_is_differentiable():
    x = torch.randn(2, 6, 4, requires_grad=True)
    idx = torch.randint(0, 6, (2, 3, 2))
    out = gather_neighbors(x, idx)
    for b, m, j in itertools.product(range(2), range(3), range(2)):
        assert torch.equal(out[b, m, j], x[b, idx[b, m, j]])
    out.sum().backward()
    counts = torch.stack([torch.bincount(idx[b].flatten(), minlength=6) for b in range(2)]).float()
    assert torch.equal(x.grad, counts[..., None].expand(2, 6, 4))


# --- farthest point sampling --------------------------------------------------------------


def test_fps_picks_input_points_deterministic_and_spread():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(1, 600, 3, generator=g)
    idx = farthest_point_sample(p, 32)
    assert idx.shape == (1, 32) and idx.dtype == torch.long
    assert len(set(idx[0].tolist())) == 32 and 0 <= idx.min() and idx.max() < 600
    assert torch.equal(idx, farthest_point_sample(p, 32))
    spread = _min_pairwise(p[0, idx[0]])
    random_spreads = [_min_pairwise(p[0, torch.randperm(600, generator=g)[:32]]) for _ in range(20)]
    assert spread > max(random_spreads)


def test_fps_mask_and_cyclic_padding():
    p = torch.randn(2, 50, 3)
    mask = torch.zeros(2, 50, dtype=torch.bool)
    mask[0, [3, 7, 11, 20, 40]] = True
    mask[1, :30] = True
    idx = farthest_point_sample(p, 12, mask)
    first = idx[0].tolist()
    assert set(first[:5]) == {3, 7, 11, 20, 40}  # all valid points, each once ...
    assert first[5:] == (first[:5] * 3)[:7]  # ... then repeated cyclically
    assert bool(mask[1, idx[1]].all()) and len(set(idx[1].tolist())) == 12


# --- attention blocks ---------------------------------------------------------------------


def test_vector_attention_shapes_gradients_and_full_equals_knn():
    torch.manual_seed(0)
    f, x = torch.randn(2, 20, 8), torch.randn(2, 20, 3)
    block = VectorAttentionBlock(8, neighbors=4)
    out = block(f, x)
    assert out.shape == (2, 20, 8)
    out.square().sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    full = VectorAttentionBlock(8, neighbors=None)
    full.load_state_dict(block.state_dict())
    gathered = full(f, x, idx=knn(x, x, 20))  # all neighbours by gathering
    torch.testing.assert_close(full(f, x), gathered, rtol=1e-5, atol=1e-5)  # broadcast path


def test_vector_attention_gradcheck_float64():
    torch.manual_seed(0)
    block = VectorAttentionBlock(4, neighbors=3).double()
    f = torch.randn(1, 6, 4, dtype=torch.float64, requires_grad=True)
    x = torch.randn(1, 6, 3, dtype=torch.float64, requires_grad=True)
    idx = knn(x, x, 3)
    assert torch.autograd.gradcheck(lambda f, x: block(f, x, idx), (f, x))


def test_encoder_shapes_subset_and_permutation_invariance():
    torch.manual_seed(0)
    enc = PointTransformerEncoder(in_dim=5, layers=(16, 8), reduced_dim=8, dim=12, neighbors=4, full_blocks=1)
    f, x = torch.randn(2, 32, 5), torch.randn(2, 32, 3)
    code, pts, feats = enc(f, x)
    assert code.shape == (2, 12) and pts.shape == (2, 8, 3) and feats.shape == (2, 8, 12)
    assert bool((((pts[:, :, None] - x[:, None]) ** 2).sum(-1).min(-1).values < 1e-12).all())  # input points
    perm = torch.randperm(32)
    code_p, _, _ = enc(f[:, perm], x[:, perm])
    torch.testing.assert_close(code, code_p, rtol=1e-4, atol=1e-5)
    code.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())
    with pytest.raises(ValueError, match="decreasing"):
        PointTransformerEncoder(in_dim=5, layers=(8, 16))


def test_query_anchor_attention_is_local():
    torch.manual_seed(0)
    dec = QueryAnchorAttention(code_dim=6, query_dim=4, dim=8, neighbors=3, hidden=8, blocks=2)
    anchors = torch.randn(1, 10, 3)
    feats, code = torch.randn(1, 10, 6), torch.randn(1, 6)
    x = anchors[:, :1] + 0.01  # a query next to anchor 0
    q = torch.randn(1, 1, 4)
    out = dec(x, q, anchors, feats, code)
    assert out.shape == (1, 1)
    far = torch.cdist(x, anchors)[0, 0].argmax()  # not among its 3 nearest anchors
    changed = feats.clone()
    changed[0, far] += 5.0
    torch.testing.assert_close(dec(x, q, anchors, changed, code), out)
    near = feats.clone()
    near[0, 0] += 5.0
    assert not torch.allclose(dec(x, q, anchors, near, code), out)


def test_blocked_attention_matches_one_pass(monkeypatch):
    torch.manual_seed(0)
    f, x = torch.randn(2, 24, 8, requires_grad=True), torch.randn(2, 24, 3)
    local, full = VectorAttentionBlock(8, neighbors=5), VectorAttentionBlock(8, neighbors=None)
    dec = QueryAnchorAttention(code_dim=8, query_dim=4, dim=8, neighbors=3, hidden=8, blocks=1)
    xq, fq, code = torch.randn(2, 30, 3), torch.randn(2, 30, 4), torch.randn(2, 8)

    def run():
        outs = [local(f, x), full(f, x), dec(xq, fq, x, f, code)]
        grad = torch.autograd.grad(sum(o.square().sum() for o in outs), f)[0]
        return outs, grad

    one_outs, one_grad = run()
    monkeypatch.setattr(pt, "_CPU_BLOCK", 100)  # a few query rows per block
    dec.cpu_block = 100
    outs, grad = run()
    for a, b in zip(outs, one_outs):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(grad, one_grad)
