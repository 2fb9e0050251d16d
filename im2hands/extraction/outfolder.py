"""The output folder of an extract job: one writer at a time, and contents that always match
its ``summary.json``.

- **Lock**: ``OUT/.extract.lock`` holds the writer's process id while a job runs; a second job
  into the same folder is refused while that process lives (a lock left by a killed process
  is taken over).
- **An earlier run** in the folder (its ``summary.json``): by default the job is refused, so
  meshes made with other settings never mix with new ones under one summary;
  ``existing="overwrite"`` first removes every file the earlier run wrote (as its summary
  lists them); ``existing="resume"`` keeps the items the earlier run finished (status ``ok``,
  files present) when its settings are the same, and processes the rest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from im2hands.utils.errors import Im2HandsError

__all__ = ["EXISTING_MODES", "OutputFolder", "check_not_an_input"]

EXISTING_MODES = ("refuse", "overwrite", "resume")
"""What to do with an earlier run in the output folder (``--overwrite``, ``--resume``)."""
LOCK = ".extract.lock"
SUMMARY = "summary.json"
_FREE_SETTINGS = ("limit", "device", "points_batch_size", "config_files")
"""Settings that may differ between an earlier run and its resumption."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class OutputFolder:
    """Context manager around an extract job's writing into ``out`` (module docstring).

    Args:
        out: the folder (it exists).
        existing: ``refuse``, ``overwrite`` or ``resume``.

    Attributes:
        earlier: the earlier run's summary (None when there was none).
    """

    def __init__(self, out: Path, existing: str = "refuse") -> None:
        if existing not in EXISTING_MODES:
            raise Im2HandsError(f"existing must be one of {', '.join(EXISTING_MODES)}, got {existing!r}")
        self.out, self.existing = Path(out), existing
        self.earlier: dict[str, Any] | None = None
        self._locked = False

    def __enter__(self) -> "OutputFolder":
        lock = self.out / LOCK
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid = int(lock.read_text().strip() or -1)
                except (OSError, ValueError):
                    pid = -1
                if pid > 0 and pid != os.getpid() and _alive(pid):
                    raise Im2HandsError(f"--out {self.out}: another im2hands extract (process {pid}) is writing "
                                        f"there; wait for it or choose another folder") from None
                lock.unlink(missing_ok=True)  # left by a process that no longer runs
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            self._locked = True
            break
        else:
            raise Im2HandsError(f"--out {self.out}: cannot take the lock {lock}")
        try:
            self._earlier_run()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._locked:
            (self.out / LOCK).unlink(missing_ok=True)
            self._locked = False

    def _earlier_run(self) -> None:
        path = self.out / SUMMARY
        if not path.is_file():
            return
        try:
            earlier = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            earlier = {"items": [], "settings": {}}
        items = earlier.get("items", [])
        if self.existing == "refuse":
            raise Im2HandsError(
                f"--out {self.out} holds an earlier extract run ({len(items)} items); pass --resume to continue it "
                "(same settings), --overwrite to replace it, or choose another folder"
            )
        if self.existing == "overwrite":
            names = [f for r in items for f in r.get("files", [])] + list(earlier.get("settings", {}).get("config_files", []))
            for name in names + [SUMMARY]:
                target = self.out / Path(name).name  # only files of this folder
                target.unlink(missing_ok=True)
            return
        self.earlier = earlier

    def finished_records(self, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """For ``resume``: the earlier run's records of finished items by name (their files all
        present), after checking that its settings equal ``settings`` (except
        :data:`_FREE_SETTINGS`). Empty otherwise.

        Raises:
            Im2HandsError: the settings differ (naming the keys).
        """
        if self.earlier is None:
            return {}
        before = self.earlier.get("settings", {})
        differ = sorted(k for k in set(before) | set(settings)
                        if k not in _FREE_SETTINGS and before.get(k) != _plain(settings.get(k)))  # fmt: skip
        if differ:
            raise Im2HandsError(f"--resume: the earlier run in {self.out} was made with other settings "
                                f"({', '.join(differ)}); use --overwrite or another folder")
        return {r["name"]: r for r in self.earlier.get("items", [])
                if r.get("status") == "ok" and all((self.out / f).is_file() for f in r.get("files", []))}  # fmt: skip


def _plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def check_not_an_input(out: str | os.PathLike, **inputs: Any) -> None:
    """Refuse an output folder that is an input folder: its ``NAME.png`` overlays and
    ``NAME_keypoints.json`` files would overwrite the inputs (or be read as inputs next time)."""
    target = Path(out).resolve()
    for option, folder in inputs.items():
        if folder is None:
            continue
        folders = [Path(folder).resolve()] + ([Path(folder).resolve() / "images"] if option == "dataset" else [])
        if target in folders:
            raise Im2HandsError(f"--out {out} is the --{option} folder {folder}: the outputs would overwrite or mix "
                                "with the inputs; choose another output folder")
