"""Tests for minifb.ops.recurrent (the fused LSTM/GRU pointwise ops) and the kernel dispatch around them.

* float64 gradchecks and a formula check of both ops on the array path;
* the kernel path (emulated on the CPU, CuPy on a GPU) against the array path, forward and backward;
* the optimisers' kernel hook (SGD, Adam, AdamW) against their array code;
* end to end: an LSTM and a GRU trained for two BPTT steps give the same losses, gradients and parameters
  with and without kernels.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import minifb as mf
import minifb.functional as F
from minifb import backend, kernel_refs, kernels, nn, optim
from minifb.ops.recurrent import GRUPointwise, LSTMPointwise
from minifb.testing import gradcheck

CELLS = {"lstm": (LSTMPointwise, 4), "gru": (GRUPointwise, 3)}


def kernel_mode(device):
    """The kernel mode that routes ``device``'s arrays through the kernels."""
    if device == "cpu" and shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("kernel emulation needs a C++ compiler")
    return "emulate" if device == "cpu" else "cuda"


def _inputs(kind, lead, H, rng, dtype, device="cpu", state_lead=None, requires=(True, True, True)):
    G = CELLS[kind][1]
    shapes = (lead + (G * H,), lead + (G * H,), (lead if state_lead is None else state_lead) + (H,))
    return [mf.tensor(rng.standard_normal(s).astype(dtype), dtype=dtype, requires_grad=r, device=device)
            for s, r in zip(shapes, requires)]


# ---- array path: gradients and formulas ------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("lead,state_lead", [((3,), None), ((2, 3), None), ((), None), ((4,), ()), ((1,), (5,))])
def test_gradcheck_float64(kind, lead, state_lead):
    op = CELLS[kind][0]
    rng = np.random.default_rng(0)
    gi, gh, s = _inputs(kind, lead, 5, rng, np.float64, state_lead=state_lead)
    assert gradcheck(lambda a, b, c: op.apply(a, b, c), gi, gh, s)


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("requires", [(True, False, False), (False, True, False), (False, False, True),
                                      (True, True, False)])
def test_gradcheck_with_some_inputs_constant(kind, requires):
    op = CELLS[kind][0]
    gi, gh, s = _inputs(kind, (3,), 4, np.random.default_rng(1), np.float64, requires=requires)
    out = op.apply(gi, gh, s)
    out.backward(np.ones(out.shape))
    for t, r in zip((gi, gh, s), requires):
        assert (t.grad is not None) == r
    assert gradcheck(lambda a, b, c: op.apply(a, b, c), gi, gh, s)


def test_lstm_pointwise_matches_the_equations():
    rng = np.random.default_rng(2)
    H = 3
    gi, gh, c = _inputs("lstm", (4,), H, rng, np.float64)
    out = LSTMPointwise.apply(gi, gh, c).numpy()
    h_ref, c_ref, _ = kernel_refs.lstm_cell_forward_ref(gi.data, gh.data, c.data)
    np.testing.assert_allclose(out[:, :H], h_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out[:, H:], c_ref, rtol=1e-12, atol=1e-14)


def test_gru_pointwise_matches_the_equations():
    rng = np.random.default_rng(3)
    H = 3
    gi, gh, h = _inputs("gru", (4,), H, rng, np.float64)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    r = sig(gi.data[:, :H] + gh.data[:, :H])
    z = sig(gi.data[:, H:2 * H] + gh.data[:, H:2 * H])
    n = np.tanh(gi.data[:, 2 * H:] + r * gh.data[:, 2 * H:])
    np.testing.assert_allclose(GRUPointwise.apply(gi, gh, h).numpy(), (1 - z) * n + z * h.data,
                               rtol=1e-12, atol=1e-14)


def test_saturated_gates_stay_finite():
    gi = mf.tensor(np.full((2, 8), 1e4), dtype="float64", requires_grad=True)
    gh = mf.tensor(np.full((2, 8), -3e4), dtype="float64", requires_grad=True)
    c = mf.tensor(np.ones((2, 2)), dtype="float64", requires_grad=True)
    out = LSTMPointwise.apply(gi, gh, c)
    out.sum().backward()
    assert np.isfinite(out.numpy()).all() and np.isfinite(gi.grad).all() and np.isfinite(c.grad).all()



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_gates_keep_their_relative_precision(dtype):
    # a gate of sigmoid(-12) = 6e-6 scales a cell state of 1e3: 0.5 + 0.5 tanh(a/2) cancels to a few ulps of 0.5,
    # which made c' 0.0061393 instead of 0.0061442 (and sigmoid(-20) exactly 0)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for c0, f_pre in ((1e3, -12.0), (1e6, -20.0)):
        gi = mf.tensor(np.array([[30.0, f_pre, 0.0, 30.0]]), dtype=dtype)
        c = mf.tensor(np.array([[c0]]), dtype=dtype)
        with kernels.use("off"):
            out = LSTMPointwise.apply(gi, mf.zeros(1, 4, dtype=dtype), c).numpy()
        np.testing.assert_allclose(out[0, 1], sig(f_pre) * c0, rtol=1e-5)
        g3 = mf.tensor(np.array([[0.0, f_pre, 0.5]]), dtype=dtype)   # GRU: h' = n + z (h - n)
        with kernels.use("off"):
            h_new = GRUPointwise.apply(g3, mf.zeros(1, 3, dtype=dtype), c).numpy()[0, 0]
        n = np.tanh(0.5)
        np.testing.assert_allclose(h_new - n, sig(f_pre) * (c0 - n), rtol=1e-4)

@pytest.mark.parametrize("kind", list(CELLS))
def test_bad_shapes_raise(kind):
    op, G = CELLS[kind]
    name = f"{kind}_pointwise"   # the public function, not the internal op class (audit 14)
    fn = getattr(F, name)
    for call in (op.apply, fn):
        with pytest.raises(ValueError, match=rf"^{name}: gate pre-activations gi \(2, {G * 3}\) and gh "
                                             rf"\(2, {G * 3 + 1}\)"):
            call(mf.zeros(2, G * 3), mf.zeros(2, G * 3 + 1), mf.zeros(2, 3))
        with pytest.raises(ValueError, match=rf"^{name}: .*state of shape \(2, 4\)"):
            call(mf.zeros(2, G * 3), mf.zeros(2, G * 3), mf.zeros(2, 4))
        with pytest.raises(ValueError, match=rf"^{name}: batch shapes"):
            call(mf.zeros(2, G * 3), mf.zeros(2, G * 3), mf.zeros(3, 3))
    with pytest.raises(ValueError, match="broadcast"):
        op.apply(mf.zeros(2, G * 3), mf.zeros(2, G * 3), mf.zeros(3, 3))


# ---- kernel path against the array path -------------------------------------------------------------------
def _run_op(kind, arrays, grad, device, mode):
    op = CELLS[kind][0]
    ts = [mf.tensor(a, dtype=a.dtype, requires_grad=True, device=device) for a in arrays]
    with kernels.use(mode):
        out = op.apply(*ts)
        out.backward(backend.to_device(grad, device))
    return [backend.to_numpy(out.data)] + [backend.to_numpy(t.grad) for t in ts]


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("B,H", [(1, 1), (3, 5), (7, 40), (2, 257), (0, 4)])
def test_kernel_path_matches_array_path(kind, B, H, device, kernel_launches):
    mode = kernel_mode(device)
    G = CELLS[kind][1]
    rng = np.random.default_rng(B * 1000 + H)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in ((B, G * H), (B, G * H), (B, H))]
    grad = rng.standard_normal((B, (2 if kind == "lstm" else 1) * H)).astype(np.float32)
    want = _run_op(kind, arrays, grad, device, "off")
    got = _run_op(kind, arrays, grad, device, mode)
    for a, b in zip(got, want):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if device == "cpu" and B:
        assert {f"{kind}_cell_fwd", f"{kind}_cell_bwd"} <= set(kernel_launches)


def test_kernel_path_is_skipped_for_float64(kernel_launches):
    gi, gh, c = _inputs("lstm", (2,), 3, np.random.default_rng(4), np.float64)
    with kernels.use("emulate"):
        LSTMPointwise.apply(gi, gh, c).sum().backward()
    assert kernel_launches == []



@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
@pytest.mark.parametrize("kind", list(CELLS))
def test_integer_or_boolean_state_takes_the_array_path(kind, dtype):
    """A cell given an integer or boolean zero state (``mf.tensor([[0, 0, 0]])``) runs as without kernels:
    the kernels are float32 only, so the dispatch must not hand them such a state."""
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("kernel emulation needs a C++ compiler")
    got = {}
    for mode in ("off", "emulate"):
        mf.manual_seed(0)
        cell = nn.LSTMCell(4, 3) if kind == "lstm" else nn.GRUCell(4, 3)
        x = mf.randn(2, 4)
        zero = mf.tensor(np.zeros((2, 3), dtype=dtype))
        state = (zero, zero) if kind == "lstm" else zero
        with kernels.use(mode):
            state, y = cell(state, x)
            y.sum().backward()
        got[mode] = y.numpy(), y.dtype, [p.grad.copy() for p in cell.parameters()]
    (y_on, dt_on, g_on), (y_off, dt_off, g_off) = got["emulate"], got["off"]
    assert dt_on == dt_off
    np.testing.assert_allclose(y_on, y_off, rtol=1e-6)
    for a, b in zip(g_on, g_off):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

# ---- optimisers ---------------------------------------------------------------------------------------------
OPTIMISERS = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.05, momentum=0.8, dampening=0.3)),
    (optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.02)),
    (optim.Adam, dict(lr=0.01)),
    (optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.05)),
    (optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
]


def _optimise(cls, kw, device, mode, steps=4):
    rng = np.random.default_rng(5)
    shapes = [(3, 4), (7,), (2, 3, 5)]
    params = [mf.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True, device=device)
              for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(steps)]
    opt = cls(params, **kw)
    with kernels.use(mode):
        for gs in grads:
            for p, g in zip(params, gs):
                p.grad = backend.to_device(g, device)
            # a non-contiguous gradient (e.g. a transposed matmul result) must work too
            params[0].grad = backend.to_device(np.asfortranarray(gs[0]), device)
            opt.step()
    return [backend.to_numpy(p.data) for p in params], opt.state


@pytest.mark.parametrize("cls,kw", OPTIMISERS, ids=lambda v: getattr(v, "__name__", None) or str(v))
def test_optimiser_kernels_match_array_path(cls, kw, device, kernel_launches):
    mode = kernel_mode(device)
    want, state_off = _optimise(cls, kw, device, "off")
    got, state_on = _optimise(cls, kw, device, mode)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for s_on, s_off in zip(state_on, state_off):
        assert s_on.keys() == s_off.keys()
        for k in s_on:
            np.testing.assert_allclose(backend.to_numpy(s_on[k]), backend.to_numpy(s_off[k]), rtol=1e-5, atol=1e-6)
    if device == "cpu":
        name = "sgd_update" if cls is optim.SGD else "adam_update"
        assert kernel_launches.count(name) == 4  # one launch per step over the flat buffer of all parameters


def test_flat_optimiser_repacks_when_a_parameter_is_replaced(kernel_launches):
    rng = np.random.default_rng(0)
    params = [mf.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in [(2, 3), (4,)]]
    start = params[0].numpy().copy()
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    with kernels.use("emulate"):
        for p in params:
            p.grad = np.ones(p.shape, np.float32)
        opt.step()
        params[1].data = np.zeros(4, np.float32)   # e.g. loaded weights
        opt.step()
    # second step: momentum buffer 0.9 * 1 + 1 = 1.9, so the replaced parameter is -0.1 * 1.9
    np.testing.assert_allclose(params[1].numpy(), -0.19, rtol=1e-6)
    np.testing.assert_allclose(params[0].numpy() - start, -0.1 - 0.19, rtol=1e-5)


def test_optimiser_keeps_array_path_for_float64(kernel_launches):
    p = mf.tensor(np.ones(3), dtype="float64", requires_grad=True)
    opt = optim.Adam([p], lr=0.1)
    p.grad = np.ones(3)
    with kernels.use("emulate"):
        opt.step()
    assert kernel_launches == []


# ---- end to end: two BPTT training steps ---------------------------------------------------------------------
def _train(kind, device, mode, steps=2, T=4):
    """Losses, per-step gradients and final parameters of ``steps`` Adam steps on a T-step sequence loss."""
    mf.manual_seed(7)
    rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(3, 6)
    head = nn.Dense(6, 4)
    rnn.to(device)
    head.to(device)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = optim.Adam(params, lr=0.01)
    rng = np.random.default_rng(8)
    xs = mf.tensor(rng.standard_normal((T, 5, 3)).astype(np.float32), device=device)
    labels = mf.tensor(rng.integers(0, 4, size=5), device=device)
    losses, grads = [], []
    with kernels.use(mode):
        for _ in range(steps):
            rnn.reset()
            opt.zero_grad()
            loss = 0
            for y in nn.unroll(rnn, xs):
                loss = loss + F.cross_entropy(head(y), labels)
            loss.backward()
            losses.append(float(loss.numpy()))
            grads.append([backend.to_numpy(p.grad).copy() for p in params])
            opt.step()
    return losses, grads, [backend.to_numpy(p.data) for p in params]


@pytest.mark.parametrize("kind", list(CELLS))
def test_end_to_end_training_matches_without_kernels(kind, device, kernel_launches):
    mode = kernel_mode(device)
    losses_off, grads_off, params_off = _train(kind, device, "off")
    losses_on, grads_on, params_on = _train(kind, device, mode)
    if device == "cpu":
        assert {f"{kind}_cell_fwd", f"{kind}_cell_bwd", "adam_update"} <= set(kernel_launches), sorted(set(kernel_launches))
    np.testing.assert_allclose(losses_on, losses_off, rtol=1e-5)
    for step_on, step_off in zip(grads_on, grads_off):
        for g_on, g_off in zip(step_on, step_off):
            err = np.linalg.norm(g_on - g_off) / max(np.linalg.norm(g_off), 1e-12)
            assert err <= 1e-5, err
    for a, b in zip(params_on, params_off):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_docstring_examples_run():
    import doctest

    import minifb.ops.recurrent as module

    result = doctest.testmod(module, extraglobs={"mf": mf, "np": np})
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------- found by mutation testing (session 13)
def test_array_paths_take_integer_gate_pre_activations():
    """Kills: ops/recurrent.py `_sigmoid` `xp.negative(a, dtype=float64 for integers)` -> `xp.negative(a)`
    (integer gates then failed in the in-place exp)."""
    from minifb.ops.recurrent import gru_pointwise_array, lstm_pointwise_array

    gi = np.array([[1, -2, 3, 0, 2, -1, 0, 1]])          # H = 2, int64
    gh = np.array([[0, 1, -1, 2, 0, 0, 1, -3]])
    c = np.array([[0.5, -1.0]])
    h_int, c_int, gates_int = lstm_pointwise_array(gi, gh, c)
    h_flt, c_flt, gates_flt = lstm_pointwise_array(gi.astype(np.float64), gh.astype(np.float64), c)
    np.testing.assert_allclose(gates_int, gates_flt, rtol=1e-15)
    np.testing.assert_allclose(h_int, h_flt, rtol=1e-15)
    np.testing.assert_allclose(c_int, c_flt, rtol=1e-15)

    gi3, gh3 = gi[:, :6], gh[:, :6]
    h_new, saved = gru_pointwise_array(gi3, gh3, c)
    h_ref, saved_ref = gru_pointwise_array(gi3.astype(np.float64), gh3.astype(np.float64), c)
    np.testing.assert_allclose(h_new, h_ref, rtol=1e-15)
    np.testing.assert_allclose(saved, saved_ref, rtol=1e-15)
