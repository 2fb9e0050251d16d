"""MISE against dense grids: analytic fields (sphere, capsule union) and a hand-model occupancy field."""

import itertools

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from im2hands.config.schema import SynthConfig
from im2hands.data.dataset import HandsDataset
from im2hands.data.synthetic import synthesize
from im2hands.extraction.marching import extract_surface, grid_affine
from im2hands.extraction.mise import MISE, band_cells, dense_grid, mise, straddling_cells, upsample2
from im2hands.extraction.oracle import capsule_occupancy, skeleton_segments
from im2hands.geometry.frames import apply_transform, palm_frame
from im2hands.geometry.inside import winding_number
from im2hands.geometry.rotations import invert_transform


def sphere_field(center=(0.47, 0.52, 0.55), radius=0.3):
    c = np.asarray(center)
    return lambda x: np.clip(0.5 + (radius - np.linalg.norm(x - c, axis=1)) * 20.0, 0.0, 1.0).astype(np.float32)


def vertex_gap(a, b):
    """Largest distance from a vertex of one mesh to the nearest vertex of the other, both ways."""
    return max(cKDTree(b.vertices).query(a.vertices)[0].max(), cKDTree(a.vertices).query(b.vertices)[0].max())


def test_upsample2_is_trilinear():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(4, 5, 3)).astype(np.float32)
    up = upsample2(v)
    assert up.shape == (7, 9, 5)
    for i, j, k in itertools.product(range(7), range(9), range(5)):
        x, y, z = i / 2, j / 2, k / 2
        i0, j0, k0 = int(np.floor(x)), int(np.floor(y)), int(np.floor(z))
        i1, j1, k1 = min(i0 + 1, 3), min(j0 + 1, 4), min(k0 + 1, 2)
        fx, fy, fz = x - i0, y - j0, z - k0
        ref = sum(
            wx * wy * wz * v[a, b, c]
            for a, wx in ((i0, 1 - fx), (i1, fx))
            for b, wy in ((j0, 1 - fy), (j1, fy))
            for c, wz in ((k0, 1 - fz), (k1, fz))
        )
        assert up[i, j, k] == pytest.approx(ref, abs=1e-5)


def test_straddling_cells_matches_naive():
    inside = np.random.default_rng(1).random((5, 6, 4)) > 0.6
    got = straddling_cells(inside)
    for i, j, k in itertools.product(range(4), range(5), range(3)):
        corners = inside[i : i + 2, j : j + 2, k : k + 2]
        assert got[i, j, k] == (corners.any() and not corners.all())


def test_band_cells_matches_brute_force():
    seg = np.array([[[0.2, 0.3, 0.4], [0.7, 0.6, 0.45]], [[0.9, 0.9, 0.9], [1.3, 0.9, 0.9]]])
    got = {tuple(c) for c in band_cells(seg, 0.08, 16)}
    centres = (np.stack(np.meshgrid(*[np.arange(16)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) / 16
    d = np.min([np.linalg.norm(centres - (a + np.clip((centres - a) @ (b - a) / ((b - a) @ (b - a)), 0, 1)[:, None] * (b - a)), axis=1)
                for a, b in seg], axis=0)  # fmt: skip
    want = {tuple(c) for c in np.argwhere((d <= 0.08).reshape(16, 16, 16))}
    assert got == want and len(got) > 50


def test_sphere_mise_equals_dense():
    f = sphere_field()
    res = mise(f, resolution0=16, upsampling_steps=3, threshold=0.5)
    dense = dense_grid(f, 128)
    assert res.values.shape == dense.shape == (129, 129, 129)
    assert res.points_evaluated < 0.2 * res.dense_points
    assert sum(res.points_per_level) == res.points_evaluated and res.points_per_level[0] == 17**3
    m_mise, m_dense = extract_surface(res.values, 0.5, grid_affine(128)), extract_surface(dense, 0.5, grid_affine(128))
    assert vertex_gap(m_mise, m_dense) <= 0.5 / 128
    # surface tracking makes every cell the surface crosses fully evaluated: the very same mesh
    assert np.array_equal(m_mise.faces, m_dense.faces)
    np.testing.assert_allclose(m_mise.vertices, m_dense.vertices, atol=1e-9)


def test_capsule_union_and_band_seed():
    """A thin capsule away from the rest slips through the 8-cell level; the band finds it."""
    thick = np.array([[[0.25, 0.3, 0.3], [0.7, 0.35, 0.3]], [[0.7, 0.35, 0.3], [0.7, 0.7, 0.35]]])
    thin = np.array([[[0.2, 0.8, 0.81], [0.55, 0.82, 0.81]]])  # radius 0.02, between 0.125-spaced grid points
    segs = np.concatenate([thick, thin])
    radii = np.array([0.1, 0.1, 0.02])

    def f(x):
        return capsule_occupancy(x, segs, radii, softness=0.004)

    dense = dense_grid(f, 64)
    m_dense = extract_surface(dense, 0.5, grid_affine(64), keep_largest=False)
    assert m_dense.components == 2
    plain = mise(f, 8, 3, 0.5, flood=False)
    assert extract_surface(plain.values, 0.5, keep_largest=False).components == 1  # the original misses it
    seeded = mise(f, 8, 3, 0.5, seed_segments=segs, seed_radius=0.03)
    m_seeded = extract_surface(seeded.values, 0.5, grid_affine(64), keep_largest=False)
    assert m_seeded.components == 2
    assert vertex_gap(m_seeded, m_dense) <= 0.5 / 64
    assert seeded.points_evaluated < 0.25 * seeded.dense_points


def test_lockstep_api_and_errors():
    f = sphere_field(radius=0.2)
    m = MISE(8, 2, 0.5)
    with pytest.raises(RuntimeError):
        m.update(np.zeros(3))
    with pytest.raises(RuntimeError):
        m.result()
    levels = []
    while not m.done:
        x = m.query()
        if len(x) == 0:
            m.advance()
            continue
        with pytest.raises(ValueError):
            m.update(np.zeros(len(x) + 1))
        m.update(f(x), advance=False)
        levels.append(m.level)
    assert levels == sorted(levels) and m.result().resolution == 32
    np.testing.assert_array_equal(m.result().values, mise(f, 8, 2, 0.5).values)


@pytest.fixture(scope="module")
def hand_field(tmp_path_factory):
    """Winding-number occupancy of one synthetic hand, as a field on the unit cube of its palm box."""
    root = tmp_path_factory.mktemp("mise_synth")
    synthesize(root, 1, seed=3, workers=1, settings=SynthConfig(image_size=96), progress=False)
    item = HandsDataset(root, "all", fields=("mesh",))[0]
    kp = item["keypoints"].double()
    cam_to_palm = palm_frame(kp, torch.tensor([True, False]))
    h = 0  # the left hand: its palm frame is mirrored, the harder case
    A = grid_affine(1, invert_transform(cam_to_palm)[h].numpy(), 0.44)
    v, f = item["vertices"][h].double().numpy(), item["faces"][h].numpy()

    def field(x):
        return (np.abs(winding_number(v, f, x @ A[:3, :3].T + A[:3, 3])) >= 0.5).astype(np.float32)

    bones = skeleton_segments(apply_transform(cam_to_palm, kp)[h].numpy() / 0.44 + 0.5)
    return field, bones


def chamfer(a, b):
    """Symmetric mean nearest-vertex distance."""
    return 0.5 * (cKDTree(b.vertices).query(a.vertices)[0].mean() + cKDTree(a.vertices).query(b.vertices)[0].mean())


def test_hand_occupancy_mise_equals_dense(hand_field):
    """From a 16-cell start (27.5 mm cells) to 128 cells: the tracked, seeded MISE gives the dense
    grid's mesh exactly; the original algorithm loses a bit of surface but stays close on average."""
    field, bones = hand_field
    dense = dense_grid(field, 128)
    m_dense = extract_surface(dense, 0.5, grid_affine(128))
    res = mise(field, 16, 3, 0.5, seed_segments=bones, seed_radius=0.02 / 0.44)
    assert res.query_fraction < 1 / 20
    m_mise = extract_surface(res.values, 0.5, grid_affine(128))
    assert vertex_gap(m_mise, m_dense) <= 0.5 / 128
    assert np.array_equal(m_mise.faces, m_dense.faces)
    plain = mise(field, 16, 3, 0.5, flood=False)
    assert chamfer(extract_surface(plain.values, 0.5, grid_affine(128)), m_dense) <= 0.5 / 128
    # band start: level 0 only within 5 cm of the bones; tracking recovers the rest exactly
    banded = mise(field, 32, 2, 0.5, seed_segments=bones, seed_radius=0.02 / 0.44, start_radius=0.05 / 0.44)
    assert banded.points_per_level[0] < 0.1 * 33**3
    assert np.array_equal(extract_surface(banded.values, 0.5, grid_affine(128)).faces, m_dense.faces)


def test_band_start_follows_the_surface_out_of_the_band():
    """A capsule reaching far past a short seed segment is still traced completely."""
    segs = np.array([[[0.2, 0.5, 0.5], [0.8, 0.5, 0.52]]])

    def f(x):
        return capsule_occupancy(x, segs, 0.08, softness=0.004)

    dense = extract_surface(dense_grid(f, 64), 0.5, grid_affine(64))
    seed = np.array([[[0.45, 0.5, 0.5], [0.5, 0.5, 0.5]]])  # covers a small part of the capsule
    res = mise(f, 16, 2, 0.5, seed_segments=seed, seed_radius=0.0, start_radius=0.1)
    got = extract_surface(res.values, 0.5, grid_affine(64))
    assert np.array_equal(got.faces, dense.faces)
    with pytest.raises(ValueError, match="seed_segments"):
        MISE(8, 1, 0.5, start_radius=0.1)


def test_band_start_inside_everywhere_stays_cheap():
    seg = np.array([[[0.4, 0.5, 0.5], [0.6, 0.5, 0.5]]])
    res = mise(lambda x: np.ones(len(x), np.float32), 16, 3, 0.5, seed_segments=seg, start_radius=0.1)
    assert res.points_evaluated == 17**3  # level 0 grows to the whole grid, then nothing is crossed
    assert (res.values >= 0.5).all()
