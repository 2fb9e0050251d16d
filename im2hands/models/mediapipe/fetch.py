"""MediaPipe's hand networks: fetch them from the PyPI ``mediapipe`` wheel into a cache, verify them.

The two ``.tflite`` files (Apache-2.0) are never committed. ``im2hands weights fetch-mediapipe``
(run by ``make venv``) downloads the ``mediapipe==0.10.21`` wheel with ``pip download --no-deps``,
takes the two files out of it (a wheel is a zip), checks their SHA-256 against :data:`FILES` and
writes them into :func:`cache_dir` under a temporary name, then renames them. A second run with
the files present and verified downloads nothing. See docs/mediapipe.md.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from im2hands.utils.errors import Im2HandsError

log = logging.getLogger(__name__)

WHEEL_VERSION = "0.10.21"
"""The last mediapipe release whose wheels ship the hand ``.tflite`` files."""

# One fixed wheel (any platform's wheel holds the same model files; this one is pinned so the
# download is reproducible from any Python): cp311, manylinux_2_28 x86_64.
WHEEL_PIP_ARGS: tuple[str, ...] = (
    "--no-deps", "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
    "--abi", "cp311", "--platform", "manylinux_2_28_x86_64",
)

FILES: dict[str, tuple[str, str]] = {
    "hand_landmark_full.tflite": (
        "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
        "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3",
    ),
    "palm_detection_full.tflite": (
        "mediapipe/modules/palm_detection/palm_detection_full.tflite",
        "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54",
    ),
}
"""Cache file name -> (path inside the wheel, SHA-256 of the file)."""

FETCH_COMMAND = "im2hands weights fetch-mediapipe"
CACHE_ENV = "IM2HANDS_CACHE"


class MediaPipeWeightsError(Im2HandsError):
    """A MediaPipe ``.tflite`` file is missing, corrupted, or could not be fetched."""


def cache_dir() -> Path:
    """Folder of the ``.tflite`` files: ``$IM2HANDS_CACHE/mediapipe``, default ``~/.cache/im2hands/mediapipe``."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "im2hands"
    return base / "mediapipe"


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_name(name: str) -> None:
    if name not in FILES:
        raise MediaPipeWeightsError(f"unknown MediaPipe file {name!r}; expected one of {', '.join(FILES)}")


def model_path(name: str, folder: str | Path | None = None) -> Path:
    """Path of the verified file ``name`` (a key of :data:`FILES`); one clear error when absent or corrupted.

    Args:
        name: ``hand_landmark_full.tflite`` or ``palm_detection_full.tflite``.
        folder: where to look (default :func:`cache_dir`).
    """
    _check_name(name)
    path = Path(folder) if folder is not None else cache_dir()
    path = path / name
    if not path.is_file():
        raise MediaPipeWeightsError(f"{path} is missing; run `{FETCH_COMMAND}` (or `make venv`) to fetch it")
    digest = sha256(path)
    if digest != FILES[name][1]:
        raise MediaPipeWeightsError(
            f"{path} has SHA-256 {digest[:12]}..., expected {FILES[name][1][:12]}...; delete it and run `{FETCH_COMMAND}`"
        )
    return path


def missing_files(folder: str | Path | None = None) -> str | None:
    """None when every file of :data:`FILES` is cached and verified, else the message of the
    first that is not (what :func:`model_path` would raise)."""
    try:
        for name in FILES:
            model_path(name, folder)
    except MediaPipeWeightsError as exc:
        return str(exc)
    return None


def _verified(path: Path, name: str) -> bool:
    return path.is_file() and sha256(path) == FILES[name][1]


def download_wheel(dest: Path) -> Path:
    """``pip download`` the pinned mediapipe wheel into ``dest``; returns the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", *WHEEL_PIP_ARGS, "--dest", str(dest),
           f"mediapipe=={WHEEL_VERSION}"]
    log.info("downloading mediapipe==%s (about 36 MB) with pip", WHEEL_VERSION)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob(f"mediapipe-{WHEEL_VERSION}-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise MediaPipeWeightsError(
            f"`pip download mediapipe=={WHEEL_VERSION}` failed (exit {proc.returncode}): {tail[0]}"
        )
    return wheels[0]


def extract_from_wheel(wheel: str | Path, folder: str | Path, names: list[str] | None = None) -> list[Path]:
    """Copy ``names`` (default all of :data:`FILES`) out of a mediapipe wheel into ``folder``.

    Each file is checked against its SHA-256 before it is renamed into place; a mismatch raises and
    leaves nothing behind.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        zf = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise MediaPipeWeightsError(f"{wheel} is not a readable wheel (zip): {exc}") from exc
    with zf:
        for name in names or list(FILES):
            _check_name(name)
            inner, expected = FILES[name]
            try:
                data = zf.read(inner)
            except KeyError as exc:
                raise MediaPipeWeightsError(f"{wheel} has no {inner}") from exc
            digest = hashlib.sha256(data).hexdigest()
            if digest != expected:
                raise MediaPipeWeightsError(
                    f"{inner} in {Path(wheel).name} has SHA-256 {digest[:12]}..., expected {expected[:12]}..."
                )
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(tmp, 0o644)
                os.replace(tmp, folder / name)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            written.append(folder / name)
    return written


def fetch_mediapipe(folder: str | Path | None = None, wheel: str | Path | None = None) -> list[Path]:
    """Make sure both verified ``.tflite`` files are in ``folder`` (default :func:`cache_dir`).

    Idempotent: files already there with the right SHA-256 are kept and nothing is downloaded.
    A file with a wrong hash is replaced.

    Args:
        folder: the cache folder.
        wheel: a mediapipe 0.10.21 wheel already on disk (skips the download).
    Returns:
        The paths of the two files.
    """
    folder = Path(folder) if folder is not None else cache_dir()
    missing = [n for n in FILES if not _verified(folder / n, n)]
    if missing:
        if wheel is not None:
            extract_from_wheel(wheel, folder, missing)
        else:
            with tempfile.TemporaryDirectory(prefix="im2hands-mediapipe-") as tmp:
                extract_from_wheel(download_wheel(Path(tmp)), folder, missing)
        for n in missing:
            log.info("wrote %s", folder / n)
    else:
        log.info("MediaPipe hand networks already in %s (verified)", folder)
    return [model_path(n, folder) for n in FILES]
