import subprocess
import sys

from pathlib import Path

from im2hands.cli import main

SYNTH = str(Path(__file__).resolve().parents[1] / "configs" / "synth.yaml")


def test_config_prints_resolved_yaml(capsys):
    assert main(["config", SYNTH, "data.num_points=77"]) == 0
    out = capsys.readouterr().out
    assert "num_points: 77" in out and "name: synth" in out


def test_bad_override_is_one_clear_line(capsys):
    assert main(["config", SYNTH, "data.bogus=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.bogus" in err[0]


def test_python_dash_m_works():
    res = subprocess.run([sys.executable, "-m", "im2hands", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and "im2hands" in res.stdout
