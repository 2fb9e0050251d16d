"""Read a ``.tflite`` flatbuffer into a plain op list (numpy constants, dict options).

The parsing uses the PyPI ``tflite`` package (generated flatbuffer accessors of the TFLite schema).
What comes out is independent of it: :class:`Graph` holds every tensor's shape and, for constants,
its data as a numpy array; FP16 constants behind a ``DEQUANTIZE`` op are folded into float32
constants (exactly what the TFLite runtime computes), so the op list holds only the ops that do
work. Layouts are TFLite's: activations NHWC, conv kernels OHWI, depthwise kernels 1HWC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from im2hands.utils.errors import Im2HandsError

# TFLite TensorType -> numpy dtype (the types these graphs use, and a few more).
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8}
# ActivationFunctionType
ACTIVATIONS = {0: "none", 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh"}
# Padding
PADDINGS = {0: "same", 1: "valid"}

SUPPORTED_OPS: tuple[str, ...] = (
    "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD", "MAX_POOL_2D", "RESIZE_BILINEAR", "PRELU", "RESHAPE",
    "CONCATENATION", "FULLY_CONNECTED", "LOGISTIC", "MEAN",
)
"""The ops :mod:`~im2hands.models.mediapipe.torch_graph` executes (DEQUANTIZE of constants is folded here)."""


@dataclass
class Tensor:
    """One tensor of the graph: name, static shape (TFLite layout), numpy dtype, data for constants."""

    name: str
    shape: tuple[int, ...]
    dtype: Any
    data: np.ndarray | None = None


@dataclass
class Op:
    """One operator: its builtin name (e.g. ``CONV_2D``), input and output tensor indices, options."""

    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    """A one-subgraph TFLite model: tensors, ops in execution order, graph inputs and outputs."""

    tensors: list[Tensor]
    ops: list[Op]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def op_counts(self) -> dict[str, int]:
        """How many ops of each kind (after folding DEQUANTIZE)."""
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.kind] = counts.get(op.kind, 0) + 1
        return counts


def _options(tfl: Any, op: Any, kind: str) -> dict[str, Any]:
    """The builtin options of ``op`` that the executor needs, as a plain dict."""
    table = op.BuiltinOptions()

    def load(cls: Any) -> Any:
        o = cls()
        o.Init(table.Bytes, table.Pos)
        return o

    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o = load(tfl.Conv2DOptions if kind == "CONV_2D" else tfl.DepthwiseConv2DOptions)
        return {
            "padding": PADDINGS[o.Padding()], "stride": (o.StrideH(), o.StrideW()),
            "dilation": (o.DilationHFactor(), o.DilationWFactor()),
            "activation": ACTIVATIONS[o.FusedActivationFunction()],
        }
    if kind == "MAX_POOL_2D":
        o = load(tfl.Pool2DOptions)
        return {
            "padding": PADDINGS[o.Padding()], "stride": (o.StrideH(), o.StrideW()),
            "kernel": (o.FilterHeight(), o.FilterWidth()), "activation": ACTIVATIONS[o.FusedActivationFunction()],
        }
    if kind == "ADD":
        return {"activation": ACTIVATIONS[load(tfl.AddOptions).FusedActivationFunction()]} if table else {}
    if kind == "CONCATENATION":
        o = load(tfl.ConcatenationOptions)
        return {"axis": o.Axis(), "activation": ACTIVATIONS[o.FusedActivationFunction()]}
    if kind == "RESIZE_BILINEAR":
        o = load(tfl.ResizeBilinearOptions)
        return {"align_corners": bool(o.AlignCorners()), "half_pixel_centers": bool(o.HalfPixelCenters())}
    if kind == "FULLY_CONNECTED":
        o = load(tfl.FullyConnectedOptions)
        if o.WeightsFormat() != 0:
            raise Im2HandsError("FULLY_CONNECTED with shuffled (non-default) weights is not supported")
        return {"activation": ACTIVATIONS[o.FusedActivationFunction()], "keep_num_dims": bool(o.KeepNumDims())}
    if kind == "MEAN":
        return {"keep_dims": bool(load(tfl.ReducerOptions).KeepDims())} if table else {"keep_dims": False}
    return {}


def read_tflite(path: str | Path) -> Graph:
    """Parse the ``.tflite`` file at ``path`` into a :class:`Graph`.

    Raises:
        Im2HandsError: the file is unreadable, has more than one subgraph, or uses an op outside
            :data:`SUPPORTED_OPS` (the message names the ops).
    """
    import tflite as tfl
    from tflite.BuiltinOperator import BuiltinOperator

    op_names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    try:
        buf = Path(path).read_bytes()
        model = tfl.Model.GetRootAsModel(buf, 0)
        n_sub = model.SubgraphsLength()
    except (OSError, ValueError, IndexError) as exc:
        raise Im2HandsError(f"{path} is not a readable .tflite file: {exc}") from exc
    if n_sub != 1:
        raise Im2HandsError(f"{path} has {n_sub} subgraphs; only one is supported")
    g = model.Subgraphs(0)

    tensors = []
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        if t.Type() not in _DTYPES:
            raise Im2HandsError(f"{path}: tensor {i} has unsupported TFLite type {t.Type()}")
        dtype = _DTYPES[t.Type()]
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        b = model.Buffers(t.Buffer())
        data = None
        if b is not None and b.DataLength() > 0:
            data = np.frombuffer(b.DataAsNumpy().tobytes(), dtype=dtype).reshape(shape).copy()
        tensors.append(Tensor(t.Name().decode(), shape, dtype, data))

    ops, unsupported = [], set()
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        ins = tuple(int(op.Inputs(j)) for j in range(op.InputsLength()))
        outs = tuple(int(op.Outputs(j)) for j in range(op.OutputsLength()))
        if kind == "DEQUANTIZE" and tensors[ins[0]].data is not None:
            src = tensors[ins[0]]
            if src.dtype != np.float16:
                raise Im2HandsError(f"{path}: DEQUANTIZE of a {np.dtype(src.dtype).name} constant is not supported")
            tensors[outs[0]].data = src.data.astype(np.float32)
            continue
        if kind not in SUPPORTED_OPS:
            unsupported.add(kind)
            continue
        ops.append(Op(kind, ins, outs, _options(tfl, op, kind)))
    if unsupported:
        raise Im2HandsError(f"{path} uses ops the torch port does not implement: {', '.join(sorted(unsupported))}")
    inputs = tuple(int(g.Inputs(j)) for j in range(g.InputsLength()))
    outputs = tuple(int(g.Outputs(j)) for j in range(g.OutputsLength()))
    return Graph(tensors, ops, inputs, outputs)
