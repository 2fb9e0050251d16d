"""Atomic file writes: nothing half-written is ever left looking complete.

Every writer goes to a temporary name in the destination folder and is renamed into place
(``os.replace`` is atomic on POSIX and Windows within one filesystem).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    Args:
        path: final destination.
        suffix: suffix of the temporary file (defaults to ``path``'s own suffix, so writers that
            pick a format from the extension, such as PIL or trimesh, still work).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp creates 0600; give the file the usual umask-based mode
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def write_pickle(path: str | os.PathLike, obj: Any) -> None:
    """Pickle ``obj`` to ``path`` atomically (protocol 4, readable by Python >= 3.4)."""
    write_bytes(path, pickle.dumps(obj, protocol=4))


def check_output_path(path: str | os.PathLike, option: str = "--out") -> Path:
    """Check, without creating anything, that ``path`` can be a job's output folder: not a
    file, not under a file, in a writable place. Returns it as a Path.

    Raises:
        Im2HandsError: one message naming ``option`` and the path.
    """
    from im2hands.utils.errors import Im2HandsError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise Im2HandsError(f"{option} {path}: is a file, not a folder")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise Im2HandsError(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise Im2HandsError(f"{option} {path}: {parent} is not writable")
    return path


def output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Create (if needed) and return the output folder ``path`` of a job (checked first by
    :func:`check_output_path`, then written to once).

    Raises:
        Im2HandsError: one message naming ``option`` and the path when it cannot be used.
    """
    from im2hands.utils.errors import Im2HandsError

    path = check_output_path(path, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_test_"):
            pass
    except OSError as exc:
        raise Im2HandsError(f"{option} {path}: cannot write there ({exc.strerror or exc})") from None
    return path
