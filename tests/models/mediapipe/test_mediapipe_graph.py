"""The TFLite-graph executor's pieces against naive NHWC references (no MediaPipe files needed).

Each test builds a tiny :class:`Graph` by hand, in TFLite's layouts (NHWC activations, OHWI and
1HWC kernels), and compares :class:`TFLiteModule` with a direct numpy evaluation of TF's definitions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from im2hands.models.mediapipe.tflite_graph import Graph, Op, Tensor
from im2hands.models.mediapipe.torch_graph import (
    TFLiteModule, conv_weight_to_torch, depthwise_weight_to_torch, resize_bilinear, same_padding,
)

RNG = np.random.default_rng(0)


def _graph(x_shape, ops, consts, shapes) -> Graph:
    """Tensor 0 is the NHWC input; ``consts`` {index: array}; ``shapes`` {index: shape} of activations."""
    n = 1 + max([*consts, *shapes, *(o for op in ops for o in op.outputs)])
    tensors = [Tensor(f"t{i}", (), np.float32) for i in range(n)]
    tensors[0] = Tensor("input", tuple(x_shape), np.float32)
    for i, c in consts.items():
        tensors[i] = Tensor(f"t{i}", c.shape, c.dtype.type, c)
    for i, s in shapes.items():
        tensors[i] = Tensor(f"t{i}", tuple(s), np.float32)
    return Graph(tensors, ops, (0,), (ops[-1].outputs[0],))


def _run(graph: Graph, x_nhwc: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        (y,) = TFLiteModule(graph)(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2))
    return y.numpy()


def _naive_conv_nhwc(x, w_ohwi, b, stride, pad_before, out_hw, depthwise=False):
    """TF convolution by its definition, with explicit zero padding before (the rest is after)."""
    n, h, w, c = x.shape
    kh, kw = w_ohwi.shape[1:3]
    oh, ow = out_hw
    out_c = w_ohwi.shape[3] if depthwise else w_ohwi.shape[0]
    y = np.zeros((n, oh, ow, out_c))
    for i in range(oh):
        for j in range(ow):
            for di in range(kh):
                for dj in range(kw):
                    yi, xj = i * stride - pad_before[0] + di, j * stride - pad_before[1] + dj
                    if 0 <= yi < h and 0 <= xj < w:
                        if depthwise:
                            y[:, i, j, :] += x[:, yi, xj, :] * w_ohwi[0, di, dj, :]
                        else:
                            y[:, i, j, :] += x[:, yi, xj, :] @ w_ohwi[:, di, dj, :].T
    return y + b


@pytest.mark.parametrize("size,kernel,stride,expected", [
    (224, 3, 2, (0, 1)), (112, 5, 2, (1, 2)), (7, 5, 1, (2, 2)), (96, 2, 2, (0, 0)), (5, 3, 2, (1, 1)), (6, 1, 1, (0, 0)),
])
def test_same_padding_analytic_cases(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected
    before, after = expected
    assert (size + before + after - kernel) // stride + 1 == math.ceil(size / stride)


def test_kernel_layout_conversions():
    w = RNG.standard_normal((4, 3, 5, 2)).astype(np.float32)  # OHWI
    t = conv_weight_to_torch(w)
    assert t.shape == (4, 2, 3, 5) and t[1, 0, 2, 4] == w[1, 2, 4, 0]
    d = RNG.standard_normal((1, 3, 3, 6)).astype(np.float32)  # 1HWC
    td = depthwise_weight_to_torch(d)
    assert td.shape == (6, 1, 3, 3) and td[5, 0, 1, 2] == d[0, 1, 2, 5]


@pytest.mark.parametrize("size,stride,kernel", [(7, 2, 3), (8, 2, 3), (9, 2, 5), (6, 1, 3)])
@pytest.mark.parametrize("depthwise", [False, True])
def test_conv_same_matches_naive(size, stride, kernel, depthwise):
    c_in = 3
    x = RNG.standard_normal((2, size, size + 1, c_in)).astype(np.float32)
    w = RNG.standard_normal((1, kernel, kernel, c_in) if depthwise else (4, kernel, kernel, c_in)).astype(np.float32)
    b = RNG.standard_normal(w.shape[3] if depthwise else 4).astype(np.float32)
    opts = {"padding": "same", "stride": (stride, stride), "dilation": (1, 1), "activation": "none"}
    kind = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
    out_hw = (math.ceil(size / stride), math.ceil((size + 1) / stride))
    g = _graph(x.shape, [Op(kind, (0, 1, 2), (3,), dict(opts))], {1: w, 2: b}, {3: (1, *out_hw, len(b))})
    pad = (same_padding(size, kernel, stride)[0], same_padding(size + 1, kernel, stride)[0])
    ref = _naive_conv_nhwc(x.astype(np.float64), w, b, stride, pad, out_hw, depthwise)
    np.testing.assert_allclose(_run(g, x), ref, rtol=0, atol=1e-4)


def test_fused_relu6_prelu_add():
    x = RNG.standard_normal((1, 4, 4, 2)).astype(np.float32) * 4
    w = RNG.standard_normal((2, 1, 1, 2)).astype(np.float32)
    b = np.zeros(2, np.float32)
    alpha = np.array([[[0.1, -0.5]]], np.float32)  # [1, 1, C]
    ops = [
        Op("CONV_2D", (0, 1, 2), (3,), {"padding": "valid", "stride": (1, 1), "dilation": (1, 1), "activation": "relu6"}),
        Op("PRELU", (0, 4), (5,), {}),
        Op("ADD", (3, 5), (6,), {"activation": "none"}),
    ]
    g = _graph(x.shape, ops, {1: w, 2: b, 4: alpha}, {3: x.shape, 5: x.shape, 6: x.shape})
    conv = np.clip(x @ w[:, 0, 0, :].T, 0, 6)
    prelu = np.where(x >= 0, x, x * alpha.reshape(1, 1, 1, 2))
    np.testing.assert_allclose(_run(g, x), conv + prelu, rtol=0, atol=1e-5)


def test_layout_ops_reshape_concat_pad_mean_dense():
    """RESHAPE / CONCATENATION / PAD / MEAN / FULLY_CONNECTED follow NHWC semantics on NCHW tensors."""
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    shape = np.array([1, 12, 5], np.int32)
    pads = np.array([[0, 0], [1, 0], [0, 2], [0, 3]], np.int32)
    axes = np.array([1, 2], np.int32)
    w = RNG.standard_normal((6, 8)).astype(np.float32)
    bias = RNG.standard_normal(6).astype(np.float32)
    ops_a = [Op("RESHAPE", (0, 1), (2,), {}), Op("CONCATENATION", (2, 2), (3,), {"axis": 1, "activation": "none"})]
    g = _graph(x.shape, ops_a, {1: shape}, {2: (1, 12, 5), 3: (1, 24, 5)})
    r = x.reshape(2, 12, 5)
    np.testing.assert_allclose(_run(g, x), np.concatenate([r, r], axis=1), rtol=0, atol=0)
    ops_b = [Op("PAD", (0, 1), (2,), {}), Op("MEAN", (2, 3), (4,), {"keep_dims": False}),
             Op("FULLY_CONNECTED", (4, 5, 6), (7,), {"activation": "relu", "keep_num_dims": False})]
    g = _graph(x.shape, ops_b, {1: pads, 3: axes, 5: w, 6: bias}, {2: (1, 4, 6, 8), 4: (1, 8), 7: (1, 6)})
    m = np.pad(x, pads).mean(axis=(1, 2))
    np.testing.assert_allclose(_run(g, x), np.maximum(m @ w.T + bias, 0), rtol=0, atol=1e-5)
    ops_c = [Op("CONCATENATION", (0, 0), (1,), {"axis": 3, "activation": "none"}), Op("RESHAPE", (1, 2), (3,), {})]
    g = _graph(x.shape, ops_c, {2: np.array([1, 120], np.int32)}, {1: (1, 3, 4, 10), 3: (1, 120)})
    np.testing.assert_allclose(_run(g, x), np.concatenate([x, x], axis=3).reshape(2, 120), rtol=0, atol=0)


def test_max_pool_same_odd_size():
    x = RNG.standard_normal((1, 5, 5, 2)).astype(np.float32)
    op = Op("MAX_POOL_2D", (0,), (1,), {"padding": "same", "stride": (2, 2), "kernel": (2, 2), "activation": "none"})
    out = _run(_graph(x.shape, [op], {}, {1: (1, 3, 3, 2)}), x)
    padded = np.pad(x, [(0, 0), (0, 1), (0, 1), (0, 0)], constant_values=-np.inf)  # (0, 1): after only
    ref = padded.reshape(1, 3, 2, 3, 2, 2).max(axis=(2, 4))
    np.testing.assert_array_equal(out, ref)


def _naive_resize(x, out_h, out_w, align_corners, half_pixel):
    n, c, h, w = x.shape
    y = np.zeros((n, c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            sy = (h - 1) / (out_h - 1) if align_corners and out_h > 1 else h / out_h
            sx = (w - 1) / (out_w - 1) if align_corners and out_w > 1 else w / out_w
            fy = (i + 0.5) * sy - 0.5 if half_pixel else i * sy
            fx = (j + 0.5) * sx - 0.5 if half_pixel else j * sx
            y0, x0 = max(math.floor(fy), 0), max(math.floor(fx), 0)
            y1, x1 = min(math.ceil(fy), h - 1), min(math.ceil(fx), w - 1)
            dy, dx = fy - math.floor(fy), fx - math.floor(fx)
            y[:, :, i, j] = (x[:, :, y0, x0] * (1 - dy) * (1 - dx) + x[:, :, y1, x0] * dy * (1 - dx)
                             + x[:, :, y0, x1] * (1 - dy) * dx + x[:, :, y1, x1] * dy * dx)
    return y


@pytest.mark.parametrize("align_corners,half_pixel", [(False, True), (True, False), (False, False)])
def test_resize_bilinear_flags(align_corners, half_pixel):
    x = torch.from_numpy(RNG.standard_normal((1, 2, 6, 5)).astype(np.float32))
    y = resize_bilinear(x, (12, 9), align_corners, half_pixel)
    np.testing.assert_allclose(y.numpy(), _naive_resize(x.double().numpy(), 12, 9, align_corners, half_pixel),
                               rtol=0, atol=1e-5)
    if not align_corners and half_pixel:  # the palm detector's setting is torch's align_corners=False
        torch.testing.assert_close(y, F.interpolate(x, size=(12, 9), mode="bilinear", align_corners=False))


def test_weights_are_parameters_and_device_agnostic():
    x = RNG.standard_normal((1, 4, 4, 2)).astype(np.float32)
    w = RNG.standard_normal((3, 3, 3, 2)).astype(np.float16)  # FP16 constants become float32 parameters
    op = Op("CONV_2D", (0, 1), (2,), {"padding": "same", "stride": (1, 1), "dilation": (1, 1), "activation": "none"})
    m = TFLiteModule(_graph(x.shape, [op], {1: w}, {2: (1, 4, 4, 3)}))
    params = list(m.parameters())
    assert len(params) == 1 and params[0].dtype == torch.float32 and params[0].shape == (3, 2, 3, 3)
    m = m.to(torch.float32)
    (y,) = m(torch.from_numpy(x).permute(0, 3, 1, 2))
    y.sum().backward()
    assert params[0].grad is not None and params[0].grad.abs().sum() > 0
