"""Tests for im2hands.hands.joint_orders: permutations between the 21-keypoint orders.

Hand-checked values come from the module docstring and from the orders the field uses
(``shared/reference/im2hands.md`` §3.4: IntagHand's InterHand->standard list, HALO's
standard->MANO and MANO->biomech lists).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from im2hands.hands.joint_orders import (
    FINGERTIPS_STANDARD,
    MANO_JOINT_TO_STANDARD,
    ORDERS,
    STANDARD_NAMES,
    STANDARD_PARENTS,
    compose,
    convert,
    permutation,
)

IDENTITY = tuple(range(21))
PAIRS = list(itertools.permutations(ORDERS, 2))

# The lists published with the methods (x_dst = x_src[list]).
STANDARD_TO_MANO = (0, 5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3, 4, 8, 12, 16, 20)
MANO_TO_STANDARD = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)
INTERHAND_TO_STANDARD = (20, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 19, 18, 17, 16)
MANO_TO_BIOMECH = (0, 13, 1, 4, 10, 7, 14, 2, 5, 11, 8, 15, 3, 6, 12, 9, 16, 17, 18, 19, 20)
BIOMECH_TO_MANO = (0, 2, 7, 12, 3, 8, 13, 5, 10, 15, 4, 9, 14, 1, 6, 11, 16, 17, 18, 19, 20)


def _names(order: str) -> list[str]:
    """Keypoint names held at each position of ``order``."""
    return [STANDARD_NAMES[i] for i in permutation("standard", order)]


def test_the_four_orders_are_defined():
    assert set(ORDERS) == {"standard", "interhand", "mano", "biomech"}
    for order in ORDERS:
        assert permutation(order, order) == IDENTITY


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_each_permutation_is_a_bijection(src, dst):
    perm = permutation(src, dst)
    assert len(perm) == 21 and sorted(perm) == list(range(21))


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_round_trip_is_the_identity(a, b):
    assert compose([permutation(a, b), permutation(b, a)]) == IDENTITY
    x = torch.randn(2, 3, 21, 3, dtype=torch.float64)
    assert torch.equal(convert(convert(x, a, b), b, a), x)
    y = np.random.default_rng(0).normal(size=(4, 21, 2))
    np.testing.assert_array_equal(convert(convert(y, a, b), b, a), y)


@pytest.mark.parametrize(("a", "b", "c"), list(itertools.permutations(ORDERS, 3)))
def test_going_through_a_third_order_is_the_direct_permutation(a, b, c):
    assert compose([permutation(a, b), permutation(b, c)]) == permutation(a, c)


def test_convert_moves_named_keypoints():
    # Each keypoint carries its own standard index as its value: after conversion a position
    # holds the keypoint that the order's definition puts there.
    x = torch.arange(21, dtype=torch.float64)[:, None].expand(21, 3)
    for order in ORDERS:
        got = convert(x, "standard", order)[:, 0].long().tolist()
        assert got == list(permutation("standard", order))
        back = convert(torch.tensor(got, dtype=torch.float64)[:, None], order, "standard")
        assert back[:, 0].long().tolist() == list(range(21))


def test_hand_checked_positions():
    # wrist: first in every order but InterHand's, where it is last
    for order, wrist in (("standard", 0), ("mano", 0), ("biomech", 0), ("interhand", 20)):
        assert _names(order)[wrist] == "wrist", order
    # thumb tip
    for order, tip in (("standard", 4), ("mano", 16), ("biomech", 16), ("interhand", 0)):
        assert _names(order)[tip] == "thumb_4", order
    # thumb base (CMC): standard 1, MANO 13, biomech 1, InterHand 3
    for order, cmc in (("standard", 1), ("mano", 13), ("biomech", 1), ("interhand", 3)):
        assert _names(order)[cmc] == "thumb_1", order
    # pinky tip
    for order, tip in (("standard", 20), ("mano", 20), ("biomech", 20), ("interhand", 16)):
        assert _names(order)[tip] == "pinky_4", order
    # MANO keeps pinky before ring among the joints: 7-9 pinky, 10-12 ring
    assert _names("mano")[7:13] == ["pinky_1", "pinky_2", "pinky_3", "ring_1", "ring_2", "ring_3"]
    assert _names("mano")[16:] == ["thumb_4", "index_4", "middle_4", "ring_4", "pinky_4"]
    assert _names("interhand")[4:8] == ["index_4", "index_3", "index_2", "index_1"]
    assert _names("biomech")[1:6] == ["thumb_1", "index_1", "middle_1", "ring_1", "pinky_1"]
    assert _names("biomech")[6:11] == ["thumb_2", "index_2", "middle_2", "ring_2", "pinky_2"]


def test_published_lists():
    assert permutation("standard", "mano") == STANDARD_TO_MANO
    assert permutation("mano", "standard") == MANO_TO_STANDARD
    assert permutation("interhand", "standard") == INTERHAND_TO_STANDARD
    assert permutation("mano", "biomech") == MANO_TO_BIOMECH
    assert permutation("biomech", "mano") == BIOMECH_TO_MANO


def test_constants_agree_with_the_orders():
    assert MANO_JOINT_TO_STANDARD == STANDARD_TO_MANO[:16]
    assert FINGERTIPS_STANDARD == tuple(i for i, n in enumerate(STANDARD_NAMES) if n.endswith("_4"))
    assert len(STANDARD_NAMES) == 21 and STANDARD_NAMES[0] == "wrist"
    # parents: every finger base hangs from the wrist, the rest from the previous keypoint
    for i, parent in enumerate(STANDARD_PARENTS):
        if i == 0:
            assert parent == -1
        elif STANDARD_NAMES[i].endswith("_1"):
            assert parent == 0
        else:
            assert parent == i - 1 and STANDARD_NAMES[parent][:-1] == STANDARD_NAMES[i][:-1]


def test_compose_applies_left_to_right():
    rng = np.random.default_rng(1)
    p0, p1 = tuple(rng.permutation(21)), tuple(rng.permutation(21))
    x = rng.normal(size=21)
    np.testing.assert_array_equal(x[list(p0)][list(p1)], x[list(compose([p0, p1]))])


def test_errors():
    with pytest.raises(ValueError, match="unknown keypoint order 'openpose'"):
        permutation("standard", "openpose")
    with pytest.raises(ValueError, match=r"\(\.\.\., 21, D\)"):
        convert(np.zeros((20, 3)), "standard", "mano")
