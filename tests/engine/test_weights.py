"""Weights files: export round trip, the shipped files (present, within the size budget, loadable)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from im2hands.cli import main
from im2hands.config import load_config
from im2hands.engine.builders import build_model
from im2hands.engine.checkpoint import load_checkpoint, load_model, save_checkpoint
from im2hands.engine.weights import SHIPPED, WEIGHTS_DIR, export_weights, read_manifest, sha256, shipped_path
from im2hands.utils.errors import Im2HandsError

REPO = Path(__file__).resolve().parents[2]
BUDGET_BYTES = 40_000_000  # the main-job issue: shipped weights <= 40 MB in total


@pytest.fixture()
def run(tmp_path):
    cfg = load_config(REPO / "configs/smoke/init_occ.yaml")
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters())
    save_checkpoint(tmp_path / "run" / "best.pt", model=model, optimizer=opt, scheduler=None, cfg=cfg,
                    state={"step": 7, "best": {"metric": "iou", "mode": "max", "value": 0.5, "step": 7}}, rng=[])
    return tmp_path / "run", model


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_export_round_trip(run, tmp_path, dtype):
    folder, model = run
    info = export_weights(folder, tmp_path / "w.pt", dtype=dtype)
    assert info["step"] == 7 and info["best"]["value"] == 0.5 and info["dtype"] == dtype
    ckpt = load_checkpoint(tmp_path / "w.pt")
    assert "optimizer" not in ckpt and "rng" not in ckpt and ckpt["weights"]["source"].endswith("best.pt")
    floats = [v for v in ckpt["model"].values() if torch.is_tensor(v) and v.is_floating_point()]
    assert floats and all(v.dtype == getattr(torch, dtype) for v in floats)
    loaded, cfg = load_model(tmp_path / "w.pt")
    assert cfg.model.type == "init_occ"
    want = model.state_dict()
    for key, value in loaded.state_dict().items():
        if torch.is_tensor(value) and value.is_floating_point():
            assert value.dtype == torch.float32, key  # evaluated in float32 whatever the storage
            # float16 keeps 11 significant bits: relative error <= 2^-11 (plus subnormals near 0)
            tol = 0.0 if dtype == "float32" else 2.0**-11
            assert torch.allclose(value, want[key], rtol=tol, atol=1e-7 if tol else 0.0), key


def test_export_errors(run, tmp_path):
    folder, model = run
    with pytest.raises(Im2HandsError, match="no run folder or checkpoint"):
        export_weights(tmp_path / "nothing", tmp_path / "w.pt")
    with pytest.raises(Im2HandsError, match="--dtype must be one of"):
        export_weights(folder, tmp_path / "w.pt", dtype="int8")
    # a value beyond float16's range is refused, with the way out named
    sd = torch.load(folder / "best.pt", weights_only=True)
    first = next(k for k, v in sd["model"].items() if torch.is_tensor(v) and v.is_floating_point())
    sd["model"][first] = sd["model"][first] + 1e6
    torch.save(sd, folder / "best.pt")
    with pytest.raises(Im2HandsError, match="export with --dtype float32"):
        export_weights(folder, tmp_path / "w.pt")
    assert not (tmp_path / "w.pt").exists()
    assert export_weights(folder, tmp_path / "w.pt", dtype="float32")["dtype"] == "float32"


def test_cli_export(run, tmp_path):
    folder, _ = run
    assert main(["weights", "export", str(folder), "--out", str(tmp_path / "x.pt")]) == 0
    assert load_checkpoint(tmp_path / "x.pt")["weights"]["dtype"] == "float16"
    assert main(["weights", "export", str(tmp_path / "none"), "--out", str(tmp_path / "y.pt")]) == 2


def test_shipped_path_errors(tmp_path):
    with pytest.raises(Im2HandsError, match="unknown weights role 'x'"):
        shipped_path("x")
    with pytest.raises(Im2HandsError, match="shipped estimator weights are missing"):
        shipped_path("estimator", weights_dir=tmp_path)


def test_shipped_files_are_there_within_budget_and_match_the_manifest():
    files = read_manifest()["files"]
    total = 0
    for role, name in SHIPPED.items():
        path = shipped_path(role)
        total += path.stat().st_size
        assert files[name]["sha256"] == sha256(path), f"{name} differs from MANIFEST.json"
        assert files[name]["bytes"] == path.stat().st_size
        assert files[name]["trained_with"].startswith("im2hands train configs/")
    assert total <= BUDGET_BYTES


@pytest.mark.parametrize("role,stage", [("estimator", "kpts_est"), ("refiner", "kpts_ref"), ("model", "ref_occ"),
                                        ("init_occ", "init_occ"), ("keypoint_only", "init_occ"),
                                        ("crop_net", "crop_net"), ("hand_det", "hand_det")])
def test_shipped_weights_load(role, stage):
    model, cfg = load_model(shipped_path(role))
    assert cfg.model.type == stage and not model.training
    if role == "keypoint_only":
        assert cfg.model.init_occ.use_image is False
    assert WEIGHTS_DIR.name == "weights"


def test_cli_list_names_every_shipped_file_with_its_command(capsys):
    assert main(["weights", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(SHIPPED)
    for line, (role, name) in zip(lines, SHIPPED.items()):
        assert line.split()[:2] == [role, name] and " MB " in line and "im2hands train configs/" in line


def test_check_write_goes_to_the_named_file_never_the_installed_manifest(tmp_path, monkeypatch):
    import json

    import im2hands.demo as demo

    fake = {"seed": 12345, "runs": {"images": {"summary": {"iou": 0.5}}}}
    monkeypatch.setattr(demo, "run_pipeline", lambda *a, **k: fake)
    monkeypatch.setattr(demo, "results_table", lambda results: "table")
    shipped = (WEIGHTS_DIR / "MANIFEST.json").read_bytes()
    assert main(["weights", "check", "--out", str(tmp_path / "o"), "--num", "2", "--no-progress"]) == 0
    target = tmp_path / "MANIFEST.json"
    assert main(["weights", "check", "--out", str(tmp_path / "o"), "--num", "2", "--write", str(target)]) == 0
    assert (WEIGHTS_DIR / "MANIFEST.json").read_bytes() == shipped
    written = json.loads(target.read_text())
    assert written["heldout"]["runs"] == fake["runs"] and written["heldout"]["num"] == 2
    assert written["files"] == read_manifest()["files"]
    assert main(["weights", "check", "--out", str(tmp_path / "o"), "--write", str(tmp_path)]) == 2
    assert main(["weights", "check", "--out", str(tmp_path / "o"), "--write", str(tmp_path / "no" / "M.json")]) == 2
