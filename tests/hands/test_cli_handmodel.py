"""The hand-model subcommands of the ``im2hands`` command, called through ``im2hands.cli.main``.

``im2hands handmodel build`` is exercised in ``test_builder.py``: its module fixture builds the
model through the command, and ``test_rebuild_matches_committed_files`` compares the output
with the committed files.
"""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch

from im2hands.cli import EXIT_USER_ERROR, main
from im2hands.hands.layer import load_hand_models
from im2hands.hands.mano_io import convert_mano, load_mano_file
from im2hands.utils.errors import HandModelError


def test_mano_convert_writes_plain_copies(hand_dir, hand_arrays, tmp_path, caplog):
    out = tmp_path / "plain"
    with caplog.at_level(logging.INFO, logger="im2hands"):
        assert main(["mano", "convert", "--src", str(hand_dir), "--out", str(out)]) == 0
    wrote = {r.getMessage() for r in caplog.records if r.name == "im2hands"}
    assert wrote == {f"wrote {out / n}" for n in ("MANO_RIGHT.pkl", "MANO_LEFT.pkl")}
    assert sorted(p.name for p in out.iterdir()) == ["MANO_LEFT.pkl", "MANO_RIGHT.pkl"]
    right = hand_arrays()
    for name in ("MANO_RIGHT.pkl", "MANO_LEFT.pkl"):
        with open(out / name, "rb") as fh:
            plain = pickle.load(fh)  # the standard unpickler reads the copies
        assert all(isinstance(v, (np.ndarray, str)) for v in plain.values()), name
        source = load_mano_file(hand_dir / name)
        assert sorted(plain) == sorted(source), name
        for key, value in source.items():
            np.testing.assert_array_equal(plain[key], value, err_msg=f"{name}[{key!r}]")
    np.testing.assert_array_equal(plain["v_template"], right["v_template"] * [-1.0, 1.0, 1.0])  # the left file
    # The copies load through the package's layer and pose like the originals.
    models, originals = load_hand_models(out), load_hand_models(hand_dir)
    pose, shape, trans = torch.randn(2, 48) * 0.3, torch.randn(2, 10), torch.zeros(2, 3)
    for side in ("right", "left"):
        assert models[side].num_vertices == len(right["v_template"]) + 1  # plus the wrist-cap centre
        torch.testing.assert_close(models[side](pose, shape, trans).vertices,
                                   originals[side](pose, shape, trans).vertices, rtol=0, atol=1e-7)


def test_mano_convert_missing_src_names_the_option(tmp_path, capsys):
    missing, out = tmp_path / "no_such_folder", tmp_path / "plain"
    assert main(["mano", "convert", "--src", str(missing), "--out", str(out)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(missing) in err[0] and "--src" in err[0] and "does not exist" in err[0]
    assert "model_dir" not in err[0]
    assert not out.exists()


def test_mano_convert_src_without_files_names_the_option(tmp_path, capsys):
    empty, out = tmp_path / "empty", tmp_path / "plain"
    empty.mkdir()
    assert main(["mano", "convert", "--src", str(empty), "--out", str(out)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MANO_RIGHT.pkl" in err[0] and str(empty) in err[0], err
    assert "(folder from --src)" in err[0] and "model_dir" not in err[0]
    assert not out.exists()


def test_mano_convert_only_one_side_writes_nothing(hand_dir, tmp_path, capsys):
    half, out = tmp_path / "half", tmp_path / "plain"
    half.mkdir()
    (half / "MANO_RIGHT.pkl").write_bytes((hand_dir / "MANO_RIGHT.pkl").read_bytes())
    assert main(["mano", "convert", "--src", str(half), "--out", str(out)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "MANO_LEFT.pkl" in err and "--src" in err
    assert not out.exists()


def test_convert_mano_names_the_python_argument_when_asked(tmp_path):
    with pytest.raises(HandModelError, match=r"no_such_folder \(from src_dir\).*pass src_dir=<folder>"):
        convert_mano(tmp_path / "no_such_folder", tmp_path / "plain", src_name="src_dir")
