"""Tests of minifb.cpu_conv: the compiled CPU convolution (kernels/conv_cpu.cpp) and how ops/conv.py uses it.

The NumPy im2col path is the reference: every primitive is compared with it on random geometries
(hypothesis), in float64 (to rounding) and float32, with channel counts and widths that are not whole
vectors or tiles. tests/test_conv.py runs its whole suite (naive loops, gradchecks, adjoint identities,
PyTorch) on both paths. Here also: the switches (``use``, ``MINIFB_CPU_CONV``), threads, a machine without
a compiler, and a forked child.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import minifb as mf
import minifb.functional as F
from minifb import cpu_conv
from minifb.ops import conv as C

pytestmark = pytest.mark.skipif(not cpu_conv.enabled(), reason="the compiled CPU convolution is unavailable "
                                "(no C++ compiler, or MINIFB_CPU_CONV=off)")


def _both_paths(fn):
    """``fn()`` on the compiled path and on the NumPy path: (compiled result, NumPy result)."""
    with cpu_conv.use(True):
        compiled = fn()
    with cpu_conv.use(False):
        reference = fn()
    return compiled, reference


def _close(a, b, dtype):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype == dtype
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale)


def _step(op, x, w, b, kw, dtype, seed):
    """Forward and backward of ``op`` with a fixed output gradient: (y, gx, gw, gb) as arrays."""
    xt = mf.tensor(x, dtype=dtype, requires_grad=True)
    wt = mf.tensor(w, dtype=dtype, requires_grad=True)
    bt = None if b is None else mf.tensor(b, dtype=dtype, requires_grad=True)
    y = op(xt, wt, bt, **kw)
    g = np.random.default_rng(seed).standard_normal(y.shape)
    (y * mf.tensor(g, dtype=dtype)).sum().backward()
    return y.numpy(), xt.grad, wt.grad, (None if bt is None else bt.grad)


@st.composite
def conv_cases(draw, transpose=False):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 20))
    kg = draw(st.sampled_from([1, 5, 16, 17, 33, 64]))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    n = draw(st.integers(1, 3))
    span = [d * (k - 1) + 1 for d, k in zip(dilation, (kh, kw))]
    h = draw(st.integers(max(1, span[0] - 2 * padding[0]), 12))
    wd = draw(st.integers(max(1, span[1] - 2 * padding[1]), 19))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    kw_args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    if transpose:
        kw_args["output_padding"] = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
        w_shape = (cg * groups, kg, kh, kw)
        out = [(n_ - 1) * s - 2 * p + e + op for n_, s, p, e, op in
               zip((h, wd), stride, padding, span, kw_args["output_padding"])]
        assume(min(out) >= 1)
    else:
        w_shape = (kg * groups, cg, kh, kw)
    return (n, cg * groups, h, wd), w_shape, kw_args, dtype, draw(st.booleans()), draw(st.integers(0, 10**6))


@settings(max_examples=60, deadline=None)
@given(conv_cases())
def test_conv2d_matches_the_numpy_path(case):
    x_shape, w_shape, kw, dtype, bias, seed = case
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0]) if bias else None
    compiled, reference = _both_paths(lambda: _step(F.conv2d, x, w, b, kw, dtype, seed))
    for a, r in zip(compiled, reference):
        if r is not None:
            _close(a, r, dtype)


@settings(max_examples=60, deadline=None)
@given(conv_cases(transpose=True))
def test_conv_transpose2d_matches_the_numpy_path(case):
    x_shape, w_shape, kw, dtype, bias, seed = case
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[1] * kw["groups"]) if bias else None
    compiled, reference = _both_paths(lambda: _step(F.conv_transpose2d, x, w, b, kw, dtype, seed))
    for a, r in zip(compiled, reference):
        if r is not None:
            _close(a, r, dtype)


def test_the_compiled_path_is_taken():
    """The primitives really call the library (a broken one would make every comparison compare NumPy with
    itself)."""
    calls = []
    real = cpu_conv._call

    def counting(name, arrays, geometry):
        calls.append(name)
        return real(name, arrays, geometry)

    x = mf.tensor(np.ones((2, 3, 5, 5)), requires_grad=True)
    w = mf.tensor(np.ones((4, 3, 3, 3)), requires_grad=True)
    cpu_conv._call, saved = counting, cpu_conv._call
    try:
        with cpu_conv.use(True):
            F.conv2d(x, w, padding=1).sum().backward()
        assert calls == ["forward", "input_grad", "weight_grad"]
        calls.clear()
        with cpu_conv.use(False):
            F.conv2d(x, w, padding=1).sum().backward()
        assert calls == []
    finally:
        cpu_conv._call = saved


def test_same_padding_and_large_channel_counts():
    """'same' padding is asymmetric for an even kernel; 130 output channels need three vector blocks."""
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 70, 9, 13)), rng.standard_normal((130, 70, 4, 2)), rng.standard_normal(130)
    compiled, reference = _both_paths(lambda: _step(F.conv2d, x, w, b, dict(padding="same"), np.float64, 1))
    for a, r in zip(compiled, reference):
        _close(a, r, np.float64)


def test_inputs_in_any_memory_layout():
    """Channels-last views, sliced and Fortran-ordered inputs give the same result as contiguous ones."""
    rng = np.random.default_rng(4)
    base = rng.standard_normal((3, 7, 11, 6))
    layouts = [np.ascontiguousarray(base), np.ascontiguousarray(base.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),
               np.asfortranarray(base), np.pad(base, ((0, 0), (0, 0), (1, 1), (2, 0)))[:, :, 1:-1, 2:]]
    w = rng.standard_normal((5, 7, 3, 3))
    expected = C.conv2d(mf.tensor(layouts[0], dtype="float64"), mf.tensor(w, dtype="float64"), padding=1).numpy()
    for x in layouts:
        y = C.conv2d(mf.tensor(x, dtype="float64"), mf.tensor(w, dtype="float64"), padding=1).numpy()
        np.testing.assert_allclose(y, expected, rtol=0, atol=1e-12)


def test_empty_batch_and_one_pixel():
    w = mf.tensor(np.ones((4, 2, 3, 3)))
    assert F.conv2d(mf.zeros(0, 2, 5, 5), w, padding=1).shape == (0, 4, 5, 5)
    y = F.conv2d(mf.ones(1, 2, 1, 1), w, padding=1)
    np.testing.assert_allclose(y.numpy(), np.full((1, 4, 1, 1), 2.0))


def test_thread_count_does_not_change_the_result():
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((5, 8, 10, 10)), rng.standard_normal((16, 8, 3, 3))
    saved = cpu_conv.get_num_threads()
    results = []
    try:
        for threads in (1, 3):
            cpu_conv.set_num_threads(threads)
            assert cpu_conv.get_num_threads() == threads
            results.append(_step(F.conv2d, x, w, None, dict(stride=2, padding=1), np.float64, 0))
    finally:
        cpu_conv.set_num_threads(saved)
    for a, b in zip(*results):
        if b is not None:
            _close(a, b, np.float64)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError),
                                        ("2", TypeError)])
def test_set_num_threads_refuses_bad_counts(bad, error):
    with pytest.raises(error, match="set_num_threads"):
        cpu_conv.set_num_threads(bad)


def test_use_refuses_a_non_bool():
    with pytest.raises(TypeError, match="cpu_conv.use"):
        with cpu_conv.use("off"):
            pass


def test_use_nests_and_restores():
    with cpu_conv.use(False):
        assert not cpu_conv.enabled()
        with cpu_conv.use(True):
            assert cpu_conv.enabled()
        assert not cpu_conv.enabled()
    assert cpu_conv.enabled()


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("MINIFB_CPU_CONV", "OFF")
    assert not cpu_conv.enabled()
    assert not cpu_conv.applies(np.ones(3))
    with cpu_conv.use(True):           # a use() block wins over the variable
        assert cpu_conv.enabled()
    monkeypatch.setenv("MINIFB_CPU_CONV", "on")
    assert cpu_conv.enabled()
    monkeypatch.setenv("MINIFB_CPU_CONV", "sometimes")
    with pytest.raises(ValueError, match="MINIFB_CPU_CONV='sometimes'"):
        cpu_conv.enabled()


def test_applies_only_to_numpy_floats_of_one_dtype():
    f32, f64 = np.ones(2, np.float32), np.ones(2)
    assert cpu_conv.applies(f32, f32, None)
    assert cpu_conv.applies(f64, f64)
    assert not cpu_conv.applies(f32, f64)
    assert not cpu_conv.applies(np.ones(2, np.float16))
    assert not cpu_conv.applies(np.ones(2, np.int64))
    assert not cpu_conv.applies()


def test_mixed_dtypes_take_the_numpy_path():
    """float32 input with a float64 weight: NumPy's promotion, as before (the kernels take one dtype)."""
    x = mf.tensor(np.ones((1, 2, 4, 4)), dtype="float32")
    w = mf.tensor(np.ones((3, 2, 3, 3)), dtype="float64")
    y = F.conv2d(x, w, padding=1)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y.numpy()[0, 0, 1, 1], 18.0)


def _run(code, **env):
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full, timeout=300)


def _failing_compiler(tmp_path):
    """A CXX that answers ``--version`` but compiles nothing (exit status 1, a message on stderr)."""
    cxx = tmp_path / "broken-cxx"
    cxx.write_text('#!/bin/sh\nif [ "$1" = --version ]; then echo "broken 1.0"; exit 0; fi\n'
                   'echo "broken-cxx: cannot compile" >&2; exit 1\n')
    cxx.chmod(0o755)
    return str(cxx)


@pytest.mark.parametrize("compiler", ["missing", "failing"])
def test_without_a_compiler_the_numpy_path_is_taken_with_one_warning(tmp_path, compiler):
    code = """
        import warnings
        import numpy as np
        import minifb as mf, minifb.functional as F
        from minifb import cpu_conv
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x, w = mf.ones(1, 2, 4, 4), mf.ones(3, 2, 3, 3)
            a = F.conv2d(x, w, padding=1).numpy()
            b = F.conv2d(x, w, padding=1).numpy()
        assert not cpu_conv.enabled()
        assert a[0, 0, 1, 1] == 18 and (a == b).all()
        messages = [str(c.message) for c in caught if "compiled CPU convolution" in str(c.message)]
        assert len(messages) == 1, messages
        assert "MINIFB_CPU_CONV=off" in messages[0]
        print("ok")
    """
    cxx = str(tmp_path / "no-such-compiler") if compiler == "missing" else _failing_compiler(tmp_path)
    r = _run(code, CXX=cxx, MINIFB_KERNEL_CACHE=str(tmp_path / "cache"))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    if compiler == "failing":    # the build was attempted, and announced (it takes ~20 s when it works)
        assert "minifb: compiling the CPU convolution (f32)" in r.stderr


def test_on_without_a_compiler_is_an_error(tmp_path):
    code = """
        import minifb as mf, minifb.functional as F
        try:
            F.conv2d(mf.ones(1, 2, 4, 4), mf.ones(3, 2, 3, 3))
        except RuntimeError as e:
            print(e)
    """
    r = _run(code, CXX=str(tmp_path / "no-such-compiler"), MINIFB_KERNEL_CACHE=str(tmp_path / "cache"),
             MINIFB_CPU_CONV="on")
    assert r.returncode == 0, r.stderr
    assert "MINIFB_CPU_CONV=on" in r.stdout and "no-such-compiler" in r.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_convolves():
    """The thread pool is remade in a child (which has none of the parent's worker threads); a pool
    inherited as it was would wait for threads that do not exist."""
    code = """
        import multiprocessing as mp
        import numpy as np
        import minifb as mf, minifb.functional as F
        from minifb import cpu_conv
        cpu_conv.set_num_threads(2)
        x, w = mf.ones(4, 8, 16, 16), mf.ones(8, 8, 3, 3)
        parent = F.conv2d(x, w, padding=1).numpy()

        def child(q):
            q.put(F.conv2d(x, w, padding=1).numpy())

        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        out = q.get(timeout=60)
        p.join(60)
        assert p.exitcode == 0 and np.array_equal(out, parent)
        print("ok")
    """
    r = _run(code)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_a_feedback_network_trains_the_same_on_both_paths():
    """W2's structure at a small size: a Recur over a FeedbackChain of Conv and ConvTranspose, two SGD steps,
    the same parameters on both paths (float64)."""
    import operator

    from minifb import nn, optim

    def run():
        mf.manual_seed(0)
        net = nn.FeedbackChain(
            nn.Conv(1, 4, 3, mf.relu, padding=1),
            nn.Merger("s", nn.ConvTranspose(6, 4, 4, stride=2, padding=1), operator.add),
            nn.Conv(4, 6, 3, mf.relu, stride=2, padding=1),
            nn.Splitter("s"),
            nn.Flatten(),
            nn.Dense(6 * 4 * 4, 3),
        )
        x = mf.tensor(np.random.default_rng(1).standard_normal((2, 1, 8, 8)))
        labels = np.array([0, 2])
        opt = optim.SGD(net.parameters(), lr=0.1)
        for _ in range(2):
            rnet = nn.Recur(net, net.initial_state(x))
            for _ in range(3):
                out = rnet(x)
            loss = F.cross_entropy(out, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return [p.numpy().copy() for p in net.parameters()]

    compiled, reference = _both_paths(run)
    for a, r in zip(compiled, reference):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5)


def test_python_threads_convolving_at_once_get_their_own_results():
    """ctypes releases the GIL, so convolutions from several Python threads reach the library at once; the
    pool runs one call at a time and each thread gets its own answer."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(6)
    w = mf.tensor(rng.standard_normal((8, 4, 3, 3)), dtype="float64")
    xs = [mf.tensor(rng.standard_normal((3, 4, 12, 12)), dtype="float64") for _ in range(8)]
    with cpu_conv.use(False):
        expected = [F.conv2d(x, w, padding=1).numpy() for x in xs]

    def convolve(i):
        with cpu_conv.use(True):
            return [F.conv2d(xs[i], w, padding=1).numpy() for _ in range(20)]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(convolve, range(len(xs))))
    for got, want in zip(results, expected):
        for y in got:
            np.testing.assert_allclose(y, want, rtol=0, atol=1e-12)
