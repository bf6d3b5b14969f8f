"""Every op, layer and model gives the same values and gradients on every execution path.

The reference is the plain NumPy path (CPU, fused kernels off). Each case is run again on

* ``cpu-emulate``: NumPy with the fused kernels compiled for the CPU emulation (skipped without g++);
* ``cuda-fused``: CuPy with the fused CUDA kernels (skipped without a GPU);
* ``cuda-unfused``: CuPy with the kernels off, the array-module code alone (skipped without a GPU),

and its output and the gradient of every input must agree to float32 rounding. A case is a function of
tensors; the loss it is differentiated through is ``sum(out * r)`` for a fixed random ``r``, so every
output element carries its own weight into the gradient.
"""

from __future__ import annotations

import os
import shutil
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minifb as mf
from minifb import backend, kernels, models, nn, optim
from minifb import functional as F
from minifb.testing import gradcheck

from strategies import floats64, seeds, shapes, shapes_broadcasting_to

PATHS = [
    pytest.param(("cpu", "emulate"), id="cpu-emulate"),
    pytest.param(("cuda", "cuda"), id="cuda-fused"),
    pytest.param(("cuda", "off"), id="cuda-unfused"),
]


@pytest.fixture(params=PATHS)
def path(request):
    """A (device, kernel mode) pair to compare against the NumPy path; skipped where unavailable."""
    device, mode = request.param
    if device == "cuda" and not backend.cuda_available():
        pytest.skip("needs CuPy and an NVIDIA GPU")
    if mode == "emulate" and shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("needs a C++ compiler for the kernel emulation")
    return device, mode


def _positive(a):
    return np.abs(a) + 0.5


def _labels(n, classes, seed=0):
    return np.random.default_rng(seed).integers(0, classes, size=n)


# name -> (input shapes, transform of the random inputs or None, function of the input tensors)
CASES = {
    "add_broadcast": ([(3, 4, 5), (4, 1)], None, lambda a, b: a + b),
    "sub_broadcast": ([(2, 1, 5), (3, 5)], None, lambda a, b: a - b),
    "mul": ([(3, 4), (3, 4)], None, lambda a, b: a * b),
    "div": ([(3, 4), (4,)], [None, _positive], lambda a, b: a / b),
    "pow_tensor": ([(3, 4), (3, 4)], [_positive, None], lambda a, b: a ** b),
    "pow_scalar": ([(5, 3)], None, lambda a: a ** 3),
    "neg_exp": ([(4, 6)], None, lambda a: F.exp(-a)),
    "log": ([(4, 6)], [_positive], F.log),
    "sqrt": ([(4, 6)], [_positive], F.sqrt),
    "abs": ([(4, 6)], None, F.abs),
    "maximum": ([(4, 6), (6,)], None, F.maximum),
    "minimum": ([(4, 6), (4, 1)], None, F.minimum),
    "where": ([(4, 6), (4, 6)], None, lambda a, b: F.where(a > b, a * 2, b)),
    "clip": ([(5, 7)], None, lambda a: F.clip(a, -0.5, 0.7)),
    "sum_axis": ([(3, 4, 5)], None, lambda a: F.sum(a, axis=(0, 2))),
    "mean_keepdims": ([(3, 4, 5)], None, lambda a: F.mean(a, axis=1, keepdims=True)),
    "max_axis": ([(3, 4, 5)], None, lambda a: F.max(a, axis=2)),
    "min_all": ([(3, 4, 5)], None, lambda a: F.min(a).reshape(1)),
    "matmul_batched": ([(2, 3, 4), (4, 5)], None, F.matmul),
    "linear": ([(6, 5), (7, 5), (7,)], None, F.linear),
    "reshape_transpose": ([(2, 3, 4)], None, lambda a: a.reshape(6, 4).transpose(1, 0) * 1.5),
    "flatten": ([(2, 3, 4, 5)], None, lambda a: F.flatten(a)),
    "getitem_slices": ([(5, 6, 7)], None, lambda a: a[1:4, ::2, -3:]),
    "getitem_fancy_repeated": ([(5, 6)], None, lambda a: a[np.array([0, 3, 3, 1, 0])]),
    "getitem_mask": ([(5, 6)], None, lambda a: a[np.arange(30).reshape(5, 6) % 3 == 0]),
    "concat": ([(2, 3), (4, 3)], None, lambda a, b: F.concat([a, b], axis=0)),
    "stack": ([(2, 3), (2, 3)], None, lambda a, b: F.stack([a, b], axis=1)),
    "pad": ([(2, 3, 4)], None, lambda a: F.pad(a, ((0, 0), (1, 2), (2, 1)), value=0.3)),
    "broadcast_to": ([(3, 1)], None, lambda a: F.broadcast_to(a, (2, 3, 4))),
    "relu": ([(4, 9)], None, F.relu),
    "leaky_relu": ([(4, 9)], None, lambda a: F.leaky_relu(a, 0.1)),
    "sigmoid": ([(4, 9)], None, F.sigmoid),
    "tanh": ([(4, 9)], None, F.tanh),
    "softplus": ([(4, 9)], None, F.softplus),
    "gelu": ([(4, 9)], None, F.gelu),
    "gelu_tanh": ([(4, 9)], None, lambda a: F.gelu(a, approximate="tanh")),
    "softmax": ([(4, 9)], None, lambda a: F.softmax(a, axis=1)),
    "log_softmax_axis0": ([(4, 9)], None, lambda a: F.log_softmax(a, axis=0)),
    **{f"bias_act_{act}": ([(3, 5, 4, 4), (5,)], None, lambda x, b, act=act: F.bias_act(x, b, act))
       for act in ("identity", "relu", "sigmoid", "tanh")},
    "bias_act_dense": ([(6, 7), (7,)], None, lambda x, b: F.bias_act(x, b, "relu")),
    "merge_act": ([(3, 5, 4, 4), (3, 5, 4, 4), (5,)], None, lambda x, fb, b: F.merge_act(x, fb, b, "relu")),
    "lstm_pointwise": ([(3, 16), (3, 16), (3, 4)], None, F.lstm_pointwise),
    "gru_pointwise": ([(3, 12), (3, 12), (3, 4)], None, F.gru_pointwise),
    "cross_entropy": ([(6, 5)], None, lambda a: F.cross_entropy(a, _labels(6, 5)).reshape(1)),
    "cross_entropy_device_labels": (
        [(6, 5)], None,
        lambda a: F.cross_entropy(a, mf.tensor(_labels(6, 5, 1)).to(a.device), reduction="none")),
    "mse_loss": ([(6, 5), (6, 5)], None, lambda a, b: F.mse_loss(a, b).reshape(1)),
    "bce_with_logits": ([(6, 5), (6, 5)], [None, lambda t: (t > 0).astype(t.dtype)],
                        lambda a, t: F.binary_cross_entropy_with_logits(a, t, reduction="sum").reshape(1)),
    "conv2d": ([(2, 3, 9, 8), (4, 3, 3, 3), (4,)], None, lambda x, w, b: F.conv2d(x, w, b, padding=1)),
    "conv2d_strided_dilated": ([(2, 4, 11, 10), (6, 2, 3, 2)], None,
                               lambda x, w: F.conv2d(x, w, stride=(2, 1), padding=(1, 2), dilation=2, groups=2)),
    "conv_transpose2d_k4s2p1": ([(2, 6, 7, 7), (6, 3, 4, 4), (3,)], None,
                                lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1)),
    "conv_transpose2d_general": ([(2, 4, 5, 6), (4, 3, 3, 2)], None,
                                 lambda x, w: F.conv_transpose2d(x, w, stride=(3, 2), padding=1,
                                                                 output_padding=(1, 0), groups=2)),
    "max_pool2d": ([(2, 3, 8, 9)], None, lambda x: F.max_pool2d(x, 2)),
    "max_pool2d_overlap_pad": ([(2, 3, 8, 9)], None, lambda x: F.max_pool2d(x, 3, stride=2, padding=1)),
    "avg_pool2d": ([(2, 3, 8, 9)], None, lambda x: F.avg_pool2d(x, 3, stride=2, padding=1)),
    "dropout_eval": ([(4, 5)], None, lambda a: F.dropout(a, 0.5, training=False)),
}


def _inputs(name, shapes, transforms):
    rng = np.random.default_rng(zlib.crc32(name.encode()))   # str hashes change from run to run
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    if transforms is not None:
        arrays = [a if t is None else t(a).astype(np.float32) for a, t in zip(arrays, transforms)]
    return arrays, rng


def _run(fn, arrays, weight_seed, device, mode):
    """Output and input gradients of ``sum(fn(*inputs) * r)`` as NumPy arrays."""
    with kernels.use(mode):
        ts = [mf.tensor(a, requires_grad=True, device=device) for a in arrays]
        out = fn(*ts)
        r = np.random.default_rng(weight_seed).standard_normal(out.shape).astype(np.float32)
        (out * mf.tensor(r, device=device)).sum().backward()
    assert out.device == device
    return [out.numpy()] + [None if t.grad is None else backend.to_numpy(t.grad) for t in ts]


def _assert_close(got, want, what):
    assert got.shape == want.shape, f"{what}: shape {got.shape} against {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} against {want.dtype}"
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5, err_msg=what)


@pytest.mark.parametrize("name", list(CASES))
def test_op_matches_the_numpy_path(name, path, kernel_launches):
    shapes, transforms, fn = CASES[name]
    arrays, _ = _inputs(name, shapes, transforms)
    want = _run(fn, arrays, 99, "cpu", "off")
    kernel_launches.clear()
    got = _run(fn, arrays, 99, *path)
    if path == ("cpu", "emulate") and not kernel_launches:
        # no kernel serves this op: the emulated run was the NumPy path again, a comparison that cannot fail
        pytest.skip(f"{name}: no kernel on this path")
    for i, (g, w) in enumerate(zip(got, want)):
        what = "output" if i == 0 else f"gradient of input {i - 1}"
        if w is None:
            assert g is None, what
        else:
            _assert_close(g, w, f"{name}: {what}")


def _model_step(name, device, mode, steps=2):
    """Gradients, then parameters after SGD steps, of a small model run for three timesteps.

    SGD with momentum, not Adam: Adam divides by the gradient's own size, which turns the rounding of a
    near-zero gradient into a full-sized step. The optimisers' kernels have their own tests.
    """
    mf.manual_seed(3)
    with kernels.use(mode):
        if name in models.MODEL_NAMES:
            net = models.build(name, classes=5, input_size=(12, 12),
                               **({"features": 6} if name.startswith("spoerer") else {}))
            x = np.random.default_rng(4).standard_normal((3, 1, 12, 12)).astype(np.float32)
        else:  # the recurrent layers, one-hot-free: a (batch, features) input per step
            net = nn.Chain(nn.LSTM(7, 9) if name == "lstm" else nn.GRU(7, 9), nn.Dense(9, 5))
            x = np.random.default_rng(4).standard_normal((3, 7)).astype(np.float32)
        net.to(device)
        opt = optim.SGD(net.parameters(), 0.1, momentum=0.9)
        labels = mf.tensor(_labels(3, 5, 2)).to(device)
        xs = mf.tensor(x, device=device)
        grads = None
        for _ in range(steps):
            if name in models.MODEL_NAMES:
                model = nn.Recur(net, net.initial_state(xs))
            else:
                model = net
                for layer in net.layers:
                    if isinstance(layer, nn.Recur):
                        layer.reset()
            for _ in range(3):
                logits = model(xs)
            loss = F.cross_entropy(logits, labels)
            opt.zero_grad()
            loss.backward()
            if grads is None:
                grads = {k: backend.to_numpy(p.grad) for k, p in net.named_parameters()}
            opt.step()
        params = {k: backend.to_numpy(p.data) for k, p in net.named_parameters()}
    return float(loss.item()), grads, params


@pytest.mark.parametrize("name", list(models.MODEL_NAMES) + ["lstm", "gru"])
def test_model_training_matches_the_numpy_path(name, path):
    want_loss, want_grads, want_params = _model_step(name, "cpu", "off")
    loss, grads, params = _model_step(name, *path)
    assert loss == pytest.approx(want_loss, rel=1e-4)
    assert grads.keys() == want_grads.keys()
    for k in grads:
        np.testing.assert_allclose(grads[k], want_grads[k], rtol=1e-3, atol=1e-5, err_msg=f"{name}: grad {k}")
        np.testing.assert_allclose(params[k], want_params[k], rtol=1e-3, atol=1e-5, err_msg=f"{name}: {k}")


def test_batchnorm_and_lrn_match_the_numpy_path(path, kernel_launches):
    def run(device, mode):
        mf.manual_seed(8)
        with kernels.use(mode):
            net = nn.Chain(nn.Conv(2, 4, 3, padding=1),
                           nn.BatchNorm(4), nn.LRN(3), nn.GlobalMeanPool(), nn.Flatten(), nn.Dense(4, 3))
            net.to(device)
            x = mf.tensor(np.random.default_rng(9).standard_normal((5, 2, 6, 6)).astype(np.float32),
                          device=device)
            out = net(x)
            (out * out).sum().backward()
            net.eval()
            evaluated = net(x).numpy()
        return [out.numpy(), evaluated] + [backend.to_numpy(p.grad) for p in net.parameters()] + \
            [backend.to_numpy(b.data) for _, b in net.named_buffers()]

    want = run("cpu", "off")
    kernel_launches.clear()
    got = run(*path)
    if path == ("cpu", "emulate") and not any("norm" in n or "lrn" in n for n in kernel_launches):
        # BatchNorm and LRN are array-module code: the emulated run was the NumPy path again for them,
        # a comparison that cannot fail (the conv and dense kernels it launches have their own cases)
        pytest.skip("BatchNorm/LRN have no kernel on this path")
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


# ---- behaviours with no NumPy twin to compare against: checked on each device (conftest's ``device``) ----
def test_random_creation_is_seeded_per_device(device):
    mf.manual_seed(11)
    a = [mf.randn(64, 32, device=device), mf.rand(64, 32, device=device)]
    mf.manual_seed(11)
    b = [mf.randn(64, 32, device=device), mf.rand(64, 32, device=device)]
    for x, y in zip(a, b):
        assert x.device == device and x.dtype == np.float32
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    normal, uniform = a[0].numpy(), a[1].numpy()
    assert abs(normal.mean()) < 0.1 and 0.9 < normal.std() < 1.1
    assert uniform.min() >= 0 and uniform.max() < 1 and abs(uniform.mean() - 0.5) < 0.05


def test_dropout_in_training_scales_the_kept_values_and_their_gradient(device):
    mf.manual_seed(12)
    x = mf.ones(20000, device=device, requires_grad=True)
    y = F.dropout(x, p=0.3, training=True)
    y.sum().backward()
    kept = y.numpy() != 0
    assert abs(1 - kept.mean() - 0.3) < 0.02
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.7, rtol=1e-6)
    np.testing.assert_array_equal(backend.to_numpy(x.grad), y.numpy())   # d(sum y)/dx = mask / (1 - p)


def test_where_takes_a_host_condition_and_an_empty_index_gets_a_zero_gradient(device):
    a = mf.tensor(np.arange(6, dtype=np.float32), device=device, requires_grad=True)
    b = mf.tensor(-np.arange(6, dtype=np.float32), device=device, requires_grad=True)
    out = F.where(np.arange(6) % 2 == 0, a, b)                 # condition on the host
    assert out.device == device
    np.testing.assert_array_equal(out.numpy(), [0, -1, 2, -3, 4, -5])
    (out.sum() + a[np.array([], dtype=np.int64)].sum()).backward()
    np.testing.assert_array_equal(backend.to_numpy(a.grad), [1, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(backend.to_numpy(b.grad), [0, 1, 0, 1, 0, 1])


def test_clip_grad_norm_matches_the_cpu(device):
    rng = np.random.default_rng(13)
    grads = [rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (5,), (2, 2, 2))]

    def clipped(dev):
        params = [mf.tensor(np.zeros_like(g), device=dev, requires_grad=True) for g in grads]
        for p, g in zip(params, grads):
            p.grad = backend.to_device(g.copy(), dev)
        norm = optim.clip_grad_norm(params, 1.5)
        return norm, [backend.to_numpy(p.grad) for p in params]

    norm, got = clipped(device)
    want_norm, want = clipped("cpu")
    assert norm == pytest.approx(want_norm, rel=1e-6)
    # an independent float64 reference (on "cpu" the comparison above is the computation with itself)
    total = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads))
    assert total > 1.5                                           # so that clipping does scale
    assert float(norm) == pytest.approx(total, rel=1e-6)
    for g, c in zip(got, grads):
        np.testing.assert_allclose(g, c.astype(np.float64) * min(1.0, 1.5 / total), rtol=1e-6)
    assert np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in got)) == pytest.approx(1.5, rel=1e-5)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6)


@pytest.mark.skipif(not backend.cuda_available(), reason="ToDevice's gradcheck needs CuPy and an NVIDIA GPU")
@settings(max_examples=25, deadline=None)
@given(shape=shapes(min_dims=0, max_dims=3, max_side=4), seed=seeds, data=st.data())
def test_to_device_gradcheck(shape, seed, data):
    """``(t.to("cuda") * w).to("cpu")`` on random shapes, float64: ToDevice's backward copies the gradient
    back to the CPU for ``t``; ``w`` (broadcasting to ``t``'s shape) gets its gradient on the GPU."""
    t = mf.tensor(floats64(shape, seed), dtype="float64", requires_grad=True)
    w = mf.tensor(floats64(data.draw(shapes_broadcasting_to(shape)), seed + 1), dtype="float64",
                  requires_grad=True, device="cuda")
    out = (t.to("cuda") * w).to("cpu")
    assert out.device == "cpu" and out.shape == t.shape
    gradcheck(lambda t, w: (t.to("cuda") * w).to("cpu"), t, w)
    assert backend.device_of(t.grad) == "cpu" and backend.device_of(w.grad) == "cuda"
