"""Tests of the compiled LSTM pointwise step (``cpu_conv.lstm_forward`` / ``lstm_backward``, in
kernels/conv_cpu.cpp) and of its use by ``ops/recurrent.LSTMPointwise`` on NumPy float32.

The reference is the NumPy step of ``ops/recurrent.py`` computed in float64 from the same float32
inputs. The library's own exp and tanh are checked over a sweep of the whole float range (units in the
last place), with infinities and NaN; the whole step on random shapes, scales and row strides
(hypothesis); and an LSTM trained with and without it.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minifb as mf
import minifb.functional as F
from minifb import cpu_conv, nn
from minifb.ops.recurrent import lstm_pointwise_array, lstm_pointwise_backward_array

pytestmark = pytest.mark.skipif(not cpu_conv.enabled(), reason="the compiled CPU library is unavailable "
                                "(no C++ compiler, or MINIFB_CPU_CONV=off)")


def _activations(x):
    """The library's sigmoid and tanh of the float32 values x, read from the gates of one LSTM step."""
    h = x.size
    gi = np.tile(x, 4)[None].astype(np.float32)
    _, gates = cpu_conv.lstm_forward(gi, np.zeros_like(gi), np.zeros((1, h), np.float32))
    return gates[0, :h], gates[0, 2 * h:3 * h]


def _ulps(got, want):
    """|got - want| in units in the last place of float32 at want (want in float64)."""
    spacing = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - want) / np.maximum(spacing, np.finfo(np.float32).smallest_subnormal)


def test_sigmoid_and_tanh_are_within_three_units_in_the_last_place():
    """About as close as NumPy's own float32 functions: 1 / (1 + np.exp(-x)) is off by up to 2.7 units
    over this sweep, np.tanh by 1.3."""
    x = np.concatenate([np.linspace(-100, 100, 400001), np.geomspace(1e-38, 50, 20000),
                        -np.geomspace(1e-38, 50, 20000)]).astype(np.float32)
    sigmoid, tanh = _activations(x)
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):
        want_sigmoid = 1 / (1 + np.exp(-x64))
    normal = want_sigmoid > np.finfo(np.float32).tiny          # below, e^-87 stands in for 0 (see lstm_forward)
    assert _ulps(sigmoid[normal], want_sigmoid[normal]).max() <= 3
    assert np.abs(sigmoid[~normal]).max() < 1e-37
    assert _ulps(tanh, np.tanh(x64)).max() <= 3


def test_infinities_and_nan():
    sigmoid, tanh = _activations(np.array([np.inf, -np.inf, np.nan, 0.0], np.float32))
    assert sigmoid[0] == 1 and 0 <= sigmoid[1] < 1e-37 and np.isnan(sigmoid[2]) and sigmoid[3] == 0.5
    assert tanh[0] == 1 and tanh[1] == -1 and np.isnan(tanh[2]) and tanh[3] == 0


def _reference(gi, gh, c, grad):
    f64 = [a.astype(np.float64) for a in (gi, gh, c, grad)]
    h, c_new, gates = lstm_pointwise_array(*f64[:3])
    dgates, dc_prev = lstm_pointwise_backward_array(f64[3][:, :c.shape[1]], f64[3][:, c.shape[1]:], gates, f64[2],
                                                    c_new)
    return np.concatenate([h, c_new], axis=1), gates, dgates, dc_prev


@settings(max_examples=80, deadline=None)
@given(n=st.integers(0, 9), h=st.integers(1, 40), scale=st.sampled_from([0.1, 1.0, 5.0, 30.0]),
       c_in_out=st.booleans(), broadcast_gh=st.booleans(), seed=st.integers(0, 10**6))
def test_the_step_matches_numpy(n, h, scale, c_in_out, broadcast_gh, seed):
    """Any batch (empty too) and width (not whole vectors), saturated gates, c read from a previous
    output's right half (row stride 2H) and a broadcast row of gh (row stride 0)."""
    rng = np.random.default_rng(seed)
    gi = (rng.standard_normal((n, 4 * h)) * scale).astype(np.float32)
    gh = (rng.standard_normal((1 if broadcast_gh else n, 4 * h)) * scale).astype(np.float32)
    if broadcast_gh:
        gh = np.broadcast_to(gh, (n, 4 * h))
    c = rng.standard_normal((n, 2 * h)).astype(np.float32)[:, h:] if c_in_out else \
        rng.standard_normal((n, h)).astype(np.float32)
    grad = rng.standard_normal((n, 2 * h)).astype(np.float32)
    out, gates = cpu_conv.lstm_forward(gi, gh, c)
    dgates, dc_prev = cpu_conv.lstm_backward(grad, gates, c, out[:, h:])
    want_out, want_gates, want_dgates, want_dc = _reference(gi, np.ascontiguousarray(gh), c, grad)
    for got, want in ((out, want_out), (gates, want_gates), (dgates, want_dgates), (dc_prev, want_dc)):
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6 * max(1.0, float(np.abs(want).max(initial=0))))


def test_lstm_applies_only_to_float32_numpy_rows():
    a = np.zeros((2, 8), np.float32)
    assert cpu_conv.lstm_applies(a, a)
    assert not cpu_conv.lstm_applies(a, a.astype(np.float64))
    assert not cpu_conv.lstm_applies(a, np.zeros((8, 2), np.float32).T)   # rows not contiguous
    assert not cpu_conv.lstm_applies(a, np.zeros(8, np.float32))
    with cpu_conv.use(False):
        assert not cpu_conv.lstm_applies(a)


@pytest.fixture
def calls(monkeypatch):
    seen = []
    for name in ("lstm_forward", "lstm_backward"):
        real = getattr(cpu_conv, name)
        monkeypatch.setattr(cpu_conv, name, lambda *a, _real=real, _name=name: seen.append(_name) or _real(*a))
    return seen


def test_the_lstm_op_takes_it_for_float32_only(calls):
    for dtype, expected in ((np.float32, ["lstm_forward", "lstm_backward"]), (np.float64, [])):
        calls.clear()
        cell = nn.LSTMCell(3, 5)
        if dtype == np.float64:
            for p in cell.parameters():
                p.data = p.data.astype(np.float64)
        x = mf.tensor(np.ones((2, 3)), dtype=dtype)
        state = (mf.zeros(2, 5, dtype=dtype), mf.zeros(2, 5, dtype=dtype))
        (h, c), y = cell(state, x)
        y.sum().backward()
        assert calls == expected, dtype


def test_an_lstm_trains_the_same_with_and_without_it(calls):
    """W3's shape in small: a loss at every step of 12, three SGD steps; the losses agree closely and the
    compiled step was taken."""
    def train():
        mf.manual_seed(0)
        cell, head = nn.LSTMCell(8, 16), nn.Dense(16, 8)
        rnet = nn.Recur(cell, (mf.zeros(4, 16), mf.zeros(4, 16)))
        opt = mf.optim.SGD(rnet.parameters() + head.parameters(), lr=0.5)
        rng = np.random.default_rng(0)
        xs = [mf.tensor(np.eye(8, dtype=np.float32)[rng.integers(0, 8, 4)]) for _ in range(12)]
        ys = [mf.tensor(rng.integers(0, 8, 4)) for _ in range(12)]
        losses = []
        for _ in range(3):
            rnet.reset()
            loss = sum((F.cross_entropy(head(rnet(x)), y) for x, y in zip(xs, ys)), mf.tensor(0.0)) * (1 / 12)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    compiled = train()
    assert "lstm_backward" in calls
    with cpu_conv.use(False):
        reference = train()
    np.testing.assert_allclose(compiled, reference, rtol=1e-5)
    assert compiled[-1] < compiled[0]
