import os
import stat

import pytest

from im2hands.utils.io import atomic_path, write_json, write_text


def test_atomic_write_leaves_no_temp_and_normal_mode(tmp_path):
    path = tmp_path / "sub" / "a.json"
    write_json(path, {"x": 1})
    assert path.read_text().strip().startswith("{")
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_failed_write_keeps_old_file_and_no_temp(tmp_path):
    path = tmp_path / "b.txt"
    write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.txt"]
