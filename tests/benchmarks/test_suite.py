"""``im2hands bench --quick``: one tiny run through the command line, checked from both ends."""

import json
import math

import pytest

from im2hands.benchmarks import suite
from im2hands.cli import main


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Run ``im2hands bench --quick --out FILE`` once; keep what ``run_bench`` returned."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    returned = []
    real = suite.run_bench

    def spy(**kwargs):
        returned.append(real(**kwargs))
        return returned[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(suite, "run_bench", spy)
        code = main(["bench", "--quick", "--out", str(out)])
    return code, out, returned


@pytest.mark.slow
def test_run_bench_quick_returns_every_key_finite_and_positive(quick_run):
    code, _, returned = quick_run
    assert code == 0 and len(returned) == 1
    result = returned[0]
    for key in suite.HEADLINE_KEYS:
        assert isinstance(result[key], (int, float)) and math.isfinite(result[key]) and result[key] > 0, key
    assert 0 < result["mise_query_fraction"] < 1 and result["dense_points"] == 17**3  # 8 cells x 2 -> 16 cells
    assert set(result["targets"]) == set(suite.TARGETS)
    assert all(isinstance(t["pass"], bool) for t in result["targets"].values())
    for key in ("cpu_count", "torch", "torch_threads", "device", "date"):
        assert result["machine"][key]
    assert result["settings"]["quick"] is True
    m = result["measures"]
    assert m["extraction"]["repeats"] == len(m["extraction"]["runs_s"]) >= 1
    assert m["synth_2_workers"]["workers"] == 2 and m["synth_1_worker"]["workers"] == 1
    settings = result["settings"]
    assert settings["device"] == "cpu" and settings["threads"] == 2 and settings["synth_num"] == 2  # --quick: tiny
    assert m["synth_2_workers"]["samples_per_run"] == settings["synth_num"]
    assert m["synth_1_worker"]["samples_per_run"] == settings["synth_num_1_worker"]
    assert m["synth_2_workers"]["pool_startup_s"] > 0 and "samples_per_s_without_startup" in m["synth_2_workers"]
    assert suite._FULL["synth_num"] >= 160  # full runs: the pool's start-up must not dominate the 2-worker rate
    assert all(math.isfinite(v) and v > 0 for v in result["ratios"].values())
    images = m["images"]  # the shipped weights on one image, end to end
    assert images["image_to_mesh"]["failed"] == 0 and len(images["image_to_mesh"]["items_s"]) == 1
    assert images["image_to_mesh"]["model"].endswith("ref_occ.pt")
    assert images["estimator"]["passes"] == 1 and images["estimator_refiner"]["median_images_per_s"] > 0


@pytest.mark.slow
def test_cli_writes_the_json(quick_run):
    _, out, returned = quick_run
    data = json.loads(out.read_text())
    assert {k: data[k] for k in suite.HEADLINE_KEYS} == {k: returned[0][k] for k in suite.HEADLINE_KEYS}
    assert [p.name for p in out.parent.iterdir()] == ["bench.json"]  # written atomically: no leftovers
    table = suite.format_table(data)
    assert "| extract_two_hands_s |" in table and "all targets" in table


def test_unavailable_device_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.setattr(suite.torch.cuda, "is_available", lambda: False)
    assert main(["bench", "--quick", "--device", "cuda", "--out", "unused.json"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
