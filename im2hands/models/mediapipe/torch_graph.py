"""Execute a parsed TFLite graph (:class:`~im2hands.models.mediapipe.tflite_graph.Graph`) in torch.

:class:`TFLiteModule` turns every float constant a layer consumes (conv and dense weights, biases,
PReLU slopes) into an ``nn.Parameter`` in torch layout, so the network can be fine-tuned like any
other module, and runs the ops in file order. Activations are NCHW inside (4-D tensors); the ops
whose meaning depends on the layout (RESHAPE, CONCATENATION, MEAN, PAD, FULLY_CONNECTED on 4-D
input) translate their TFLite (NHWC) arguments. The graphs are batch-1 files; every op here runs
per sample, so any batch size works. Device-agnostic: ``.to(device)`` moves everything.

TFLite conventions reproduced (the pitfalls of a port):

- ``SAME`` padding is asymmetric when the total is odd (the extra row/column goes right/bottom).
- Conv kernels are OHWI (-> OIHW); depthwise kernels are 1HWC (-> C,1,H,W with ``groups``).
- PReLU slopes are HWC-broadcast (``[1, 1, C]`` -> per channel).
- RESIZE_BILINEAR follows the ``align_corners`` / ``half_pixel_centers`` flags of the op.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from im2hands.models.mediapipe.tflite_graph import Graph, Op
from im2hands.utils.errors import Im2HandsError

_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF ``SAME`` padding of one spatial dimension: (before, after); the odd extra goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def conv_weight_to_torch(w: np.ndarray) -> np.ndarray:
    """CONV_2D kernel OHWI -> torch OIHW."""
    return np.ascontiguousarray(w.transpose(0, 3, 1, 2))


def depthwise_weight_to_torch(w: np.ndarray) -> np.ndarray:
    """DEPTHWISE_CONV_2D kernel 1HWC (C = in_channels x multiplier) -> torch (C, 1, H, W)."""
    return np.ascontiguousarray(w.transpose(3, 0, 1, 2))


def broadcast_constant_to_torch(c: np.ndarray, rank: int) -> np.ndarray:
    """A constant that broadcasts against a TFLite activation of ``rank``, in our (NCHW) layout.

    Rank-4 activations: a trailing-dims constant ``[..., H, W, C]`` becomes ``[C, H, W]``-aligned
    (``[C]`` -> ``[C, 1, 1]``, ``[1, 1, C]`` -> ``[C, 1, 1]``, ``[1, H, W, C]`` -> ``[1, C, H, W]``).
    Other ranks keep their layout.
    """
    if rank != 4 or c.ndim == 0:
        return c
    c4 = c.reshape((1,) * (4 - c.ndim) + c.shape)
    return np.ascontiguousarray(c4.transpose(0, 3, 1, 2))


def resize_bilinear(x: Tensor, size: tuple[int, int], align_corners: bool, half_pixel_centers: bool) -> Tensor:
    """TFLite RESIZE_BILINEAR of an NCHW tensor to ``size`` = (H, W), with the op's two flags."""

    def coords(n_in: int, n_out: int) -> tuple[Tensor, Tensor, Tensor]:
        scale = (n_in - 1) / (n_out - 1) if align_corners and n_out > 1 else n_in / n_out
        i = torch.arange(n_out, device=x.device, dtype=torch.float32)
        src = (i + 0.5) * scale - 0.5 if half_pixel_centers else i * scale
        lo = torch.floor(src)
        frac = (src - lo).to(x.dtype)
        i0 = lo.clamp(min=0).long()
        i1 = torch.ceil(src).clamp(max=n_in - 1).long()
        return i0, i1, frac

    y0, y1, fy = coords(x.shape[2], size[0])
    x0, x1, fx = coords(x.shape[3], size[1])
    top, bottom = x[:, :, y0, :], x[:, :, y1, :]
    fy = fy.view(1, 1, -1, 1)
    rows = top + (bottom - top) * fy  # (B, C, H_out, W_in)
    left, right = rows[..., x0], rows[..., x1]
    return left + (right - left) * fx.view(1, 1, 1, -1)


_ACT: dict[str, Callable[[Tensor], Tensor]] = {
    "none": lambda t: t,
    "relu": F.relu,
    "relu6": lambda t: t.clamp(0.0, 6.0),
    "relu_n1_to_1": lambda t: t.clamp(-1.0, 1.0),
    "tanh": torch.tanh,
}


def _to_tflite_layout(t: Tensor) -> Tensor:
    return t.permute(0, 2, 3, 1) if t.dim() == 4 else t


def _from_tflite_layout(t: Tensor) -> Tensor:
    return t.permute(0, 3, 1, 2) if t.dim() == 4 else t


class TFLiteModule(nn.Module):
    """A TFLite graph as an ``nn.Module``; float weights are float32 ``nn.Parameter``s in torch layout.

    ``forward(x)`` takes the graph's one image input as NCHW ``(B, C, H, W)`` float32 and returns the
    graph outputs in file order, in TFLite layout with the batch size B in place of 1.
    """

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        if len(graph.inputs) != 1 or len(graph.tensors[graph.inputs[0]].shape) != 4:
            raise Im2HandsError("only graphs with one 4-D (image) input are supported")
        self.input_index = graph.inputs[0]
        self.output_indices = tuple(graph.outputs)
        self.output_names = tuple(graph.tensors[i].name for i in graph.outputs)
        self.ranks = {i: len(t.shape) for i, t in enumerate(graph.tensors)}
        self.weights = nn.ParameterDict()
        self.ops: list[Op] = []
        for op in graph.ops:
            self.ops.append(op)
            self._register_constants(graph, op)

    # ------------------------------------------------------------------ construction
    def _param(self, graph: Graph, index: int, convert: Callable[[np.ndarray], np.ndarray]) -> None:
        key = f"t{index}"
        data = graph.tensors[index].data
        if key not in self.weights and data is not None:
            self.weights[key] = nn.Parameter(torch.from_numpy(convert(data.astype(np.float32))))

    def _int_constant(self, graph: Graph, op: Op, pos: int, name: str) -> None:
        data = graph.tensors[op.inputs[pos]].data
        if data is None:
            raise Im2HandsError(f"{op.kind}: its {name} must be a constant")
        op.options[name] = [int(v) for v in np.asarray(data).reshape(-1)] if data.ndim <= 1 else data.tolist()

    def _register_constants(self, graph: Graph, op: Op) -> None:
        same = lambda a: a  # noqa: E731
        if op.kind == "CONV_2D":
            self._param(graph, op.inputs[1], conv_weight_to_torch)
        elif op.kind == "DEPTHWISE_CONV_2D":
            self._param(graph, op.inputs[1], depthwise_weight_to_torch)
        elif op.kind == "FULLY_CONNECTED":
            self._param(graph, op.inputs[1], same)
        elif op.kind in ("PRELU", "ADD"):
            rank = max((self.ranks[i] for i in op.inputs if graph.tensors[i].data is None), default=4)
            for i in op.inputs:
                self._param(graph, i, lambda a: broadcast_constant_to_torch(a, rank))
        elif op.kind == "PAD":
            self._int_constant(graph, op, 1, "paddings")
        elif op.kind == "RESIZE_BILINEAR":
            self._int_constant(graph, op, 1, "size")
        elif op.kind == "MEAN":
            self._int_constant(graph, op, 1, "axes")
        elif op.kind == "RESHAPE":
            if len(op.inputs) > 1 and graph.tensors[op.inputs[1]].data is not None:
                self._int_constant(graph, op, 1, "new_shape")
            else:
                op.options["new_shape"] = list(graph.tensors[op.outputs[0]].shape)
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(op.inputs) > 2 and op.inputs[2] >= 0:
            self._param(graph, op.inputs[2], same)
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            k = graph.tensors[op.inputs[1]].shape
            op.options["kernel"] = (k[1], k[2])

    # ------------------------------------------------------------------ execution
    def _get(self, values: dict[int, Tensor], index: int) -> Tensor:
        if index in values:
            return values[index]
        return self.weights[f"t{index}"]

    def _spatial_pad(self, x: Tensor, op: Op, value: float = 0.0) -> tuple[Tensor, tuple[int, int]]:
        """Apply SAME padding; returns the tensor and the symmetric padding left for the layer."""
        if op.options["padding"] != "same":
            return x, (0, 0)
        (kh, kw), (sh, sw) = op.options["kernel"], op.options["stride"]
        dh, dw = op.options.get("dilation", (1, 1))
        ph, pw = same_padding(x.shape[2], kh, sh, dh), same_padding(x.shape[3], kw, sw, dw)
        if ph[0] == ph[1] and pw[0] == pw[1] and value == 0.0:
            return x, (ph[0], pw[0])
        return F.pad(x, (pw[0], pw[1], ph[0], ph[1]), value=value), (0, 0)

    def _run(self, op: Op, values: dict[int, Tensor]) -> Tensor:
        o, k = op.options, op.kind
        x = self._get(values, op.inputs[0])
        if k in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = self._get(values, op.inputs[1])
            b = self._get(values, op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            x, pad = self._spatial_pad(x, op)
            groups = x.shape[1] if k == "DEPTHWISE_CONV_2D" else 1
            y = F.conv2d(x, w, b, stride=o["stride"], padding=pad, dilation=o["dilation"], groups=groups)
            return _ACT[o["activation"]](y)
        if k == "MAX_POOL_2D":
            x, pad = self._spatial_pad(x, op, value=-math.inf)
            return _ACT[o["activation"]](F.max_pool2d(x, o["kernel"], o["stride"], padding=pad))
        if k == "ADD":
            return _ACT[o.get("activation", "none")](x + self._get(values, op.inputs[1]))
        if k == "PRELU":
            alpha = self._get(values, op.inputs[1])
            return torch.where(x >= 0, x, x * alpha)
        if k == "LOGISTIC":
            return torch.sigmoid(x)
        if k == "PAD":
            pads = o["paddings"]
            if x.dim() == 4:
                pads = [pads[i] for i in (0, 3, 1, 2)]  # NHWC rows -> NCHW rows
            flat = [v for row in reversed(pads) for v in row]  # F.pad: last dim first
            return F.pad(x, flat)
        if k == "RESIZE_BILINEAR":
            return resize_bilinear(x, tuple(o["size"]), o["align_corners"], o["half_pixel_centers"])
        if k == "RESHAPE":
            shape = list(o["new_shape"])
            shape[0] = x.shape[0] if shape[0] in (1, -1) else shape[0]
            return _from_tflite_layout(_to_tflite_layout(x).reshape(shape))
        if k == "CONCATENATION":
            parts = [self._get(values, i) for i in op.inputs]
            axis = o["axis"] % parts[0].dim()
            axis = _NHWC_TO_NCHW_AXIS[axis] if parts[0].dim() == 4 else axis
            return _ACT[o["activation"]](torch.cat(parts, dim=axis))
        if k == "MEAN":
            axes = [a % x.dim() for a in o["axes"]]
            axes = [_NHWC_TO_NCHW_AXIS[a] for a in axes] if x.dim() == 4 else axes
            y = x.mean(dim=axes, keepdim=o["keep_dims"])
            return y
        if k == "FULLY_CONNECTED":
            w = self._get(values, op.inputs[1])
            b = self._get(values, op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            if x.dim() > 2 and not o["keep_num_dims"]:
                x = _to_tflite_layout(x).reshape(x.shape[0], -1)
            return _ACT[o["activation"]](F.linear(x, w, b))
        raise Im2HandsError(f"op {k} is not implemented")  # read_tflite rejects these earlier

    def forward(self, x: Tensor, extra: tuple[int, ...] = ()) -> tuple[Tensor, ...]:
        """Run the graph on ``x`` (B, C, H, W) float32; returns the outputs (TFLite layout, batch B),
        then the tensors numbered ``extra`` (inner feature maps, torch layout NCHW)."""
        values: dict[int, Tensor] = {self.input_index: x}
        for op in self.ops:
            values[op.outputs[0]] = self._run(op, values)
        return tuple(_to_tflite_layout(values[i]) for i in self.output_indices) + tuple(values[i] for i in extra)

    def producer(self, index: int) -> Op | None:
        """The op that writes tensor ``index`` (None for the input and constants)."""
        return next((op for op in self.ops if op.outputs[0] == index), None)
