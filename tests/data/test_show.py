import numpy as np
import pytest
from PIL import Image

from im2hands.cli import main
from im2hands.data.show import show_sample
from im2hands.utils.errors import DataError


def test_show_writes_a_picture(synth_dir, tmp_path):
    out = show_sample(synth_dir, 1, tmp_path / "s.png")
    img = np.asarray(Image.open(out))
    assert img.shape[0] > 300 and img.shape[1] > 500 and img.std() > 10
    with pytest.raises(DataError, match="out of range"):
        show_sample(synth_dir, 6, tmp_path / "t.png")


def test_cli_data_show_and_errors(synth_dir, tmp_path, capsys):
    assert main(["data", "show", str(synth_dir), "--index", "0", "--out", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").is_file()
    assert main(["data", "show", str(tmp_path / "nothing"), "--out", str(tmp_path / "b.png")]) == 2
    assert "meta.json" in capsys.readouterr().err
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--num", "0"]) == 2
