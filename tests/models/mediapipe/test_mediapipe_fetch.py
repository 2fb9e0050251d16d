"""Fetching MediaPipe's files: extraction from a wheel, hash checks, idempotence, the messages.

A small zip with the wheel's inner paths stands in for the mediapipe wheel, and the expected
SHA-256s are patched to its contents; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from im2hands.cli import main
from im2hands.models.mediapipe import fetch
from im2hands.models.mediapipe.fetch import MediaPipeWeightsError, fetch_mediapipe, model_path

CONTENT = {"hand_landmark_full.tflite": b"landmark bytes", "palm_detection_full.tflite": b"palm bytes"}


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch) -> Path:
    files = {n: (fetch.FILES[n][0], hashlib.sha256(c).hexdigest()) for n, c in CONTENT.items()}
    monkeypatch.setattr(fetch, "FILES", files)
    wheel = tmp_path / "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, content in CONTENT.items():
            zf.writestr(files[name][0], content)
    return wheel


def _no_download(dest):
    raise AssertionError("downloaded although the files were there")


def test_fetch_extracts_verifies_and_is_idempotent(fake_wheel, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    paths = fetch_mediapipe(cache, wheel=fake_wheel)
    assert [p.read_bytes() for p in paths] == list(CONTENT.values())
    assert sorted(p.name for p in cache.iterdir()) == sorted(CONTENT)  # no temporary files left
    monkeypatch.setattr(fetch, "download_wheel", _no_download)
    assert fetch_mediapipe(cache) == paths  # verified files: no download


def test_corrupted_file_is_reported_and_repaired(fake_wheel, tmp_path):
    cache = tmp_path / "cache"
    fetch_mediapipe(cache, wheel=fake_wheel)
    (cache / "palm_detection_full.tflite").write_bytes(b"palm bytez")
    with pytest.raises(MediaPipeWeightsError, match=r"palm_detection_full.tflite has SHA-256 .* weights fetch-mediapipe"):
        model_path("palm_detection_full.tflite", cache)
    fetch_mediapipe(cache, wheel=fake_wheel)
    assert model_path("palm_detection_full.tflite", cache).read_bytes() == CONTENT["palm_detection_full.tflite"]


def test_missing_file_message(tmp_path, monkeypatch):
    monkeypatch.setenv("IM2HANDS_CACHE", str(tmp_path))
    with pytest.raises(MediaPipeWeightsError) as info:
        model_path("hand_landmark_full.tflite")
    msg = str(info.value)
    assert str(tmp_path / "mediapipe" / "hand_landmark_full.tflite") in msg and "im2hands weights fetch-mediapipe" in msg
    assert "\n" not in msg


def test_wheel_with_wrong_content_writes_nothing(fake_wheel, tmp_path, monkeypatch):
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(bad, "w") as zf:
        for name, content in CONTENT.items():
            zf.writestr(fetch.FILES[name][0], content + b"!")
    cache = tmp_path / "cache"
    with pytest.raises(MediaPipeWeightsError, match="hand_landmark_full.tflite in bad.whl has SHA-256"):
        fetch_mediapipe(cache, wheel=bad)
    assert not any(cache.iterdir())


def test_cli_fetch_bad_wheel_exits_with_one_line(tmp_path, capsys):
    not_a_zip = tmp_path / "x.whl"
    not_a_zip.write_bytes(b"not a zip")
    assert main(["weights", "fetch-mediapipe", "--dir", str(tmp_path / "c"), "--wheel", str(not_a_zip)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "x.whl is not a readable wheel" in err[0]


def test_failed_download_names_the_package(tmp_path, monkeypatch):
    import subprocess

    def failing(cmd, **kw):
        assert "--no-deps" in cmd and "mediapipe==0.10.21" in cmd and "--platform" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for mediapipe==0.10.21\n")

    monkeypatch.setattr(fetch.subprocess, "run", failing)
    with pytest.raises(MediaPipeWeightsError, match=r"pip download mediapipe==0.10.21` failed \(exit 1\): ERROR: No matching"):
        fetch_mediapipe(tmp_path / "cache")


def test_missing_files_names_the_first_absent_file(tmp_path):
    from im2hands.models.mediapipe.fetch import missing_files

    message = missing_files(tmp_path)
    assert message is not None and "hand_landmark_full.tflite is missing" in message and str(tmp_path) in message
