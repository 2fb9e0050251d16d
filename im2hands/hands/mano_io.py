"""Reading MANO-format hand-model files into plain numpy arrays, without chumpy.

A MANO-format file is a pickle (or ``.npz``) of a dict holding the template mesh, the joint
regressor, skinning weights and the shape/pose blend shapes. Two kinds exist:

- the licensed ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl``: pickled under Python 2, with chumpy
  ``Ch`` objects and a scipy-sparse ``J_regressor``. chumpy does not import on Python 3.11 /
  numpy 2, so :func:`load_mano_file` unpickles chumpy classes into stubs and reads their values;
- plain-numpy copies (our open hand model, or the output of :func:`convert_mano`).

Loading uses a restricted unpickler: only numpy, scipy-sparse, chumpy (as stubs) and a few
builtin containers may appear in the file, so a malicious pickle cannot run code.

Units are the file's own (metres for MANO). Coordinates are the model frame.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from im2hands.hands.constants import NUM_BETAS, NUM_JOINTS, SIDES
from im2hands.utils.errors import HandModelError
from im2hands.utils.io import write_pickle

logger = logging.getLogger(__name__)

ENV_MANO_DIR = "IM2HANDS_MANO_DIR"
"""Environment variable naming the hand-model folder (used when no folder is passed)."""

DEFAULT_MODEL_DIR: Path = Path(__file__).resolve().parents[1] / "assets" / "handmodel"
"""The open hand model shipped with the package (MANO format, freely licensed)."""

DEFAULT_MODEL_NAME = "mano"
"""Name reported for files without a ``model_name`` key (the licensed MANO files)."""

_REQUIRED_SHAPES: dict[str, tuple[Any, ...]] = {
    # key: expected shape; "V"/"F" are per-file sizes, ">=10" a lower bound.
    "v_template": ("V", 3),
    "f": ("F", 3),
    "J_regressor": (NUM_JOINTS, "V"),
    "weights": ("V", NUM_JOINTS),
    "kintree_table": (2, NUM_JOINTS),
    "shapedirs": ("V", 3, f">={NUM_BETAS}"),
    "posedirs": ("V", 3, 9 * (NUM_JOINTS - 1)),
    "hands_components": (45, 45),
    "hands_mean": (45,),
}
_INT_KEYS = ("f", "kintree_table", "fingertip_vertex_ids")


def side_file_stem(side: str) -> str:
    """``"MANO_RIGHT"`` or ``"MANO_LEFT"`` for ``side`` in ``{"right", "left"}``."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    return f"MANO_{side.upper()}"


def model_file(mano_dir: str | os.PathLike, side: str) -> Path:
    """Path of one side's file in ``mano_dir``: ``MANO_<SIDE>.pkl``, else ``MANO_<SIDE>.npz``.

    Raises:
        HandModelError: neither file exists; the message names both paths.
    """
    stem = side_file_stem(side)
    candidates = [Path(mano_dir) / f"{stem}.pkl", Path(mano_dir) / f"{stem}.npz"]
    for path in candidates:
        if path.is_file():
            return path
    raise HandModelError(
        f"hand-model file {candidates[0]} not found (nor {candidates[1].name}); the folder must hold "
        "MANO_RIGHT.pkl and MANO_LEFT.pkl (licensed MANO files, or plain copies made by "
        "im2hands.hands.mano_io.convert_mano)"
    )


def resolve_mano_dir(mano_dir: str | os.PathLike | None = None, *, source: str = "model_dir") -> Path:
    """The hand-model folder: ``mano_dir``, else ``$IM2HANDS_MANO_DIR``, else the open model.

    Args:
        mano_dir: folder holding ``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl`` (or ``None``).
        source: how the user gave ``mano_dir`` (a command-line option such as ``--mano-dir``, a
            config key such as ``hand_model.mano_dir``, or an argument name), named in errors.

    Returns:
        The folder, as given (``~`` expanded).

    Raises:
        HandModelError: the folder, or one of its two files, is missing; the message names
            the path, where it came from, and how to fix it.
    """
    if mano_dir is not None and str(mano_dir) != "":
        path, origin = Path(mano_dir).expanduser(), source
    elif os.environ.get(ENV_MANO_DIR):
        path, origin = Path(os.environ[ENV_MANO_DIR]).expanduser(), f"${ENV_MANO_DIR}"
    else:
        path, origin = DEFAULT_MODEL_DIR, "the default (the open hand model shipped with im2hands)"
    hint = f"{source} <folder>" if source.startswith("-") else f"{source}=<folder>"
    fix = (
        f"pass {hint} or set {ENV_MANO_DIR}=<folder> to a folder holding MANO_RIGHT.pkl "
        "and MANO_LEFT.pkl; with neither set, the open model in im2hands/assets/handmodel/ is used "
        "(reinstall im2hands if it is missing)"
    )
    if not path.is_dir():
        kind = "is a file, not a folder" if path.exists() else "does not exist"
        raise HandModelError(f"hand-model folder {path} (from {origin}) {kind}; {fix}")
    for side in ("right", "left"):
        try:
            model_file(path, side)
        except HandModelError as err:
            raise HandModelError(f"{err} (folder from {origin}); {fix}") from None
    return path


# --------------------------------------------------------------------------- unpickling


class _ChumpyStub:
    """Stands in for any chumpy class while unpickling; keeps the pickled state."""

    chumpy_class = "chumpy"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.state = dict(state) if isinstance(state, dict) else {"x": state}


_STUB_CLASSES: dict[str, type] = {}

_SAFE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"),
    ("copyreg", "_reconstructor"), ("collections", "OrderedDict"), ("_codecs", "encode"),
    *(("builtins", n) for n in ("object", "list", "dict", "tuple", "set", "frozenset", "slice",
                                "complex", "bytearray", "int", "float", "str", "bool")),
}
_RENAMED_MODULES = {"copy_reg": "copyreg", "__builtin__": "builtins"}


def _stub_class(module: str, name: str) -> type:
    full = f"{module}.{name}"
    if full not in _STUB_CLASSES:
        _STUB_CLASSES[full] = type(f"Stub_{name}", (_ChumpyStub,), {"chumpy_class": full})
    return _STUB_CLASSES[full]


class _MANOUnpickler(pickle.Unpickler):
    """Unpickler mapping chumpy classes to stubs and refusing anything but plain data types."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return _stub_class(module, name)
        if module.startswith("scipy.sparse"):
            cls = getattr(scipy.sparse, name, None)  # old private paths (scipy.sparse.csc) moved
            if isinstance(cls, type) and name.endswith(("_matrix", "_array")):
                return cls
        module = _RENAMED_MODULES.get(module, module)
        if module.startswith("numpy.core."):  # numpy 1.x paths, renamed in numpy 2
            module = "numpy._core." + module[len("numpy.core."):]
        if (module, name) in _SAFE_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
            return getattr(importlib.import_module(module), name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (not plain data)")


def _chumpy_value(stub: _ChumpyStub, where: str) -> np.ndarray:
    """The array a chumpy object evaluates to: its ``x``, or a known wrapper of its ``a``."""
    state, cls = stub.state, stub.chumpy_class
    if "x" in state:
        return np.asarray(_to_plain(state["x"], where))
    if "a" in state:
        a = np.asarray(_to_plain(state["a"], where))
        short = cls.rsplit(".", 1)[-1]
        if short == "Select":
            out = a.ravel()[np.asarray(state["idxs"])]
            shape = state.get("preferred_shape")
            return out.reshape(shape) if shape is not None else out
        if short == "Reshape" and "newshape" in state:
            return a.reshape(state["newshape"])
        if short == "Transpose":
            return a.transpose(state.get("axes"))
        if short == "Ravel":
            return a.ravel()
        public = {k for k in state if not k.startswith("_")}
        if public == {"a"}:
            logger.warning("%s: unknown chumpy wrapper %s; using its input 'a' as the value", where, cls)
            return a
    raise HandModelError(
        f"{where}: cannot recover the value of chumpy object {cls} "
        f"(pickled state keys: {sorted(state)}; expected 'x', or 'a' for a known wrapper)"
    )


def _to_plain(value: Any, where: str) -> Any:
    """Replace chumpy stubs by arrays and scipy-sparse matrices by dense arrays."""
    if isinstance(value, _ChumpyStub):
        return _chumpy_value(value, where)
    if scipy.sparse.issparse(value):
        try:
            return np.asarray(value.toarray())
        except Exception as err:  # a sparse matrix pickled by an incompatible scipy
            raise HandModelError(f"{where}: cannot densify sparse matrix ({err})") from err
    if isinstance(value, (list, tuple)):
        return type(value)(_to_plain(v, where) for v in value)
    if isinstance(value, dict):
        return {k: _to_plain(v, where) for k, v in value.items()}
    return value


def _read_raw(path: Path) -> dict[str, Any]:
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as err:
            raise HandModelError(f"cannot read hand-model file {path}: {err}") from err
    try:
        with open(path, "rb") as fh:
            data = _MANOUnpickler(fh, encoding="latin1").load()
    except Exception as err:  # any unpickling failure: name the file
        raise HandModelError(f"cannot read hand-model file {path}: {type(err).__name__}: {err}") from err
    if not isinstance(data, dict):
        raise HandModelError(f"hand-model file {path} holds a {type(data).__name__}, expected a dict")
    return data


def _check_shape(path: Path, key: str, arr: np.ndarray, sizes: dict[str, int]) -> None:
    expected = _REQUIRED_SHAPES[key]
    ok = arr.ndim == len(expected)
    for dim, want in zip(arr.shape, expected):
        if isinstance(want, int):
            ok = ok and dim == want
        elif want.startswith(">="):
            ok = ok and dim >= int(want[2:])
        else:
            ok = ok and sizes.setdefault(want, dim) == dim
    if not ok:
        shown = ", ".join(str(sizes.get(w, w)) if isinstance(w, str) else str(w) for w in expected)
        raise HandModelError(f"hand-model file {path}: key {key!r} has shape {arr.shape}, expected ({shown})")


def load_mano_file(path: str | os.PathLike) -> dict[str, Any]:
    """Load one MANO-format file (licensed chumpy pickle, plain pickle or ``.npz``) into numpy.

    Args:
        path: a ``.pkl`` (read with ``encoding="latin1"``) or ``.npz`` file.

    Returns:
        A dict with every key of the file. Arrays are plain numpy: floats as float64, ``f``,
        ``kintree_table`` (and ``fingertip_vertex_ids`` if present) as int64. Required keys and
        shapes (``V`` vertices, ``F`` faces): ``v_template (V,3)``, ``f (F,3)``,
        ``J_regressor (16,V)`` (dense), ``weights (V,16)``, ``kintree_table (2,16)``,
        ``shapedirs (V,3,>=10)``, ``posedirs (V,3,135)``, ``hands_components (45,45)``,
        ``hands_mean (45,)``. ``model_name`` is always set: the file's own, else ``"mano"``.

    Raises:
        HandModelError: unreadable file, or a missing or malformed key (the message names both).
    """
    path = Path(path)
    if not path.is_file():
        raise HandModelError(f"hand-model file {path} does not exist")
    data = {str(k): _to_plain(v, f"{path} key {k!r}") for k, v in _read_raw(path).items()}
    missing = [k for k in _REQUIRED_SHAPES if k not in data]
    if missing:
        raise HandModelError(f"hand-model file {path} lacks required key(s) {', '.join(map(repr, missing))}")
    sizes: dict[str, int] = {}
    for key in (*_REQUIRED_SHAPES, "fingertip_vertex_ids"):
        if key not in data:
            continue
        try:
            arr = np.asarray(data[key], dtype=np.int64 if key in _INT_KEYS else np.float64)
        except (TypeError, ValueError) as err:
            raise HandModelError(f"hand-model file {path}: key {key!r} is not numeric ({err})") from err
        if key in _REQUIRED_SHAPES:
            _check_shape(path, key, arr, sizes)
        if arr.dtype == np.float64 and not np.isfinite(arr).all():
            raise HandModelError(f"hand-model file {path}: key {key!r} holds NaN or inf")
        data[key] = arr
    nv = sizes["V"]
    for key in ("f", "fingertip_vertex_ids"):
        if key in data and data[key].size and (data[key].min() < 0 or data[key].max() >= nv):
            raise HandModelError(f"hand-model file {path}: key {key!r} indexes outside the {nv} vertices")
    parents = data["kintree_table"][0, 1:]
    if (parents < 0).any() or (parents >= np.arange(1, NUM_JOINTS)).any():
        raise HandModelError(
            f"hand-model file {path}: key 'kintree_table' row 0 must give each joint a parent with a "
            f"smaller index, got {data['kintree_table'][0].tolist()}"
        )
    data["model_name"] = model_name_of(data)
    return data


def model_name_of(data: dict[str, Any]) -> str:
    """Which hand model produced a file: its ``model_name`` key, else ``"mano"``."""
    name = data.get("model_name")
    if name is None:
        return DEFAULT_MODEL_NAME
    name = np.asarray(name)
    return str(name.item() if name.size == 1 else name)


def shapedirs_x_bug(left: dict[str, Any], right: dict[str, Any]) -> bool:
    """Whether the left file has MANO's known bug: x shape directions equal to the right's.

    The licensed MANO_LEFT.pkl stores ``shapedirs[:, 0, :]`` unmirrored, so a shape change
    moves the left hand's vertices along +x like the right's. Detected as
    ``|left.shapedirs[:,0,:] - right.shapedirs[:,0,:]|.sum() < 1``.
    """
    l_dirs, r_dirs = left["shapedirs"], right["shapedirs"]
    if l_dirs.shape != r_dirs.shape:
        return False
    return float(np.abs(l_dirs[:, 0, :] - r_dirs[:, 0, :]).sum()) < 1.0


def fix_left_shapedirs(left: dict[str, Any], right: dict[str, Any], *, source: str = "") -> dict[str, Any]:
    """Return ``left`` with ``shapedirs[:, 0, :]`` negated if :func:`shapedirs_x_bug` holds.

    ``left`` itself is not modified. The fix is logged (INFO) when applied.
    """
    if not shapedirs_x_bug(left, right):
        return left
    fixed = dict(left)
    fixed["shapedirs"] = left["shapedirs"].copy()
    fixed["shapedirs"][:, 0, :] *= -1.0
    logger.info(
        "%s: left shapedirs x-component equals the right's (known MANO bug); negated it",
        source or "left hand model",
    )
    return fixed


def convert_mano(
    src_dir: str | os.PathLike | None, out_dir: str | os.PathLike, *, src_name: str = "--src"
) -> list[Path]:
    """Write plain-numpy copies of ``MANO_LEFT`` and ``MANO_RIGHT`` from ``src_dir`` to ``out_dir``.

    The copies are pickles (protocol 4) of dicts of numpy arrays and strings: plain
    ``pickle.load`` (and smplx) reads them without chumpy. Arrays are kept as in the source
    (no left-hand fix; :class:`~im2hands.hands.layer.HandModel` applies it when loading), with
    ``model_name`` added. Each file is written atomically.

    Args:
        src_dir: folder holding the licensed (or any MANO-format) files; ``None`` or ``""``:
            the folder :func:`resolve_mano_dir` gives (``$IM2HANDS_MANO_DIR``, else the open model).
        out_dir: destination folder, created if needed; may equal ``src_dir``.
        src_name: how the user gave ``src_dir``, named in the error messages. The default is
            the option of ``im2hands mano convert``; Python callers may pass ``"src_dir"``.

    Returns:
        The written paths, ``[out_dir/MANO_LEFT.pkl, out_dir/MANO_RIGHT.pkl]``.

    Raises:
        HandModelError: the source folder or one of its files is missing (the message names
            the path and ``src_name``), or a file is unreadable (the message names the file).
    """
    src = resolve_mano_dir(src_dir, source=src_name)
    arrays = {side: load_mano_file(model_file(src, side)) for side in SIDES}  # read both first
    written = []
    for side in SIDES:
        dst = Path(out_dir) / f"{side_file_stem(side)}.pkl"
        write_pickle(dst, arrays[side])
        logger.info("wrote plain-numpy hand model %s", dst)
        written.append(dst)
    return written
