"""Tests for im2hands.hands.mano_io: chumpy-free loading, validation, conversion, folder lookup."""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from im2hands.hands import mano_io
from im2hands.hands.layer import load_hand_models
from im2hands.hands.mano_io import convert_mano, load_mano_file, resolve_mano_dir
from im2hands.utils.errors import HandModelError


@pytest.fixture
def fake_chumpy(monkeypatch):
    """A throwaway ``chumpy`` package (``chumpy.ch.Ch``, ``chumpy.reordering.Select``) to pickle with.

    Yields a function that removes it from ``sys.modules`` again, so loading runs without it.
    """
    pkg, ch, reordering = (types.ModuleType(n) for n in ("chumpy", "chumpy.ch", "chumpy.reordering"))

    class Ch:
        def __init__(self, x):
            self.x = x
            self._dirty_vars = set()  # chumpy bookkeeping the loader must ignore

    class Select:
        def __init__(self, a, idxs, preferred_shape):
            self.a, self.idxs, self.preferred_shape = a, idxs, preferred_shape

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    Select.__module__, Select.__qualname__ = "chumpy.reordering", "Select"
    ch.Ch, reordering.Select, pkg.ch, pkg.reordering, pkg.Ch = Ch, Select, ch, reordering, Ch
    for mod in (pkg, ch, reordering):
        monkeypatch.setitem(sys.modules, mod.__name__, mod)

    def remove():
        for name in ("chumpy", "chumpy.ch", "chumpy.reordering"):
            monkeypatch.delitem(sys.modules, name, raising=False)

    pkg.remove = remove
    return pkg


def _chumpify(arrays: dict, chumpy) -> dict:
    """Licensed-MANO-like content: Ch objects, a Select wrapper, a sparse regressor, extra keys."""
    out = {k: chumpy.Ch(v) for k, v in arrays.items() if k not in ("f", "J_regressor", "hands_mean")}
    out["f"] = arrays["f"].astype(np.uint32)
    out["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
    reversed_mean = chumpy.Ch(arrays["hands_mean"][::-1].reshape(15, 3))
    out["hands_mean"] = chumpy.reordering.Select(reversed_mean, np.arange(44, -1, -1), (45,))
    out["bs_style"] = "lbs"
    return out


def _write_chumpy_pair(folder: Path, right: dict, left: dict, chumpy, protocol: int = 2) -> Path:
    """Protocols <= 2 write Python-2 module names (copy_reg, __builtin__), as the licensed files have."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, arrays in (("MANO_RIGHT.pkl", right), ("MANO_LEFT.pkl", left)):
        (folder / name).write_bytes(pickle.dumps(_chumpify(arrays, chumpy), protocol=protocol))
    return folder


def _assert_same(loaded: dict, arrays: dict) -> None:
    for key, value in arrays.items():
        np.testing.assert_allclose(loaded[key], value, err_msg=key)


def test_loads_plain_pickle_and_names_model(hand_dir, hand_arrays):
    data = load_mano_file(hand_dir / "MANO_RIGHT.pkl")
    _assert_same(data, hand_arrays())
    assert data["f"].dtype == np.int64 and data["shapedirs"].dtype == np.float64
    assert data["model_name"] == "mano"


def test_model_name_key_is_reported(tmp_path, hand_arrays):
    arrays = {**hand_arrays(), "model_name": np.array("openhand-v1")}
    np.savez(tmp_path / "hand.npz", **arrays)
    data = load_mano_file(tmp_path / "hand.npz")
    assert data["model_name"] == "openhand-v1"
    _assert_same(data, hand_arrays())


@pytest.mark.parametrize("protocol", [0, 2])
def test_fake_chumpy_pickle_loads_without_chumpy(tmp_path, hand_arrays, fake_chumpy, protocol):
    arrays = hand_arrays(hands_mean_scale=0.2)
    folder = _write_chumpy_pair(tmp_path / "licensed", arrays, arrays, fake_chumpy, protocol)
    assert b"chumpy.ch" in (folder / "MANO_RIGHT.pkl").read_bytes()
    fake_chumpy.remove()
    assert "chumpy" not in sys.modules
    data = load_mano_file(folder / "MANO_RIGHT.pkl")
    assert "chumpy" not in sys.modules
    _assert_same(data, arrays)
    assert isinstance(data["J_regressor"], np.ndarray) and data["bs_style"] == "lbs"


def test_convert_writes_plain_pickles(tmp_path, hand_arrays, fake_chumpy):
    right = hand_arrays()
    left = {**right, "v_template": right["v_template"] * [-1, 1, 1]}
    src = _write_chumpy_pair(tmp_path / "licensed", right, left, fake_chumpy)
    fake_chumpy.remove()
    written = convert_mano(src, tmp_path / "plain")
    assert [p.name for p in written] == ["MANO_LEFT.pkl", "MANO_RIGHT.pkl"]
    assert not list((tmp_path / "plain").glob(".*tmp*"))  # atomic writes leave no temporaries
    for path, expected in zip(written, (left, right)):
        with open(path, "rb") as fh:
            plain = pickle.load(fh)  # the standard unpickler: no stubs, no chumpy
        _assert_same(plain, expected)
        assert all(isinstance(v, (np.ndarray, str)) for v in plain.values())
    # smplx reads the converted folder on its own (its plain pickle.load path).
    import smplx

    model = smplx.MANO(str(tmp_path / "plain"), is_rhand=True, use_pca=False)
    np.testing.assert_allclose(model.v_template.numpy(), right["v_template"], atol=1e-6)


def test_unrecoverable_chumpy_object_is_a_clear_error(tmp_path, hand_arrays, fake_chumpy):
    arrays = _chumpify(hand_arrays(), fake_chumpy)
    arrays["shapedirs"] = fake_chumpy.reordering.Select(None, None, None)
    del arrays["shapedirs"].a  # neither 'x' nor 'a'
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps(arrays, protocol=2))
    fake_chumpy.remove()
    with pytest.raises(HandModelError, match=r"bad\.pkl.*shapedirs.*chumpy\.reordering\.Select"):
        load_mano_file(tmp_path / "bad.pkl")


class _Evil:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').touch()",))


def test_refuses_code_in_pickles(tmp_path, hand_arrays, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({**hand_arrays(), "x": _Evil()}))
    with pytest.raises(HandModelError, match=r"evil\.pkl.*builtins\.exec"):
        load_mano_file(tmp_path / "evil.pkl")
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("key", ["posedirs", "hands_mean", "J_regressor"])
def test_missing_key_names_file_and_key(tmp_path, hand_arrays, key):
    arrays = hand_arrays()
    del arrays[key]
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(pickle.dumps(arrays))
    with pytest.raises(HandModelError, match=rf"MANO_RIGHT\.pkl.*'{key}'"):
        load_mano_file(tmp_path / "MANO_RIGHT.pkl")


@pytest.mark.parametrize(
    ("key", "bad"),
    [("weights", np.ones((10, 16))), ("shapedirs", np.zeros((155, 3, 5))), ("f", np.full((4, 3), 10_000))],
)
def test_bad_shape_or_index_names_key(tmp_path, hand_arrays, key, bad):
    (tmp_path / "m.pkl").write_bytes(pickle.dumps({**hand_arrays(), key: bad}))
    with pytest.raises(HandModelError, match=rf"m\.pkl.*'{key}'"):
        load_mano_file(tmp_path / "m.pkl")


def test_resolve_mano_dir_order_and_errors(tmp_path, hand_dir, monkeypatch):
    monkeypatch.setenv(mano_io.ENV_MANO_DIR, str(hand_dir))
    assert resolve_mano_dir(None) == hand_dir
    other = tmp_path / "other"
    with pytest.raises(HandModelError, match=rf"{other}.*does not exist.*IM2HANDS_MANO_DIR"):
        resolve_mano_dir(other)  # the argument wins over the environment
    other.mkdir()
    (other / "MANO_RIGHT.pkl").write_bytes((hand_dir / "MANO_RIGHT.pkl").read_bytes())
    with pytest.raises(HandModelError, match=r"MANO_LEFT\.pkl"):
        resolve_mano_dir(other)
    with pytest.raises(HandModelError, match=r"from --mano-dir\).*pass --mano-dir <folder>"):
        resolve_mano_dir(other, source="--mano-dir")  # the option the user typed is named
    with pytest.raises(HandModelError, match=r"from hand_model\.mano_dir\).*pass hand_model\.mano_dir=<folder>"):
        load_hand_models(other, source="hand_model.mano_dir")
    monkeypatch.setenv(mano_io.ENV_MANO_DIR, str(tmp_path / "nowhere"))
    with pytest.raises(HandModelError, match=r"nowhere.*\$IM2HANDS_MANO_DIR"):
        resolve_mano_dir(None)
    monkeypatch.delenv(mano_io.ENV_MANO_DIR)
    monkeypatch.setattr(mano_io, "DEFAULT_MODEL_DIR", tmp_path / "assets_missing")
    with pytest.raises(HandModelError, match=r"assets_missing.*open hand model"):
        resolve_mano_dir(None)


def test_missing_file_error(tmp_path):
    with pytest.raises(HandModelError, match=r"nothing\.pkl"):
        load_mano_file(tmp_path / "nothing.pkl")


def test_left_fix_negates_only_buggy_pairs(hand_arrays):
    right = hand_arrays()
    good = {**right, "shapedirs": right["shapedirs"] * np.array([-1, 1, 1])[None, :, None]}
    buggy = {**right, "shapedirs": right["shapedirs"].copy()}
    assert mano_io.fix_left_shapedirs(good, right) is good
    fixed = mano_io.fix_left_shapedirs(buggy, right)
    np.testing.assert_array_equal(fixed["shapedirs"], good["shapedirs"])
    np.testing.assert_array_equal(buggy["shapedirs"], right["shapedirs"])  # input untouched
