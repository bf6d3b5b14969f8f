"""The fused CUDA kernels, proven without a GPU (see DESIGN.md, "Kernels without a GPU").

1. Every .cu file compiles for sm_80 and sm_90 (nvcc, or NVRTC from PyPI) with ``ptxas -v``, warnings as
   errors and no spills; the register report goes to benchmarks/results/kernel_registers.txt. In CI
   (``CI=true``) a missing compiler is a failure, elsewhere a skip.
2. Every kernel, compiled by g++ against kernels/cuda_emu.h and launched over a real grid, agrees with its
   array-module reference in minifb.kernel_refs on random shapes (hypothesis), including sizes that are not
   multiples of the block size and empty / size-1 edges. The references' gradients are checked against
   float64 central differences, so the backward kernels are tied to the true derivatives.
3. The emulator itself: barriers, shuffles, 3-D grids, atomics, and divergence reported as errors.
4. AddressSanitizer: a planted out-of-bounds write is caught (subprocess with libasan preloaded). The whole
   file also runs under ASan with MINIFB_KERNELS_ASAN=1 (see the command in ``ASAN_COMMAND``).
5. The same kernel tests against CuPy on a GPU, skipped without one (the ``device`` fixture).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from minifb import backend
from minifb import kernel_refs as R
from minifb import kernels as K

ROOT = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).resolve().parent / "emu_probe.cu"
REPORT = ROOT / "benchmarks" / "results" / "kernel_registers.txt"
ASAN_COMMAND = ("MINIFB_KERNELS_ASAN=1 ASAN_OPTIONS=detect_leaks=0 "
                "LD_PRELOAD=$(g++ -print-file-name=libasan.so) python -m pytest tests/test_kernels.py -q")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
ACTS = ["identity", "relu", "sigmoid", "tanh"]


# ------------------------------------------------------------------------------------------------ devices
@pytest.fixture(params=["emulate", "cuda"])
def device(request):
    if request.param == "cuda" and not backend.cuda_available():
        pytest.skip("no CuPy / GPU")
    return request.param


def dev(a, device):
    """Put a NumPy array on the device under test."""
    if device == "cuda":
        return backend.cupy_or_none().asarray(a)
    return a


def host(a):
    return None if a is None else backend.to_numpy(a)


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def close(actual, expected, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(host(actual), host(expected), rtol=rtol, atol=atol)


# sizes around the block size (256) and warp size, plus the small and empty edges
dim = st.one_of(st.integers(0, 5), st.integers(1, 40), st.sampled_from([31, 32, 33, 255, 256, 257]))
seeds = st.integers(0, 2**32 - 1)


# ------------------------------------------------------------------------------------------------ 1. GPU compile
@pytest.fixture(scope="session")
def gpu_report():
    if K.gpu_compiler() is None:
        if IN_CI:
            pytest.fail("CI=true but neither nvcc nor NVRTC (nvidia-cuda-nvrtc + cupy) is available")
        pytest.skip("no CUDA compiler (nvcc or NVRTC)")
    return K.gpu_compile_report(out=REPORT)


@pytest.mark.parametrize("path", K.kernel_files(), ids=lambda p: p.name)
def test_compiles_for_gpu_without_spills(gpu_report, path):
    records, errors = gpu_report
    mine = [e for e in errors if e.startswith(path.name)]
    assert not mine, "\n".join(mine)
    kernels = K.parse_kernels(path.read_text())
    for arch in ("sm_80", "sm_90"):
        got = {r["kernel"]: r for r in records if r["file"] == path.name and r["arch"] == arch}
        assert set(got) == set(kernels), f"{path.name} {arch}: ptxas reported {sorted(got)}"
        for r in got.values():
            assert r["spill_stores"] == 0 and r["spill_loads"] == 0 and r["stack"] == 0, r
    assert REPORT.is_file()


def test_compiles_with_nvrtc_when_available():
    """CuPy compiles with NVRTC (no host headers): check that path too when NVRTC is installed."""
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception:
        pytest.skip("NVRTC (nvidia-cuda-nvrtc + cupy) not installed")
    for path in K.kernel_files():
        for arch in ("sm_80", "sm_90"):
            rc, log = K.gpu_compile(path, arch, "nvrtc")
            assert rc == 0, f"{path.name} {arch}:\n{log}"
            assert all(r["spill_stores"] == 0 for r in K.parse_ptxas(log)), log


@pytest.mark.parametrize("path", K.kernel_files() + [PROBE], ids=lambda p: p.name)
def test_compiles_as_strict_cpp(path):
    """The emulation build is warning-free too (-Wall -Wextra -Werror)."""
    cxx = os.environ.get("CXX", "g++")
    cmd = [cxx, *K.emu_flags(), "-fsyntax-only", "-Wall", "-Wextra", "-Werror", f"-I{K.source_dir()}", str(path)]
    cmd.remove("-shared")
    r = subprocess.run(cmd, capture_output=True, text=True, env=K._compiler_env())
    assert r.returncode == 0, r.stderr


def test_sources_ship_with_the_package():
    names = {p.name for p in K.source_dir().iterdir()}
    assert {"cuda_emu.h", "common.h", "bias_act.cu", "merger.cu", "lstm_cell.cu", "gru_cell.cu", "im2col.cu",
            "softmax_xent.cu", "maxpool.cu", "optim.cu", "__init__.py"} <= names
    for p in K.kernel_files():
        head = p.read_text().split("\n", 1)[0]
        assert head.startswith(f"// {p.name} --"), f"{p.name} must open with a comment saying what it computes"
        assert "NumPy reference" in p.read_text(), f"{p.name} must name its reference"
        code = re.sub(r"//[^\n]*", "", K.expanded_source(p))
        assert not re.search(r"\bINFINITY\b|#\s*include\s*<", code.split("#include \"cuda_emu.h\"")[-1]), \
            "NVRTC has no host headers and no INFINITY macro"


# ------------------------------------------------------------------------------------------------ 2. kernels
@SETTINGS
@given(shape=st.lists(dim, min_size=1, max_size=4).filter(lambda s: np.prod(s) <= 20000),
       act=st.sampled_from(ACTS), with_bias=st.booleans(), seed=seeds, data=st.data())
def test_bias_act(device, shape, act, with_bias, seed, data):
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(0, len(shape) - 1))
    x = rand(rng, *shape)
    b = rand(rng, shape[axis]) if with_bias else None
    layout = data.draw(st.sampled_from([axis, R.channel_layout(shape, axis)]))  # an axis or the triple
    y = K.bias_act(dev(x, device), None if b is None else dev(b, device), act, layout)
    close(y, R.bias_act_ref(x, b, act, axis))
    g = rand(rng, *shape)
    y = host(y)
    dx, db = K.bias_act_backward(dev(g, device), dev(y, device), act, layout, need_bias=with_bias)
    rdx, rdb = R.bias_act_backward_ref(g, y, act, axis, need_bias=with_bias)
    close(dx, rdx)
    if with_bias:
        close(db, rdb, rtol=1e-4, atol=1e-4)
    else:
        assert db is None


def test_bias_act_keeps_a_0d_shape_and_reads_a_strided_input(device):
    """A 0-d array comes back 0-d (a contiguous operand is passed as it is, not through
    ``ascontiguousarray``, which makes it 1-d), and a strided view is copied before the launch."""
    rng = np.random.default_rng(0)
    y = K.bias_act(dev(np.array(-2.0, np.float32), device), None, "relu")
    assert y.shape == ()
    close(y, np.array(0.0, np.float32))
    x = rand(rng, 6, 10)
    b = rand(rng, 5)
    view = dev(x, device)[:, ::2]                       # (6, 5), row stride 10
    assert not view.flags.c_contiguous
    close(K.bias_act(view, dev(b, device), "tanh"), R.bias_act_ref(x[:, ::2], b, "tanh", 1))


@SETTINGS
@given(shape=st.lists(dim, min_size=2, max_size=4).filter(lambda s: np.prod(s) <= 20000),
       act=st.sampled_from(ACTS), with_bias=st.booleans(), seed=seeds)
def test_merger(device, shape, act, with_bias, seed):
    rng = np.random.default_rng(seed)
    x, fb = rand(rng, *shape), rand(rng, *shape)
    b = rand(rng, shape[1]) if with_bias else None
    y, a = K.merger_forward(dev(x, device), dev(fb, device), None if b is None else dev(b, device), act)
    ry, ra = R.merger_forward_ref(x, fb, b, act)
    close(y, ry)
    close(a, ra)
    g = rand(rng, *shape)
    dfb, db = K.merger_backward(dev(g, device), dev(host(a), device), act, need_bias=with_bias)
    rdfb, rdb = R.merger_backward_ref(g, host(a), act, need_bias=with_bias)
    close(dfb, rdfb)
    if with_bias:
        close(db, rdb, rtol=1e-4, atol=1e-4)
    else:
        assert db is None and rdb is None


@SETTINGS
@given(B=dim, H=st.one_of(st.integers(0, 8), st.sampled_from([33, 100])), seed=seeds, with_dc=st.booleans(),
       c_pad=st.sampled_from([0, 0, 1, 5]))
def test_lstm_cell(device, B, H, seed, with_dc, c_pad):
    assume(B * H <= 5000)
    rng = np.random.default_rng(seed)
    gi, gh = rand(rng, B, 4 * H), rand(rng, B, 4 * H)
    # c_pad > 0: c is a view with row stride H + c_pad (as the previous step's hc[:, H:] is); the kernels
    # read it in place, and must not read the columns around it
    wide = dev(rand(rng, B, H + c_pad), device)
    c_dev = wide[:, c_pad:]
    c = host(c_dev)
    hc, gates = K.lstm_cell_forward(dev(gi, device), dev(gh, device), c_dev)
    h_ref, c_ref, gates_ref = R.lstm_cell_forward_ref(gi, gh, c)
    close(hc, np.concatenate([h_ref, c_ref], axis=1))
    close(gates, gates_ref)
    dh, dc = rand(rng, B, H), (rand(rng, B, H) if with_dc else np.zeros((B, H), np.float32))
    got = K.lstm_cell_backward(dev(np.concatenate([dh, dc], axis=1), device), gates, c_dev, hc)
    want = R.lstm_cell_backward_ref(dh, dc if with_dc else None, host(gates), c, host(hc)[:, H:])
    for a, b in zip(got, want):
        close(a, b)


@SETTINGS
@given(B=dim, H=st.one_of(st.integers(0, 8), st.sampled_from([33, 100])), seed=seeds)
def test_gru_cell(device, B, H, seed):
    assume(B * H <= 5000)
    rng = np.random.default_rng(seed)
    gi, gh, h = rand(rng, B, 3 * H), rand(rng, B, 3 * H), rand(rng, B, H)
    h_new, saved = K.gru_cell_forward(dev(gi, device), dev(gh, device), dev(h, device))
    rh, rsaved = R.gru_cell_forward_ref(gi, gh, h)
    close(h_new, rh)
    close(saved, rsaved)
    dh = rand(rng, B, H)
    got = K.gru_cell_backward(dev(dh, device), dev(host(saved), device), dev(h, device))
    for a, b in zip(got, R.gru_cell_backward_ref(dh, host(saved), h)):
        close(a, b)


conv_cfg = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9),  # N C H W
                     st.integers(1, 3), st.integers(1, 3),                                          # kh kw
                     st.tuples(st.integers(1, 3), st.integers(1, 3)),                               # stride
                     st.tuples(st.integers(0, 2), st.integers(0, 2)),                               # padding
                     st.tuples(st.integers(1, 2), st.integers(1, 2)))                               # dilation


@SETTINGS
@given(cfg=conv_cfg, seed=seeds)
def test_im2col_col2im(device, cfg, seed):
    N, C, H, W, kh, kw, s, p, d = cfg
    assume(R.conv_output_size(H, kh, s[0], p[0], d[0]) > 0 and R.conv_output_size(W, kw, s[1], p[1], d[1]) > 0)
    rng = np.random.default_rng(seed)
    x = rand(rng, N, C, H, W)
    cols = K.im2col(dev(x, device), kh, kw, s, p, d)
    rcols = R.im2col_ref(x, kh, kw, s, p, d)
    np.testing.assert_array_equal(host(cols), rcols)  # a pure gather: exact
    g = rand(rng, *rcols.shape)
    dx = K.col2im(dev(g, device), x.shape, kh, kw, s, p, d)
    close(dx, R.col2im_ref(g, x.shape, kh, kw, s, p, d))
    # adjoint identity <im2col(x), g> = <x, col2im(g)>, in float64
    lhs = float((rcols.astype(np.float64) * g).sum())
    rhs = float((x.astype(np.float64) * host(dx)).sum())
    assert abs(lhs - rhs) <= 1e-4 * (1 + abs(lhs))


@SETTINGS
@given(B=dim, K_=st.one_of(st.integers(1, 40), st.sampled_from([255, 256, 257, 1000])), seed=seeds,
       scale=st.floats(-2, 2, width=32), with_grad=st.booleans(), ignore=st.booleans())
def test_softmax_xent(device, B, K_, seed, scale, with_grad, ignore):
    rng = np.random.default_rng(seed)
    logits = rand(rng, B, K_) * 5 + 50  # large offset: only a stable implementation gets this right
    labels = rng.integers(0, K_, B)
    if ignore and B:
        labels[0] = -100
    loss, grad = K.softmax_xent(dev(logits, device), dev(labels, device), scale, with_grad)
    rloss, rgrad = R.softmax_xent_ref(logits, labels, scale, with_grad)
    close(loss, rloss, rtol=1e-5, atol=1e-4)
    if with_grad:
        close(grad, rgrad, atol=1e-6)
    else:
        assert grad is None


@pytest.mark.parametrize("offset", [1e4, 1e30, -3e38, 3e38])
def test_softmax_xent_keeps_the_log_sum_beside_a_huge_max(device, offset):
    # logsumexp(z) - z[t] must be formed as log(s) - (z[t] - max): adding log(s) to a max of 1e30 loses it
    # (every logit equal gave a loss of 0 instead of log K).
    rng = np.random.default_rng(0)
    logits = np.full((4, 3), offset, np.float32)
    logits[1:] += np.float32(abs(offset) * 1e-7) * rand(rng, 3, 3)  # a spread float32 can still hold
    labels = np.array([0, 1, 2, 0])
    z = logits.astype(np.float64)
    m = z.max(axis=1)
    expected = np.log(np.exp(z - m[:, None]).sum(axis=1)) - (z[np.arange(4), labels] - m)
    for loss in (K.softmax_xent(dev(logits, device), dev(labels, device), 1.0, False)[0],
                 R.softmax_xent_ref(logits, labels, 1.0, False)[0]):
        close(loss, expected, rtol=1e-5, atol=1e-5)


pool_cfg = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 10), st.integers(1, 10),
                     st.tuples(st.integers(1, 3), st.integers(1, 3)),
                     st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))),
                     st.tuples(st.integers(0, 1), st.integers(0, 1)))


@SETTINGS
@given(cfg=pool_cfg, seed=seeds)
def test_maxpool(device, cfg, seed):
    N, C, H, W, k, s, p = cfg
    p = (min(p[0], k[0] // 2), min(p[1], k[1] // 2))
    st_ = k if s is None else s
    assume(R.pool_output_size(H, k[0], st_[0], p[0]) > 0 and R.pool_output_size(W, k[1], st_[1], p[1]) > 0)
    rng = np.random.default_rng(seed)
    x = rand(rng, N, C, H, W)
    y, arg = K.maxpool_forward(dev(x, device), k, s, p)
    ry, rarg = R.maxpool_forward_ref(x, k, s, p)
    np.testing.assert_array_equal(host(y), ry)
    np.testing.assert_array_equal(host(arg), rarg)
    g = rand(rng, *ry.shape)
    dx = K.maxpool_backward(dev(g, device), dev(rarg, device), x.shape, k, s, p)
    close(dx, R.maxpool_backward_ref(g, rarg, x.shape, k, s, p))


def test_maxpool_nan_and_ties():
    x = np.array([[[[1.0, 1.0, np.nan, 3.0], [np.nan, 0.0, 2.0, 2.0]]]], dtype=np.float32)
    with K.use("emulate"):
        y, arg = K.maxpool_forward(x, 2)
    ry, rarg = R.maxpool_forward_ref(x, 2)
    np.testing.assert_array_equal(host(arg), rarg)
    np.testing.assert_array_equal(host(y), ry)            # NaN where the reference has NaN, equal maxima elsewhere
    np.testing.assert_array_equal(ry, [[[[np.nan, np.nan]]]])  # a NaN in the window wins, as in PyTorch
    # ties: the first maximum in row-major window order is the argmax; no NaN, so the maxima are compared
    x = np.array([[[[2.0, 2.0, 1.0, 5.0], [0.0, 2.0, 5.0, 5.0]]]], dtype=np.float32)
    with K.use("emulate"):
        y, arg = K.maxpool_forward(x, 2)
    ry, rarg = R.maxpool_forward_ref(x, 2)
    np.testing.assert_array_equal(host(y), ry)
    np.testing.assert_array_equal(host(y), [[[[2.0, 5.0]]]])
    np.testing.assert_array_equal(host(arg), rarg)
    np.testing.assert_array_equal(host(arg), [[[[0, 3]]]])


@SETTINGS
@given(n=st.one_of(st.integers(0, 10), st.sampled_from([255, 256, 257, 3000])), seed=seeds,
       momentum=st.sampled_from([0.0, 0.9]), dampening=st.sampled_from([0.0, 0.1]),
       wd=st.sampled_from([0.0, 1e-2]), nesterov=st.booleans(), first=st.booleans())
def test_sgd_update(device, n, seed, momentum, dampening, wd, nesterov, first):
    rng = np.random.default_rng(seed)
    p, g, buf = rand(rng, n), rand(rng, n), rand(rng, n)
    rp, rbuf = p.copy(), buf.copy()
    dp, dbuf = dev(p, device), dev(buf, device)
    K.sgd_update(dp, dev(g, device), dbuf, 0.1, momentum, dampening, wd, nesterov, first)
    R.sgd_update_ref(rp, g, rbuf, 0.1, momentum, dampening, wd, nesterov, first)
    close(dp, rp, rtol=1e-5, atol=1e-6)
    close(dbuf, rbuf, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(n=st.one_of(st.integers(0, 10), st.sampled_from([255, 256, 257, 3000])), seed=seeds,
       wd=st.sampled_from([0.0, 1e-2]), step=st.integers(1, 1000))
def test_adam_update(device, n, seed, wd, step):
    rng = np.random.default_rng(seed)
    p, g, m = rand(rng, n), rand(rng, n), rand(rng, n) * 0.1
    v = np.abs(rand(rng, n)) * 0.01
    rp, rm, rv = p.copy(), m.copy(), v.copy()
    dp, dm, dv = dev(p, device), dev(m, device), dev(v, device)
    K.adam_update(dp, dev(g, device), dm, dv, 1e-3, 0.9, 0.999, 1e-8, wd, step)
    R.adam_update_ref(rp, g, rm, rv, 1e-3, 0.9, 0.999, 1e-8, wd, step)
    close(dp, rp, rtol=1e-5, atol=1e-6)
    close(dm, rm, rtol=1e-5, atol=1e-6)
    close(dv, rv, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------------ references vs calculus
def _directional(f, xs, vs, eps=1e-6):
    """Central difference of scalar f along direction vs (float64)."""
    plus = f(*[x + eps * v for x, v in zip(xs, vs)])
    minus = f(*[x - eps * v for x, v in zip(xs, vs)])
    return (plus - minus) / (2 * eps)


@pytest.mark.parametrize("act", ACTS)
def test_reference_gradients_bias_act_and_merger(act):
    rng = np.random.default_rng(1)
    x, b, gout = rng.standard_normal((3, 4, 5)), rng.standard_normal(4), rng.standard_normal((3, 4, 5))
    x += np.sign(x) * 0.1  # keep relu away from its kink
    vx, vb = rng.standard_normal(x.shape), rng.standard_normal(4)
    y = R.bias_act_ref(x, b, act)
    dx, db = R.bias_act_backward_ref(gout, y, act)
    num = _directional(lambda x_, b_: (R.bias_act_ref(x_, b_, act) * gout).sum(), (x, b), (vx, vb))
    assert np.isclose((dx * vx).sum() + (db * vb).sum(), num, rtol=1e-5, atol=1e-7)
    xs, fb = rng.standard_normal(x.shape), x
    _, a = R.merger_forward_ref(xs, fb, b, act)
    dfb, db = R.merger_backward_ref(gout, a, act)
    num = _directional(lambda s, f, b_: (R.merger_forward_ref(s, f, b_, act)[0] * gout).sum(),
                       (xs, fb, b), (vx, vx[::-1], vb))
    assert np.isclose((gout * vx).sum() + (dfb * vx[::-1]).sum() + (db * vb).sum(), num, rtol=1e-5, atol=1e-7)


def test_reference_gradients_recurrent_cells():
    rng = np.random.default_rng(2)
    B, H = 3, 4
    gi, gh, c = rng.standard_normal((B, 4 * H)), rng.standard_normal((B, 4 * H)), rng.standard_normal((B, H))
    wh, wc = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    h1, c1, gates = R.lstm_cell_forward_ref(gi, gh, c)
    dgates, dc_prev = R.lstm_cell_backward_ref(wh, wc, gates, c, c1)
    v = [rng.standard_normal(a.shape) for a in (gi, gh, c)]

    def f(gi_, gh_, c_):
        h_, c_n, _ = R.lstm_cell_forward_ref(gi_, gh_, c_)
        return (h_ * wh).sum() + (c_n * wc).sum()
    num = _directional(f, (gi, gh, c), v)
    assert np.isclose((dgates * v[0]).sum() + (dgates * v[1]).sum() + (dc_prev * v[2]).sum(), num, rtol=1e-5)

    gi, gh, h = rng.standard_normal((B, 3 * H)), rng.standard_normal((B, 3 * H)), rng.standard_normal((B, H))
    h1, saved = R.gru_cell_forward_ref(gi, gh, h)
    dgi, dgh, dh = R.gru_cell_backward_ref(wh, saved, h)
    v = [rng.standard_normal(a.shape) for a in (gi, gh, h)]
    num = _directional(lambda a, b, c_: (R.gru_cell_forward_ref(a, b, c_)[0] * wh).sum(), (gi, gh, h), v)
    assert np.isclose((dgi * v[0]).sum() + (dgh * v[1]).sum() + (dh * v[2]).sum(), num, rtol=1e-5)


def test_reference_gradients_softmax_xent_and_maxpool():
    rng = np.random.default_rng(3)
    z, labels = rng.standard_normal((4, 7)), np.array([0, 6, 3, -1])
    _, g = R.softmax_xent_ref(z, labels, scale=1.0)
    v = rng.standard_normal(z.shape)
    num = _directional(lambda z_: R.softmax_xent_ref(z_, labels, grad=False)[0].sum(), (z,), (v,))
    assert np.isclose((g * v).sum(), num, rtol=1e-5)
    x = rng.standard_normal((2, 2, 7, 6))
    gout = rng.standard_normal(R.maxpool_forward_ref(x, 3, 2, 1)[0].shape)
    _, arg = R.maxpool_forward_ref(x, 3, 2, 1)
    dx = R.maxpool_backward_ref(gout, arg, x.shape, 3, 2, 1)
    v = rng.standard_normal(x.shape)
    num = _directional(lambda x_: (R.maxpool_forward_ref(x_, 3, 2, 1)[0] * gout).sum(), (x,), (v,))
    assert np.isclose((dx * v).sum(), num, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ 3. emulator
def probe(name, grid, block, *args):
    K.launch(PROBE, name, grid, block, args)


def test_emulator_barrier_shared_memory():
    x = np.arange(5 * 96, dtype=np.float32)
    y = np.zeros_like(x)
    probe("reverse_block", (5,), (96,), x, y)
    np.testing.assert_array_equal(y, x.reshape(5, 96)[:, ::-1].ravel())


def test_emulator_runs_a_warp_ahead_so_a_missing_barrier_shows():
    """One warp runs a whole phase ahead of the others, as a GPU may schedule it (the highest warp in even
    blocks, the lowest in odd ones): a shared-memory slot written again without a __syncthreads after
    another warp read it is seen overwritten (a round-robin schedule, where every thread reaches its next
    barrier before any is released, hid this race)."""
    out = np.zeros((2, 64), np.float32)
    probe("write_after_read_race", (2,), (64,), out)
    # block 0 runs its highest warp first: warp 1 read warp 0's first values, warp 0 then read warp 1's new ones
    np.testing.assert_array_equal(out[0], np.repeat([2.0, 1.0], 32))
    # block 1 runs its lowest warp first: the other way round
    np.testing.assert_array_equal(out[1], np.repeat([1.0, 2.0], 32))


def test_emulator_shuffles():
    nb, nt = 3, 64
    x = np.random.default_rng(0).standard_normal(nb * nt).astype(np.float32)
    outs = [np.zeros_like(x) for _ in range(5)]
    probe("shuffles", (nb,), (nt,), x, *outs)
    w = x.reshape(-1, 32)
    lane = np.arange(32)
    down = np.where(lane + 3 < 32, w[:, np.minimum(lane + 3, 31)], w)
    up = np.where(lane - 2 >= 0, w[:, np.maximum(lane - 2, 0)], w)
    np.testing.assert_array_equal(outs[0].reshape(-1, 32), down)
    np.testing.assert_array_equal(outs[1].reshape(-1, 32), up)
    np.testing.assert_array_equal(outs[2].reshape(-1, 32), w[:, lane ^ 5])
    np.testing.assert_array_equal(outs[3].reshape(-1, 32), np.repeat(w[:, 7:8], 32, axis=1))
    np.testing.assert_allclose(outs[4].reshape(-1, 32), np.repeat(w.sum(1, keepdims=True), 32, 1), rtol=1e-5)


def test_emulator_3d_grid_and_atomics():
    grid, block = (3, 2, 2), (4, 3, 2)
    n = int(np.prod(grid) * np.prod(block))
    out = np.full(n, -1, dtype=np.int32)
    probe("index3d", grid, block, out)
    np.testing.assert_array_equal(out, np.arange(n))
    acc = np.zeros(1, dtype=np.float32)
    probe("atomic_count", (50,), (128,), acc)
    assert acc[0] == 50 * 128


def test_emulated_launches_keep_to_the_launch_bounds_and_the_gpus_limits():
    g = y = np.ones(40, np.float32)
    dx, db = np.zeros(40, np.float32), np.zeros(4, np.float32)
    args = (g, y, dx, db, np.int32(1), np.int32(4), np.int32(10), np.int32(1))
    with K.use("emulate"):
        K.launch("bias_act", "bias_act_bwd", (4,), (256,), args)          # its __launch_bounds__(256)
        for grid, block in (((4,), (512,)), ((0,), (32,)), ((1, 70000), (32,))):
            with pytest.raises(RuntimeError, match=r"bias_act_bwd: invalid launch configuration"):
                K.launch("bias_act", "bias_act_bwd", grid, block, args)
    assert K.launch_bounds('extern "C" __global__ void __launch_bounds__(128, 2) k(float* x) {}') == {"k": 128}


def test_emulator_refuses_a_full_mask_shuffle_in_a_partial_warp():
    y = np.zeros(40, dtype=np.float32)
    with pytest.raises(RuntimeError, match=r"names lane 8 of warp 1, which does not exist: the block has 40"):
        probe("partial_warp_block", (1,), (40,), y)


def test_emulator_xor_shuffle_of_width_16_reads_an_earlier_group_as_cuda_does():
    x = np.arange(32, dtype=np.float32)
    out = np.zeros_like(x)
    probe("xor_width16", (1,), (32,), x, out)
    np.testing.assert_array_equal(out, np.concatenate([x[:16], x[:16]]))


@pytest.mark.parametrize("name,message", [("divergent_sync", "divergent __syncthreads"),
                                          ("late_sync", "divergent barrier"),
                                          ("partial_warp", "divergent warp barrier")])
def test_emulator_reports_divergence(name, message):
    y = np.zeros(64, dtype=np.float32)
    with pytest.raises(RuntimeError, match=message):
        probe(name, (2,), (32,), y)


def test_launch_checks_argument_types():
    y = np.zeros(8, dtype=np.float32)
    with pytest.raises(TypeError, match="np.int32"):
        probe("oob_write", (1,), (8,), y, 8, np.int32(0))  # a Python int: CuPy would pass 8 bytes
    with pytest.raises(TypeError, match="float32"):
        probe("oob_write", (1,), (8,), y.astype(np.float64), np.int32(8), np.int32(0))
    with pytest.raises(TypeError, match="takes 3 arguments"):
        probe("oob_write", (1,), (8,), y, np.int32(8))
    with pytest.raises(RuntimeError, match="invalid launch configuration"):
        probe("oob_write", (1,), (2048,), y, np.int32(8), np.int32(0))


def test_mode_switch(monkeypatch):
    x = np.zeros(3, dtype=np.float32)
    monkeypatch.setenv("MINIFB_KERNELS", "off")
    assert K.mode() == "off" and not K.should_use(x)
    monkeypatch.setenv("MINIFB_KERNELS", "emulate")  # read at call time
    assert K.mode() == "emulate" and K.should_use(x)
    assert not K.should_use(x.astype(np.float64))
    with K.use("off"):
        assert K.mode() == "off" and not K.should_use(x)
        with K.use("emulate"):
            assert K.should_use(x, None, x)                 # None entries are ignored
    assert K.mode() == "emulate"
    monkeypatch.setenv("MINIFB_KERNELS", "bogus")
    with pytest.raises(ValueError, match=r"MINIFB_KERNELS='bogus': expected one of off, emulate, cuda, auto"):
        K.mode()
    with pytest.raises(ValueError, match=r"kernels\.use\('gpu'\): expected one of off, emulate, cuda, auto"):
        with K.use("gpu"):
            pass


@pytest.mark.parametrize("bad", [None, 3, b"off"])
def test_use_refuses_a_mode_that_is_not_a_str(bad):
    with pytest.raises(TypeError, match=rf"kernels\.use: mode must be a str .*got {re.escape(repr(bad))}"):
        with K.use(bad):
            pass


def test_use_accepts_auto_as_minifb_kernels_does(monkeypatch):
    """``auto`` is a valid MINIFB_KERNELS; in a block it is the default again: cuda with a GPU, else off."""
    monkeypatch.setenv("MINIFB_KERNELS", "auto")
    default = K.mode()
    with K.use("emulate"):
        with K.use("AUTO"):
            assert K.mode() == default == ("cuda" if backend.cuda_available() else "off")
        assert K.mode() == "emulate"



class _FakeCupyArray:
    """Stands in for a CuPy array in :func:`K.should_use` (which looks only at the type's module, the
    dtype and the size), so that the CuPy branch of the dispatch is tested without a GPU."""
    __module__ = "cupy._fake"

    def __init__(self, dtype, size=6):
        self.dtype = np.dtype(dtype)
        self.size = size


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int64, np.int32, np.uint8, np.bool_])
def test_should_use_requires_float32_for_every_array(dtype):
    """The kernels are float32 only: an integer or boolean array (e.g. an int zero state) must send the op
    to its array path, on NumPy arrays under emulation and on CuPy arrays alike."""
    x, other = np.zeros(3, np.float32), np.zeros(3, dtype)
    with K.use("emulate"):
        assert K.should_use(x) and K.should_use(x, None)
        assert not K.should_use(other) and not K.should_use(x, other) and not K.should_use(other, x)
    for m in ("emulate", "cuda"):
        with K.use(m):
            assert K.should_use(_FakeCupyArray(np.float32), _FakeCupyArray(np.float32))
            assert not K.should_use(_FakeCupyArray(dtype))
            assert not K.should_use(_FakeCupyArray(np.float32), _FakeCupyArray(dtype))
    with K.use("off"):
        assert not K.should_use(_FakeCupyArray(np.float32))


def test_kernel_names_resolve_in_the_kernels_folder_not_the_current_directory(tmp_path, monkeypatch):
    """A folder or file in the user's working directory named like a kernel neither breaks nor hijacks
    loading: bare names are looked up in the kernels folder only; a path (absolute, or with a separator)
    is taken as given."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "optim").mkdir()                                # e.g. a project with an optim/ package
    (tmp_path / "im2col.cu").write_text("this is not CUDA\n")  # a decoy source
    for name in ("optim", "optim.cu", "im2col", "im2col.cu"):
        stem = name.split(".")[0]
        assert K._resolve(name) == (K.source_dir() / f"{stem}.cu").resolve(), name
    with K.use("emulate"):
        p = np.ones(4, np.float32)
        K.sgd_update(p, np.ones(4, np.float32), np.zeros(1, np.float32), 0.5)
        np.testing.assert_array_equal(p, 0.5)
        cols = K.im2col(np.ones((1, 1, 3, 3), np.float32), 3, 3)
        np.testing.assert_array_equal(cols, np.ones((9, 1)))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine.cu").write_text("// mine\n")
    assert K._resolve("sub/mine.cu") == (tmp_path / "sub" / "mine.cu").resolve()   # a relative path
    assert K._resolve(tmp_path / "sub" / "mine") == (tmp_path / "sub" / "mine.cu").resolve()
    with pytest.raises(FileNotFoundError, match="mine"):
        K._resolve("mine")                                      # a bare name: not looked for in the cwd


def test_concurrent_builds_of_one_module_compile_once(tmp_path, monkeypatch):
    """Threads loading the same emulated module into a cold cache neither collide on a temporary file nor
    compile it more than once."""
    import threading

    monkeypatch.setenv("MINIFB_KERNEL_CACHE", str(tmp_path))
    builds = []
    real_run = subprocess.run

    def counting_run(cmd, *args, **kw):
        if "-shared" in cmd:
            builds.append(cmd[cmd.index("-o") + 1])
        return real_run(cmd, *args, **kw)

    monkeypatch.setattr(K.subprocess, "run", counting_run)
    path, errors, modules = K._resolve("optim"), [], []

    def work():
        try:
            modules.append(K.EmuModule(path))
        except Exception as e:   # noqa: BLE001 - reported below
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(modules) == 4
    assert len(builds) == 1, builds
    assert [p.name for p in tmp_path.iterdir()] == [Path(modules[0].lib._name).name]   # no temporary left
    p = np.ones(3, np.float32)
    modules[-1].get_function("sgd_update")((1,), (32,), (p, np.ones(3, np.float32), np.zeros(1, np.float32),
                                                         np.int64(3), np.float32(0.5), np.float32(0),
                                                         np.float32(0), np.float32(0), np.int32(0), np.int32(0)))
    np.testing.assert_array_equal(p, 0.5)


def test_col2im_checks_the_shape_of_cols():
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    with K.use("emulate"):
        cols = K.im2col(x, 3, 3, 1, 1)                                          # (27, 50)
        with pytest.raises(ValueError, match=r"cols \(50, 27\).*expected \(27, 50\)"):
            K.col2im(np.ascontiguousarray(cols.T), x.shape, 3, 3, 1, 1)
        with pytest.raises(ValueError, match=r"cols \(1350,\).*expected \(27, 50\)"):
            K.col2im(cols.reshape(-1), x.shape, 3, 3, 1, 1)
        close(K.col2im(cols, x.shape, 3, 3, 1, 1), R.col2im_ref(cols, x.shape, 3, 3, 1, 1))


@pytest.mark.parametrize("step", [0, -1])
def test_adam_update_step_is_one_based(step):
    p, g = np.ones(3, np.float32), np.ones(3, np.float32)
    m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
    message = rf"adam_update: step must be >= 1 \(the first step is 1\), got {step}"
    with K.use("emulate"), pytest.raises(ValueError, match=message):
        K.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, step)
    with pytest.raises(ValueError, match=message):
        R.adam_update_ref(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, step)
    np.testing.assert_array_equal(p, 1.0)
    np.testing.assert_array_equal(m, 0.0)


@pytest.mark.parametrize("betas", [(0.9, 1 - 1e-8), (1 - 1e-8, 0.999), (1 - 3e-8, 1 - 1e-9)])
def test_adam_update_betas_close_to_one(device, betas):
    """1 - beta is taken in float64 on the host: rounding beta to float32 first gives 1 - 1.0 = 0 (v stays
    0 and the step blows up)."""
    rng = np.random.default_rng(3)
    p, g = rand(rng, 300), rand(rng, 300)
    m, v = np.zeros(300, np.float32), np.zeros(300, np.float32)
    rp, rm, rv = p.copy(), m.copy(), v.copy()
    dp, dm, dv = dev(p, device), dev(m, device), dev(v, device)
    for step in (1, 2, 3):
        K.adam_update(dp, dev(g, device), dm, dv, 1e-3, *betas, 1e-8, 0.0, step)
        R.adam_update_ref(rp, g, rm, rv, 1e-3, *betas, 1e-8, 0.0, step)
    close(dm, rm, rtol=1e-5, atol=0)
    close(dv, rv, rtol=1e-5, atol=0)
    close(dp, rp, rtol=1e-5, atol=1e-6)
    assert (host(dv) > 0).all() and np.abs(host(dp) - p).max() < 1e-2


def test_sgd_update_dampening_close_to_one(device):
    """As for Adam's betas: 1 - dampening is taken in float64 on the host (rounded to float32 first it is
    0, and the gradient never reaches a momentum buffer that has decayed to 0)."""
    rng = np.random.default_rng(4)
    p, g, buf = rand(rng, 300), rand(rng, 300), np.zeros(300, np.float32)
    rp, rbuf = p.copy(), buf.copy()
    dp, dbuf = dev(p, device), dev(buf, device)
    for _ in range(3):
        K.sgd_update(dp, dev(g, device), dbuf, 0.1, 0.9, 1 - 1e-8, 0.0)
        R.sgd_update_ref(rp, g, rbuf, 0.1, 0.9, 1 - 1e-8, 0.0)
    close(dbuf, rbuf, rtol=1e-5, atol=0)
    close(dp, rp, rtol=1e-6, atol=0)
    assert (host(dbuf) != 0).all()

# ------------------------------------------------------------------------------------------------ 4. ASan
def _libasan():
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        return None
    r = subprocess.run([cxx, "-print-file-name=libasan.so"], capture_output=True, text=True,
                       env=K._compiler_env())
    p = r.stdout.strip()
    return p if os.path.isabs(p) and os.path.exists(p) else None


def _run_under_asan(plant: int):
    lib = _libasan()
    if lib is None:
        if IN_CI:
            pytest.fail("libasan not found")
        pytest.skip("libasan not found")
    code = textwrap.dedent(f"""
        import numpy as np
        from minifb import kernels as K
        y = np.zeros(1000, dtype=np.float32)
        K.launch({str(PROBE)!r}, "oob_write", (4,), (256,), (y, np.int32(1000), np.int32({plant})))
        x = np.random.default_rng(0).standard_normal((5, 300)).astype(np.float32)
        loss, g = K.softmax_xent(x, np.arange(5))   # fibers + shuffles under ASan
        print("finished", float(loss.sum()))
    """)
    env = dict(os.environ, MINIFB_KERNELS_ASAN="1", LD_PRELOAD=lib, ASAN_OPTIONS="detect_leaks=0",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_asan_catches_planted_out_of_bounds_write():
    r = _run_under_asan(plant=1)
    assert r.returncode != 0 and "heap-buffer-overflow" in r.stderr, r.stderr[-3000:]
    if shutil.which("llvm-symbolizer") or os.environ.get("ASAN_SYMBOLIZER_PATH"):
        assert "oob_write" in r.stderr  # the report names the kernel
    else:   # unsymbolized frames (a machine without llvm-symbolizer) name the kernel's library instead
        assert "emu_probe" in r.stderr, r.stderr[-3000:]


def test_asan_clean_run_passes():
    r = _run_under_asan(plant=0)
    assert r.returncode == 0 and "finished" in r.stdout, r.stderr[-3000:]


def test_asan_suite_mode_is_active_when_requested(monkeypatch):
    """Under MINIFB_KERNELS_ASAN=1 every emulated launch uses the ASan build, otherwise the plain one."""
    requested = os.environ.get("MINIFB_KERNELS_ASAN", "").strip().lower() in ("1", "true", "yes", "on")
    assert K.asan_enabled() == requested          # this run: what the environment asked for
    assert K._device_of((np.zeros(1),)) == ("emulate+asan" if requested else "emulate")
    assert "-fsanitize=address" in K.emu_flags(asan=True) and "-fsanitize=address" not in K.emu_flags()

    loaded = []

    class FakeModule:
        def get_function(self, name):
            return lambda grid, block, args: None

    def fake_load_module(file, device, defines=()):
        loaded.append(device)
        return FakeModule()

    monkeypatch.setattr(K, "load_module", fake_load_module)
    monkeypatch.setattr(K, "_function", K._function.__wrapped__)   # past the per-kernel lookup cache
    y = np.zeros(8, dtype=np.float32)
    for value, device in [("1", "emulate+asan"), ("0", "emulate"), ("", "emulate")]:
        monkeypatch.setenv("MINIFB_KERNELS_ASAN", value)   # read at call time, as the suite mode needs
        assert K.asan_enabled() == (device == "emulate+asan")
        K.launch(PROBE, "oob_write", (1,), (8,), (y, np.int32(8), np.int32(0)))
        assert loaded[-1] == device



@pytest.mark.parametrize("value, on", [("1", True), ("TRUE", True), ("yes", True), (" on ", True),
                                       ("", False), ("0", False), ("false", False), ("No", False),
                                       ("OFF", False)])
def test_asan_flag_is_read_as_a_boolean(monkeypatch, value, on):
    """``MINIFB_KERNELS_ASAN=false`` turned ASan on (only "" and "0" counted as off) and killed the process."""
    monkeypatch.setenv("MINIFB_KERNELS_ASAN", value)
    assert K.asan_enabled() is on


@pytest.mark.parametrize("value", ["2", "maybe", "asan"])
def test_asan_flag_refuses_other_values_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("MINIFB_KERNELS_ASAN", value)
    with pytest.raises(ValueError, match=rf"MINIFB_KERNELS_ASAN={value!r}: expected 1/true/yes/on or 0/false/no/off"):
        K.asan_enabled()


def test_asan_without_libasan_preloaded_is_an_error_not_an_abort(tmp_path):
    """An ASan build loaded into a process without libasan made ASan abort the whole process; now the load is
    refused with a RuntimeError that says what to preload."""
    code = textwrap.dedent("""
        import numpy as np
        from minifb import kernels as K
        try:
            K.softmax_xent(np.zeros((2, 3), np.float32), np.arange(2))
        except RuntimeError as e:
            print("refused:", e)
    """)
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env.update(MINIFB_KERNELS_ASAN="1", MINIFB_KERNEL_CACHE=str(tmp_path),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "refused: MINIFB_KERNELS_ASAN is on but libasan is not loaded" in r.stdout
    assert "LD_PRELOAD=$(" in r.stdout and "-print-file-name=libasan.so)" in r.stdout
    assert list(tmp_path.iterdir()) == []          # refused before building anything


def _needs_cxx():
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("kernel emulation needs a C++ compiler")


def test_a_read_only_cache_holding_the_library_loads_it(tmp_path, monkeypatch):
    """Loading a library already built needs no write access; only a build does."""
    _needs_cxx()
    monkeypatch.setenv("MINIFB_KERNEL_CACHE", str(tmp_path))
    K.EmuModule(K._resolve("optim"))                 # built into the cache
    built = sorted(tmp_path.iterdir())
    real_access = os.access

    def read_only(path, mode, *args, **kw):         # chmod would not stop root: the folder reads as read-only
        if Path(path) == tmp_path and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kw)

    monkeypatch.setattr(K.os, "access", read_only)
    module = K.EmuModule(K._resolve("optim"))
    assert Path(module.lib._name) in built and sorted(tmp_path.iterdir()) == built
    with pytest.raises(OSError, match=rf"MINIFB_KERNEL_CACHE={re.escape(repr(str(tmp_path)))} is not writable"):
        K.EmuModule(K._resolve("optim"), defines=("MINIFB_UNUSED_MACRO",))    # another library: a build


def test_a_cache_that_is_not_a_folder_is_named_when_a_build_needs_it(tmp_path, monkeypatch):
    _needs_cxx()
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("MINIFB_KERNEL_CACHE", str(tmp_path / "file"))
    with pytest.raises(OSError, match=r"MINIFB_KERNEL_CACHE='.*/file' is not a folder"):
        K.EmuModule(K._resolve("optim"))


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o027, 0o750)], ids=["umask022", "umask027"])
def test_built_libraries_get_the_mode_of_a_new_file(tmp_path, monkeypatch, umask, mode):
    """Another user sharing the cache must be able to load a library: it was 0o711 (mkstemp's 0o600 plus the
    linker's execute bits), whatever the umask."""
    _needs_cxx()
    monkeypatch.setenv("MINIFB_KERNEL_CACHE", str(tmp_path))
    old = os.umask(umask)
    try:
        module = K.EmuModule(K._resolve("optim"))
    finally:
        os.umask(old)
    assert oct(os.stat(module.lib._name).st_mode & 0o777) == oct(mode)


def test_a_compiler_that_cannot_link_cpp_is_named_and_leaves_nothing_in_the_cache(tmp_path):
    """CXX=gcc compiles the emulation but leaves C++ symbols unresolved: the library was cached anyway and
    failed to load ever after with a message not naming CXX."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    # In a fresh interpreter: where a C++ runtime is already loaded (CuPy or PyTorch imported by another test
    # in this process), the library resolves its C++ symbols from it and loads, which is no error.
    code = textwrap.dedent("""
        import sys
        from minifb import kernels as K
        for _ in range(2):   # the second try meets the same error, not a stale file
            try:
                K.EmuModule(K._resolve("softmax_xent"))
            except RuntimeError as err:
                print("REFUSED", err)
            else:
                print("LOADED")
    """)
    env = dict(os.environ, MINIFB_KERNEL_CACHE=str(tmp_path), CXX="gcc",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    if "LOADED" in r.stdout:
        pytest.skip("a C++ runtime is loaded even in a fresh interpreter here: gcc's library loads")
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and all(re.search(r"built with CXX='gcc' does not load \(.*__gxx_personality", line)
                                   for line in lines), r.stdout
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ end to end
def _feedback_training_step(mode, record=None):
    """Loss and parameter gradients of 3 BPTT steps of a conv FeedbackChain with ConvTranspose feedback."""
    import operator

    import minifb as mf
    import minifb.functional as F
    from minifb import nn

    mf.manual_seed(0)
    net = nn.FeedbackChain(
        nn.Merger("up", nn.ConvTranspose(4, 3, 3, stride=2, padding=1, output_padding=1), operator.add),
        nn.Conv(3, 4, 3, mf.relu, padding=1),
        nn.MaxPool(2),
        nn.Splitter("up"),
        nn.Flatten(),
        nn.Dense(4 * 4 * 4, 5, mf.tanh),
    )
    rnet = nn.Recur(net, {"up": mf.zeros(2, 4, 4, 4)})
    x = mf.randn(2, 3, 8, 8)
    labels = mf.tensor(np.array([1, 3]))
    with K.use(mode):
        loss = 0
        for _ in range(3):
            loss = loss + F.cross_entropy(rnet(x), labels)
        loss.backward()
    return float(loss.numpy()), {n: p.grad.copy() for n, p in net.named_parameters()}


def test_end_to_end_feedback_training_step_matches_without_kernels(kernel_launches):
    loss_off, grads_off = _feedback_training_step("off")
    loss_on, grads_on = _feedback_training_step("emulate")
    assert {"im2col", "col2im", "maxpool_fwd", "maxpool_bwd", "softmax_xent", "bias_act_fwd",
            "bias_act_bwd"} <= set(kernel_launches), sorted(set(kernel_launches))
    assert abs(loss_on - loss_off) <= 1e-5 * abs(loss_off)
    assert grads_on.keys() == grads_off.keys()
    for name, g in grads_off.items():
        err = np.linalg.norm(grads_on[name] - g) / max(np.linalg.norm(g), 1e-12)
        assert err <= 1e-5, (name, err)


def test_relu_kernels_keep_nan():
    # numpy.maximum(NaN, 0) is NaN (so is PyTorch's relu): a diverging run must not be hidden on a GPU
    x = np.array([[np.nan, -1.0, 2.0]], dtype=np.float32)
    with K.use("emulate"):
        y = K.bias_act(x, None, "relu", 1)
        merged, _ = K.merger_forward(np.zeros_like(x), x, None, "relu")   # 0 + relu(feedback)
    for got in (y, merged):
        np.testing.assert_array_equal(host(got), R.bias_act_ref(x, None, "relu", 1))
        assert np.isnan(host(got)[0, 0])


@pytest.mark.parametrize("wrong", ["dhc", "hc", "gates"])
def test_lstm_backward_rejects_mismatched_shapes(wrong):
    B, H = 4, 3
    rng = np.random.default_rng(0)
    arrays = dict(dhc=rand(rng, B, 2 * H), gates=rand(rng, B, 4 * H), c=rand(rng, B, H), hc=rand(rng, B, 2 * H))
    arrays[wrong] = arrays[wrong][:1]            # a batch of 1 where the state has 4: would read past the end
    with K.use("emulate"), pytest.raises(ValueError, match=rf"LSTMCell backward: {wrong} must have shape"):
        K.lstm_cell_backward(arrays["dhc"], arrays["gates"], arrays["c"], arrays["hc"])


@pytest.mark.parametrize("wrong", ["dh", "saved"])
def test_gru_backward_rejects_mismatched_shapes(wrong):
    B, H = 4, 3
    rng = np.random.default_rng(0)
    arrays = dict(dh=rand(rng, B, H), saved=rand(rng, B, 4 * H), h=rand(rng, B, H))
    arrays[wrong] = arrays[wrong][:, :-1]
    with K.use("emulate"), pytest.raises(ValueError, match=rf"GRUCell backward: {wrong} must have shape"):
        K.gru_cell_backward(arrays["dh"], arrays["saved"], arrays["h"])


@pytest.mark.parametrize("k, s, p", [(2, 1, 1), (3, 2, 1), ((2, 3), 1, (1, 0))])
def test_maxpool_all_minus_inf_windows_name_a_real_cell(k, s, p):
    x = np.full((1, 2, 3, 4), -np.inf, dtype=np.float32)
    with K.use("emulate"):
        y, arg = K.maxpool_forward(x, k, s, p)
    ry, rarg = R.maxpool_forward_ref(x, k, s, p)
    np.testing.assert_array_equal(host(arg), rarg)
    assert (rarg >= 0).all() and (rarg < x.shape[2] * x.shape[3]).all()
    g = np.ones(ry.shape, dtype=np.float32)
    dx = R.maxpool_backward_ref(g, rarg, x.shape, k, s, p)
    assert dx.sum() == g.sum()                   # every output's gradient lands on a real input cell


def test_a_checkout_compiles_its_own_kernel_sources():
    """Tests in a checkout must test that checkout's .cu files, even when another minifb (say an editable
    install of a different worktree) provides ``minifb.kernels_src``."""
    import minifb

    checkout = Path(minifb.__file__).resolve().parent.parent / "kernels"
    assert (checkout / "cuda_emu.h").is_file()      # the tests run from a checkout
    assert K.source_dir() == checkout
    assert all(p.parent == checkout for p in K.kernel_files())


def test_emulated_launches_leave_no_reference_cycles():
    # a ctypes array type made per launch is a reference cycle that every garbage collection rebuilt
    import gc

    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("kernel emulation needs a C++ compiler")
    x = rand(np.random.default_rng(0), 4, 5)
    K.softmax_xent(x, np.arange(4))                          # built and loaded first
    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            K.softmax_xent(x, np.arange(4))
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_should_use_sends_arrays_past_32_bit_indices_to_the_array_path():
    with K.use("cuda"):
        assert K.should_use(_FakeCupyArray(np.float32, 2 ** 31 - 1))
        assert not K.should_use(_FakeCupyArray(np.float32), _FakeCupyArray(np.float32, 2 ** 31))
    big = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (2 ** 31,), (0,))   # no memory behind it
    with K.use("emulate"):
        assert not K.should_use(big) and K.should_use(np.zeros(3, np.float32))


def test_explicit_kernel_geometry_refuses_a_zero_stride():
    with pytest.raises(ValueError, match=r"kernel geometry: stride \(0, 0\) and dilation \(1, 1\) must be >= 1"):
        K.col2im(np.ones((9, 4), np.float32), (1, 1, 2, 2), 3, 3, stride=0, padding=1, out_hw=(2, 2))


def test_includes_with_a_trailing_comment_are_pasted_in(tmp_path):
    (tmp_path / "val.h").write_text("#define VAL 6\n")
    (tmp_path / "k.cu").write_text('#include "val.h"  // the constant\n#include "val.h" /* again */\nint v = VAL;\n')
    text = K.expanded_source(tmp_path / "k.cu")
    assert "#define VAL 6" in text and '#include "val.h"' not in text


# ---------------------------------------------------------------- found by mutation testing (session 13)
# ------------------------------------------------------------------ grid-stride loops past one grid (M01)
def test_grid_stride_loops_cover_more_than_one_grid(device, monkeypatch):
    """The 1-D kernels are grid-stride loops, but every other test's sizes fit in one grid (8192 blocks of
    256): with the grid capped at 2 blocks, each thread must take several strides."""
    monkeypatch.setattr(K, "MAX_BLOCKS", 2)   # _grid_1d reads it at call time
    rng = np.random.default_rng(7)
    x, b, g = rand(rng, 5, 7, 37), rand(rng, 7), rand(rng, 5, 7, 37)       # 1295 elements > 2 * 256
    y = K.bias_act(dev(x, device), dev(b, device), "tanh")
    close(y, R.bias_act_ref(x, b, "tanh", 1))
    dx, _ = K.bias_act_backward(dev(g, device), y, "tanh", need_bias=False)
    close(dx, R.bias_act_backward_ref(g, host(y), "tanh", 1, need_bias=False)[0])
    ym, am = K.merger_forward(dev(x, device), dev(g, device), dev(b, device), "relu")
    for got, want in zip((ym, am), R.merger_forward_ref(x, g, b, "relu")):
        close(got, want)
    B, H = 9, 70                                                            # B * H = 630
    gi, gh, c = rand(rng, B, 4 * H), rand(rng, B, 4 * H), rand(rng, B, H)
    hc, gates = K.lstm_cell_forward(dev(gi, device), dev(gh, device), dev(c, device))
    h_ref, c_ref, gates_ref = R.lstm_cell_forward_ref(gi, gh, c)
    close(hc, np.concatenate([h_ref, c_ref], axis=1))
    close(gates, gates_ref)
    dh, dc = rand(rng, B, H), rand(rng, B, H)
    got = K.lstm_cell_backward(dev(np.concatenate([dh, dc], axis=1), device), gates, dev(c, device), hc)
    for a, w in zip(got, R.lstm_cell_backward_ref(dh, dc, host(gates), c, host(hc)[:, H:])):
        close(a, w)
    gi3, gh3 = rand(rng, B, 3 * H), rand(rng, B, 3 * H)
    h_new, saved = K.gru_cell_forward(dev(gi3, device), dev(gh3, device), dev(c, device))
    for a, w in zip((h_new, saved), R.gru_cell_forward_ref(gi3, gh3, c)):
        close(a, w)
    got = K.gru_cell_backward(dev(dh, device), saved, dev(c, device))
    for a, w in zip(got, R.gru_cell_backward_ref(dh, host(saved), c)):
        close(a, w)
    xi = rand(rng, 2, 3, 11, 13)
    cols = K.im2col(dev(xi, device), 3, 2, (1, 2), (1, 0), (2, 1))
    np.testing.assert_array_equal(host(cols), R.im2col_ref(xi, 3, 2, (1, 2), (1, 0), (2, 1)))
    gc_ = rand(rng, *cols.shape)
    close(K.col2im(dev(gc_, device), xi.shape, 3, 2, (1, 2), (1, 0), (2, 1)),
          R.col2im_ref(gc_, xi.shape, 3, 2, (1, 2), (1, 0), (2, 1)))
    xp_ = rand(rng, 2, 3, 20, 21)
    yp, arg = K.maxpool_forward(dev(xp_, device), 2, 1, 1)
    ryp, rarg = R.maxpool_forward_ref(xp_, 2, 1, 1)
    np.testing.assert_array_equal(host(yp), ryp)
    np.testing.assert_array_equal(host(arg), rarg)
    gp = rand(rng, *ryp.shape)
    close(K.maxpool_backward(dev(gp, device), dev(rarg, device), xp_.shape, 2, 1, 1),
          R.maxpool_backward_ref(gp, rarg, xp_.shape, 2, 1, 1))
    n = 1000
    p, gg, buf = rand(rng, n), rand(rng, n), rand(rng, n)
    rp, rbuf = p.copy(), buf.copy()
    dp, dbuf = dev(p, device), dev(buf, device)
    K.sgd_update(dp, dev(gg, device), dbuf, 0.1, 0.9, 0.1, 1e-2, True, False)
    R.sgd_update_ref(rp, gg, rbuf, 0.1, 0.9, 0.1, 1e-2, True, False)
    close(dp, rp, rtol=1e-5, atol=1e-6)
    close(dbuf, rbuf, rtol=1e-5, atol=1e-6)
    m, v = rand(rng, n) * 0.1, np.abs(rand(rng, n)) * 0.01
    rp, rm, rv = p.copy(), m.copy(), v.copy()
    dp, dm, dv = dev(p, device), dev(m, device), dev(v, device)
    K.adam_update(dp, dev(gg, device), dm, dv, 1e-3, 0.9, 0.999, 1e-8, 1e-2, 3)
    R.adam_update_ref(rp, gg, rm, rv, 1e-3, 0.9, 0.999, 1e-8, 1e-2, 3)
    for a, w in ((dp, rp), (dm, rm), (dv, rv)):
        close(a, w, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ softmax_xent (M09, M10)
@pytest.mark.parametrize("at", [0, 255, 256, 700, 999])
def test_softmax_xent_row_max_spans_every_thread_stride(device, at):
    """K = 1000 > 256 threads: the row maximum must come from every strided pass, not only the first
    blockDim.x logits. A max missed by 200 overflows exp (the mutant gives inf/NaN); the stable answer is
    loss ~0 for the label at the peak and a one-hot-free gradient."""
    K_ = 1000
    logits = np.zeros((2, K_), np.float32)
    logits[:, at] = 200.0
    labels = np.array([at, (at + 1) % K_])
    loss, grad = K.softmax_xent(dev(logits, device), dev(labels, device), 0.5, True)
    rloss, rgrad = R.softmax_xent_ref(logits, labels, 0.5, True)
    assert np.isfinite(host(loss)).all() and np.isfinite(host(grad)).all()
    close(loss, rloss, rtol=1e-5, atol=1e-4)
    close(grad, rgrad, atol=1e-6)
    close(loss[1:], [200.0], rtol=1e-5, atol=1e-3)


def test_softmax_xent_ignores_labels_at_or_past_K(device):
    """'A label outside [0, K) marks an ignored row' on both sides: K and beyond, not only negatives."""
    rng = np.random.default_rng(3)
    logits = rand(rng, 5, 7)
    labels = np.array([7, 8, -1, 0, 6])            # rows 0-2 ignored
    loss, grad = K.softmax_xent(dev(logits, device), dev(labels, device), 1.0, True)
    rloss, rgrad = R.softmax_xent_ref(logits, labels, 1.0, True)
    close(loss, rloss, atol=1e-5)
    close(grad, rgrad, atol=1e-6)
    np.testing.assert_array_equal(host(loss)[:3], 0.0)
    np.testing.assert_array_equal(host(grad)[:3], 0.0)
    assert (host(loss)[3:] > 0).all()


# ------------------------------------------------------------------ maxpool_bwd clamps its window range (M20)
def test_maxpool_backward_reads_no_output_past_the_last_window(device):
    """Floor mode leaves the last input row / column uncovered (H=5, k=s=2: OH=2, row 4 in no window).
    Its gather range must be clamped to oh <= OH-1 (and ow <= OW-1): unclamped, the last plane reads argmax
    and g past their ends. g and argmax are passed as views of larger buffers whose tails hold a matching
    argmax and a gradient, so an unclamped read shows up as a gradient on the uncovered cells (without it,
    the read is an out-of-bounds access that only an ASan run might see)."""
    x = np.random.default_rng(1).standard_normal((1, 1, 5, 5)).astype(np.float32)
    y, arg = K.maxpool_forward(dev(x, device), 2)
    ry, rarg = R.maxpool_forward_ref(x, 2)
    n = rarg.size                                              # 4 outputs; OH = OW = 2
    W = 5                                                      # the input width
    arg_buf = np.full(n + 16, -1, np.int32)
    arg_buf[:n] = rarg.reshape(-1)
    g_buf = np.ones(n + 16, np.float32)
    # what an unclamped gather would read: o = n + k names row 4 / column 4 cells
    arg_buf[n:n + 2] = [4 * W + 0, 4 * W + 2]                 # (oh=2, ow=0), (oh=2, ow=1)
    arg_buf[n + 2:n + 4] = [4 * W + 4, 4 * W + 4]
    g_view = dev(g_buf, device)[:n].reshape(rarg.shape)
    a_view = dev(arg_buf, device)[:n].reshape(rarg.shape)
    dx = K.maxpool_backward(g_view, a_view, x.shape, 2)
    want = R.maxpool_backward_ref(np.ones(rarg.shape, np.float32), rarg, x.shape, 2)
    close(dx, want)
    np.testing.assert_array_equal(host(dx)[0, 0, 4, :], 0.0)
    np.testing.assert_array_equal(host(dx)[0, 0, :, 4], 0.0)


# ------------------------------------------------------------------ should_use on mixed devices (M28)
@pytest.mark.parametrize("m", ["emulate", "cuda"])
def test_should_use_refuses_a_mix_of_cupy_and_numpy_arrays(m):
    """A kernel launches on one device: CuPy operands next to a NumPy one must go to the array path (a
    NumPy pointer handed to a GPU kernel is an illegal address), in either mode and either order."""
    gpu, cpu = _FakeCupyArray(np.float32), np.zeros(6, np.float32)
    with K.use(m):
        assert K.should_use(gpu, _FakeCupyArray(np.float32))
        assert not K.should_use(gpu, cpu)
        assert not K.should_use(cpu, gpu)
        assert not K.should_use(gpu, None, cpu)


# ------------------------------------------------------------------ merger honours its layout (M30)
@pytest.mark.parametrize("axis", [0, 2, 3])
@pytest.mark.parametrize("as_triple", [False, True])
def test_merger_channel_layout_other_than_axis_1(device, axis, as_triple):
    """test_merger only uses the default channel axis 1; the op (fused.py) passes its channel axis as the layout,
    e.g. a channels-last feedback path."""
    rng = np.random.default_rng(axis)
    shape = [5, 5, 5, 5]
    shape[axis] = 3           # the default axis 1 has 5 channels: ignoring the layout cannot pass
    x, fb, g = rand(rng, *shape), rand(rng, *shape), rand(rng, *shape)
    b = rand(rng, shape[axis])
    layout = R.channel_layout(shape, axis) if as_triple else axis
    y, a = K.merger_forward(dev(x, device), dev(fb, device), dev(b, device), "sigmoid", layout)
    ry, ra = R.merger_forward_ref(x, fb, b, "sigmoid", axis)
    close(y, ry)
    close(a, ra)
    dfb, db = K.merger_backward(dev(g, device), dev(ra, device), "sigmoid", layout)
    rdfb, rdb = R.merger_backward_ref(g, ra, "sigmoid", axis)
    close(dfb, rdfb)
    close(db, rdb, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- the emulator, found by mutation testing (session 13)
def test_emulator_shuffles_of_width_8_stay_in_their_segment():
    """up/down keep the lane's own value past the 8-lane segment's edge (not the warp's), and an index
    shuffle wraps modulo the width, a negative or past-the-width lane included (CUDA: srcLane % width)."""
    x = np.arange(2 * 64, dtype=np.float32)
    outs = [np.zeros_like(x) for _ in range(4)]
    probe("shuffles_width8", (2,), (64,), x, *outs)
    w, lane = x.reshape(-1, 8), np.arange(8)
    np.testing.assert_array_equal(outs[0].reshape(-1, 8), np.where(lane >= 3, w[:, np.maximum(lane - 3, 0)], w))
    np.testing.assert_array_equal(outs[1].reshape(-1, 8), np.where(lane + 3 < 8, w[:, np.minimum(lane + 3, 7)], w))
    np.testing.assert_array_equal(outs[2].reshape(-1, 8), np.repeat(w[:, 7:8], 8, axis=1))   # lane -1 -> 7
    np.testing.assert_array_equal(outs[3].reshape(-1, 8), np.repeat(w[:, 3:4], 8, axis=1))   # lane 11 -> 3


def test_emulator_back_to_back_up_shuffles_read_the_values_of_their_own_round():
    """A lane that already went on to its next shuffle must not overwrite the value a higher lane has still
    to read from the previous one (the exchange is double-buffered by the warp's barrier count)."""
    x = np.random.default_rng(1).integers(-50, 50, 3 * 64).astype(np.float32)
    out = np.zeros_like(x)
    probe("warp_scan", (3,), (64,), x, out)
    np.testing.assert_array_equal(out.reshape(-1, 32), np.cumsum(x.reshape(-1, 32), axis=1))


def test_emulator_shuffles_in_a_3d_block_use_the_linear_thread_id():
    grid, block = (2, 1, 1), (8, 4, 2)          # 64 threads: blockDim.y != blockDim.z
    x = np.arange(128, dtype=np.float32)
    out = np.zeros_like(x)
    probe("shuffle_3d", grid, block, x, out)
    w = x.reshape(-1, 32)
    np.testing.assert_array_equal(out.reshape(-1, 32), w[:, np.arange(32) ^ 1] + 1000 * w[:, 31:32])


@pytest.mark.parametrize("grid,block", [((2, 3, 4), (3, 2, 4)), ((4, 3, 2), (2, 4, 3))])
def test_emulator_3d_index_with_distinct_extents(grid, block):
    """Every extent differs, so a y/z mix-up in the blockIdx or threadIdx decomposition shows (the
    original test's grid (3, 2, 2) has y == z)."""
    n = int(np.prod(grid) * np.prod(block))
    out = np.full(4 * n, -1, dtype=np.int32)     # slack: a wrong decomposition writes past n, not past the array
    probe("index3d", grid, block, out)
    np.testing.assert_array_equal(out[:n], np.arange(n))
    assert (out[n:] == -1).all()


def test_emulator_atomics_return_the_old_value():
    n = 1000
    counter, maxv, facc = np.zeros(1, np.int32), np.full(1, -1, np.int32), np.zeros(1, np.float32)
    ucounter = np.zeros(1, np.uint32)
    tickets, max_old, fold = np.full(n, -9, np.int32), np.full(n, -9, np.int32), np.full(n, -9, np.float32)
    probe("atomics", (4,), (256,), counter, tickets, maxv, max_old, facc, fold, ucounter, np.int32(n))
    assert counter[0] == n and facc[0] == n and ucounter[0] == 2 * n
    np.testing.assert_array_equal(np.sort(tickets), np.arange(n))          # each old value once
    np.testing.assert_array_equal(np.sort(fold), np.arange(n, dtype=np.float32))
    assert maxv[0] == n - 1                                                # (g * 7919) % n: a permutation
    assert (max_old == -1).sum() == 1 and ((max_old >= -1) & (max_old <= n - 1)).all()


def test_emulator_run_ahead_order_follows_the_parity_of_all_three_block_indices():
    out = np.zeros((4, 64), np.float32)
    probe("write_after_read_race_3d", (2, 2), (64,), out)
    hi_first, lo_first = np.repeat([2.0, 1.0], 32), np.repeat([1.0, 2.0], 32)
    for b, (bx, by) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
        np.testing.assert_array_equal(out[b], hi_first if (bx + by) % 2 == 0 else lo_first)


@pytest.mark.parametrize("name,message", [
    ("warp_vs_block_barrier", r"divergent warp barrier: lane 16 of warp 0 is named by the mask but waits at __syncthreads"),
    ("warp_barrier_on_an_exited_lane", r"divergent warp barrier: lane 1 of warp 0 is named by the mask but has exited"),
])
def test_emulator_reports_warp_barrier_divergence_precisely(name, message):
    y = np.zeros(32, dtype=np.float32)
    with pytest.raises(RuntimeError, match=message):
        probe(name, (1,), (32,), y)


def test_emulator_library_itself_refuses_a_block_over_1024_threads():
    """The C entry point checks the block size too (the Python check is not the only guard)."""
    import ctypes
    k = K.load_module(PROBE, "emulate").get_function("index3d")
    out = np.zeros(2048, np.int32)
    holder = ctypes.c_void_p(out.ctypes.data)
    argv = (ctypes.c_void_p * 1)(ctypes.addressof(holder))
    err = ctypes.create_string_buffer(1024)
    assert k._fn(1, 1, 1, 2048, 1, 1, argv, err, 1024) == 1
    assert b"invalid launch configuration" in err.value and not out.any()


def test_emulated_launch_refuses_a_grid_z_past_the_gpus_limit():
    y = np.zeros(8, np.float32)
    with pytest.raises(RuntimeError, match="invalid launch configuration"):
        probe("oob_write", (1, 1, 70000), (8,), y, np.int32(8), np.int32(0))


def test_launch_checks_scalar_and_array_arguments_exactly():
    y = np.zeros(16, dtype=np.float32)
    with pytest.raises(TypeError, match="np.int32"):                   # 8 bytes where the kernel reads 4
        probe("oob_write", (1,), (8,), y, np.int64(8), np.int32(0))
    with pytest.raises(TypeError, match="np.int32"):
        probe("oob_write", (1,), (8,), y, np.float32(8), np.int32(0))
    with pytest.raises(ValueError, match="C-contiguous"):
        probe("oob_write", (1,), (8,), y[::2], np.int32(8), np.int32(0))
    with pytest.raises(TypeError, match="float32"):                    # same item size, wrong type
        probe("oob_write", (1,), (8,), y.view(np.int32), np.int32(8), np.int32(0))
    ro = y.copy()
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        probe("oob_write", (1,), (8,), ro, np.int32(8), np.int32(0))
    assert not y.any()


def test_emulation_cache_key_covers_cuda_emu_h(tmp_path, monkeypatch):
    """A change to cuda_emu.h alone must rebuild the library, not reuse a stale one from the cache."""
    src = tmp_path / "kernels"
    src.mkdir()
    header = (K.source_dir() / "cuda_emu.h").read_text()
    (src / "cuda_emu.h").write_text(header)
    cu = src / "mark.cu"
    cu.write_text('#ifndef __CUDACC__\n#include "cuda_emu.h"\n#endif\n'
                  'extern "C" __global__ void mark(int* y) {\n#ifdef EMU_MARK\n y[0] = 1;\n#else\n y[0] = 2;\n'
                  '#endif\n}\n')
    monkeypatch.setattr(K, "source_dir", lambda: src)
    monkeypatch.setenv("MINIFB_KERNEL_CACHE", str(tmp_path / "cache"))
    y = np.zeros(1, np.int32)
    K.EmuModule(cu).get_function("mark")((1,), (1,), (y,))
    assert y[0] == 2
    (src / "cuda_emu.h").write_text(header + "\n#define EMU_MARK 1\n")
    K.EmuModule(cu).get_function("mark")((1,), (1,), (y,))
    assert y[0] == 1


def test_emulator_shuffle_offsets_use_their_low_5_bits_as_ptx_does():
    """PTX's shfl.sync reads only bits 4:0 of an up/down offset or xor mask: 33 acts as 1 (the emulator
    used the whole value, so every such shuffle returned the lane's own value)."""
    x = np.arange(32, dtype=np.float32) * 3 + 1
    down, xr, up = (np.zeros_like(x) for _ in range(3))
    probe("shuffle_offsets_past_31", (1,), (32,), x, down, xr, up)
    lane = np.arange(32)
    np.testing.assert_array_equal(down, x[np.minimum(lane + 1, 31)])
    np.testing.assert_array_equal(xr, x[lane ^ 1])
    np.testing.assert_array_equal(up, x[np.maximum(lane - 1, 0)])

