"""Recurrence: the RNN/LSTM/GRU/ConvLSTM cells (vs finite differences and PyTorch), Recur, unroll."""

import re
from collections import namedtuple

import numpy as np
import pytest

import minifb as mf
from minifb import functional as F
from minifb import nn
from minifb.testing import gradcheck

from strategies import to64, t64


def flatten_state(state):
    return list(state) if isinstance(state, tuple) else [state]


def run_cell(cell, state, xs):
    ys = []
    for x in xs:
        state, y = cell(state, x)
        ys.append(y)
    return ys, state


CELLS = {
    "rnn_tanh": lambda: nn.RNNCell(3, 4),
    "rnn_relu": lambda: nn.RNNCell(3, 4, mf.relu),
    "lstm": lambda: nn.LSTMCell(3, 4),
    "gru": lambda: nn.GRUCell(3, 4),
}


# ---- parameters and init -------------------------------------------------------------------------
@pytest.mark.parametrize("name,gates", [("rnn_tanh", 1), ("lstm", 4), ("gru", 3)])
def test_cell_parameter_names_shapes_and_init(name, gates):
    cell = CELLS[name]()
    shapes = {n: p.shape for n, p in cell.named_parameters()}
    assert shapes == {"weight_ih": (gates * 4, 3), "weight_hh": (gates * 4, 4),
                      "bias_ih": (gates * 4,), "bias_hh": (gates * 4,)}
    assert all(np.abs(p.numpy()).max() <= 0.5 for p in cell.parameters())      # 1/sqrt(H) with H = 4


def test_cell_without_bias():
    cell = nn.LSTMCell(3, 4, bias=False)
    assert [n for n, _ in cell.named_parameters()] == ["weight_ih", "weight_hh"]
    x = mf.randn(2, 3)
    (h, c), y = cell(cell.initial_state(x), x)
    assert y.shape == (2, 4)
    rnn = nn.RNNCell(3, 4, bias=False)
    h, y = rnn(rnn.initial_state(x), x)
    np.testing.assert_allclose(y.numpy(), np.tanh(x.numpy() @ rnn.weight_ih.numpy().T), rtol=1e-5)


# ---- finite differences -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CELLS))
def test_cells_match_finite_differences_over_several_steps(name):
    mf.manual_seed(0)
    cell = to64(CELLS[name]())
    rng = np.random.default_rng(1)
    xs = [t64(rng.standard_normal((2, 3)), requires_grad=True) for _ in range(3)]
    state0 = [t64(rng.standard_normal((2, 4)) * 0.5, requires_grad=True)
              for _ in flatten_state(cell.initial_state(xs[0]))]

    def loss(*args):
        s = tuple(args[:len(state0)])
        s = s if name == "lstm" else s[0]
        ys, _ = run_cell(cell, s, args[len(state0):len(state0) + 3])
        return mf.stack(ys)

    gradcheck(loss, *state0, *xs, *cell.parameters(), atol=1e-6, rtol=1e-5)


def test_conv_lstm_cell_matches_finite_differences():
    mf.manual_seed(2)
    cell = to64(nn.ConvLSTMCell(2, 3, 3))
    rng = np.random.default_rng(3)
    xs = [t64(rng.standard_normal((2, 2, 4, 5)), requires_grad=True) for _ in range(2)]
    h0, c0 = (t64(0.5 * rng.standard_normal((2, 3, 4, 5)), requires_grad=True) for _ in range(2))

    def loss(h0, c0, x0, x1, w, b):
        ys, _ = run_cell(cell, (h0, c0), [x0, x1])
        return mf.stack(ys)

    gradcheck(loss, h0, c0, *xs, cell.conv.weight, cell.conv.bias, atol=1e-6, rtol=1e-5)


# activations the fused epilogue does not cover (None is the identity epilogue): (minifb, NumPy) pairs
RNN_ACTIVATIONS = {
    "none": (None, lambda a: a),
    "leaky_relu": (mf.leaky_relu, lambda a: np.where(a > 0, a, 0.01 * a)),
    "lambda": (lambda t: mf.softplus(t) - 1.0, lambda a: np.logaddexp(0, a) - 1.0),
}


@pytest.mark.parametrize("name", sorted(RNN_ACTIVATIONS))
def test_rnn_cell_with_any_activation_is_the_elman_formula(name):
    """h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh) over several steps: values by NumPy, gradients of
    every parameter, the inputs and the initial state against the same graph written with plain ops,
    and against finite differences."""
    act, act_np = RNN_ACTIVATIONS[name]
    mf.manual_seed(3)
    cell = to64(nn.RNNCell(3, 4, act))
    rng = np.random.default_rng(7)
    for p in (cell.bias_ih, cell.bias_hh):          # distinct, clearly non-zero biases
        p.data = rng.standard_normal(4)
    xs = [t64(rng.standard_normal((2, 3)), requires_grad=True) for _ in range(3)]
    h0 = t64(rng.standard_normal((2, 4)) * 0.5, requires_grad=True)
    g = rng.standard_normal((3, 2, 4))
    params = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
    wi, wh, bi, bh = (p.numpy() for p in params)

    h, expected = h0.numpy(), []
    for x in xs:
        h = act_np(x.numpy() @ wi.T + bi + h @ wh.T + bh)
        expected.append(h)
    ys, _ = run_cell(cell, h0, xs)
    np.testing.assert_allclose(mf.stack(ys).numpy(), np.stack(expected), rtol=1e-12, atol=1e-12)

    mf.stack(ys).backward(g)
    got = [t.grad.copy() for t in params + xs + [h0]]
    for t in params + xs + [h0]:
        t.grad = None
    hand, plain = h0, []
    for x in xs:
        pre = x @ cell.weight_ih.transpose() + cell.bias_ih + hand @ cell.weight_hh.transpose() + cell.bias_hh
        hand = pre if act is None else act(pre)
        plain.append(hand)
    mf.stack(plain).backward(g)
    for t, want in zip(params + xs + [h0], got):
        np.testing.assert_allclose(want, t.grad, rtol=1e-10, atol=1e-12)

    gradcheck(lambda h0, *xs: mf.stack(run_cell(cell, h0, xs)[0]), h0, *xs)
    gradcheck(lambda *ps: mf.stack(run_cell(cell, h0, xs)[0]), *params)


# ---- against PyTorch ------------------------------------------------------------------------------
def _torch_cell(torch, name, cell):
    cls = {"rnn_tanh": torch.nn.RNNCell, "rnn_relu": torch.nn.RNNCell,
           "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[name]
    kwargs = {"nonlinearity": "relu"} if name == "rnn_relu" else {}
    ref = cls(3, 4, **kwargs)
    with torch.no_grad():
        for pname, p in cell.named_parameters():
            getattr(ref, pname).copy_(torch.tensor(p.numpy()))
    return ref


@pytest.mark.parametrize("name", sorted(CELLS))
def test_cells_match_pytorch_values_and_gradients(name):
    torch = pytest.importorskip("torch")
    cell = CELLS[name]()
    ref = _torch_cell(torch, name, cell)
    rng = np.random.default_rng(4)
    xs_np = [rng.standard_normal((5, 3)).astype(np.float32) for _ in range(4)]
    g = rng.standard_normal((4, 5, 4)).astype(np.float32)

    xs = [mf.tensor(x, requires_grad=True) for x in xs_np]
    ys, _ = run_cell(cell, cell.initial_state(xs[0]), xs)
    mf.stack(ys).backward(g)

    txs = [torch.tensor(x, requires_grad=True) for x in xs_np]
    state, tys = None, []
    for x in txs:
        state = ref(x) if state is None else ref(x, state)
        tys.append(state[0] if name == "lstm" else state)
    torch.stack(tys).backward(torch.tensor(g))

    for y, ty in zip(ys, tys):
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    for x, tx in zip(xs, txs):
        np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    for pname, p in cell.named_parameters():
        np.testing.assert_allclose(p.grad, getattr(ref, pname).grad.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=pname)


def test_conv_lstm_cell_matches_a_pytorch_reference():
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    cell = nn.ConvLSTMCell(2, 3, (3, 5))
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 2, 6, 7)).astype(np.float32)
    h = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    c = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    (h1, c1), y = cell((mf.tensor(h), mf.tensor(c)), mf.tensor(x))

    w, b = torch.tensor(cell.conv.weight.numpy()), torch.tensor(cell.conv.bias.numpy())
    gates = tF.conv2d(torch.cat([torch.tensor(x), torch.tensor(h)], 1), w, b, padding=(1, 2))
    i, f, g, o = gates.chunk(4, dim=1)
    c_ref = f.sigmoid() * torch.tensor(c) + i.sigmoid() * g.tanh()
    h_ref = o.sigmoid() * c_ref.tanh()
    np.testing.assert_allclose(c1.numpy(), c_ref.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h1.numpy(), h_ref.numpy(), rtol=1e-5, atol=1e-5)
    assert y is h1


# ---- Recur and the wrappers -------------------------------------------------------------------------
@pytest.mark.parametrize("cls,state_type", [(nn.RNN, mf.Tensor), (nn.LSTM, tuple), (nn.GRU, mf.Tensor)])
def test_wrappers_start_from_a_lazy_zero_state(cls, state_type):
    rnet = cls(3, 4)
    assert isinstance(rnet, nn.Recur) and rnet.state is None
    ys = nn.unroll(rnet, mf.randn(5, 2, 3))            # time first
    assert len(ys) == 5 and all(y.shape == (2, 4) for y in ys)
    assert isinstance(rnet.state, state_type)
    # the first step equals one cell step from zeros
    rnet.reset()
    x = mf.randn(2, 3)
    _, expected = rnet.cell(rnet.cell.initial_state(x), x)
    np.testing.assert_array_equal(rnet(x).numpy(), expected.numpy())


def test_recur_over_t_steps_equals_explicit_unrolling():
    cell = to64(nn.GRUCell(3, 4))
    rng = np.random.default_rng(6)
    xs = [t64(rng.standard_normal((2, 3))) for _ in range(6)]
    h0 = t64(np.zeros((2, 4)))
    rnet = nn.Recur(cell, h0)
    mf.stack(nn.unroll(rnet, xs)).sum().backward()
    grads = [p.grad.copy() for p in cell.parameters()]
    cell.zero_grad()
    ys, h = run_cell(cell, h0, xs)
    mf.stack(ys).sum().backward()
    for got, want in zip(grads, [p.grad for p in cell.parameters()]):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_array_equal(rnet.state.numpy(), h.numpy())


def test_detach_on_a_tuple_state_cuts_the_tape():
    lstm = nn.LSTM(3, 4)
    xs = [mf.randn(2, 3) for _ in range(3)]
    lstm(xs[0])
    lstm(xs[1])
    lstm.detach()
    h, c = lstm.state
    assert not h.requires_grad and not c.requires_grad
    lstm(xs[2]).sum().backward()
    grads = [p.grad.copy() for p in lstm.parameters()]
    lstm.zero_grad()
    _, y = lstm.cell((h, c), xs[2])
    y.sum().backward()
    for got, want in zip(grads, [p.grad for p in lstm.parameters()]):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_detach_handles_nested_states():
    state = {"a": (mf.randn(2, requires_grad=True) * 2, [mf.randn(1, requires_grad=True) * 3]), "n": None}
    rnet = nn.Recur(lambda s, x: (s, x), state)
    rnet.detach()
    a, (b,) = rnet.state["a"][0], rnet.state["a"][1]
    assert not a.requires_grad and not b.requires_grad and rnet.state["n"] is None
    np.testing.assert_array_equal(a.numpy(), state["a"][0].numpy())


def test_reset_and_detach_reach_a_recur_inside_the_cell():
    import operator

    mf.manual_seed(0)
    net = nn.FeedbackChain(nn.Merger("top", nn.Dense(4, 8), operator.add), nn.LSTM(8, 4), nn.Splitter("top"))
    x = mf.randn(2, 8)
    rnet = nn.Recur(net, net.initial_state(x))
    firsts = []
    for _ in range(2):                       # two sequences, each from the zero state, each back-propagated
        rnet.reset()
        ys = [rnet(x) for _ in range(3)]
        firsts.append(ys[0].numpy())
        mf.stack(ys).sum().backward()
    np.testing.assert_array_equal(firsts[0], firsts[1])
    rnet(x)                                  # truncated BPTT: the inner LSTM's state is cut too
    rnet.detach()
    h, c = net.layers[1].state
    assert not h.requires_grad and not c.requires_grad
    rnet(x).sum().backward()


def test_a_new_recur_starts_every_recur_inside_the_cell_from_its_initial_state():
    import operator

    mf.manual_seed(0)
    net = nn.FeedbackChain(nn.Dense(5, 6), nn.Merger("o", nn.Dense(3, 6), operator.add), nn.LSTM(6, 7),
                           nn.Dense(7, 3), nn.Splitter("o"))
    xa, xb = mf.randn(4, 5), mf.randn(4, 5)

    def batch(x, steps=2):                     # the documented per-batch pattern
        rnet = nn.Recur(net, net.initial_state(x))
        return [rnet(x) for _ in range(steps)]

    first = [y.numpy() for y in batch(xb)]
    mf.stack(batch(xa)).sum().backward()       # a trained batch leaves the inner LSTM on its freed graph
    ys = batch(xb)
    mf.stack(ys).sum().backward()              # a new Recur does not carry it into this batch
    for y, y0 in zip(ys, first):
        np.testing.assert_array_equal(y.numpy(), y0)
    assert [y.shape for y in batch(mf.randn(7, 5))] == [(7, 3)] * 2   # nor its batch size
    lstm = net.layers[2]
    lstm.state0 = (mf.ones(1, 7), mf.ones(1, 7))
    nn.Recur(net, {"o": mf.zeros(3)})
    assert lstm.state is lstm.state0           # back to its own initial state, as reset() does
    nn.Recur(lambda s, x: (s, x), None)        # a plain callable cell holds no Recur


def test_reset_state_and_detach_state_walk_a_whole_model():
    mf.manual_seed(1)
    model = nn.Chain(nn.LSTM(3, 4), nn.Dense(4, 4), nn.RNN(4, 2))
    x = mf.randn(5, 3)
    first = model(x).numpy()
    model(x)
    nn.detach_state(model)
    assert all(not t.requires_grad for t in (*model.layers[0].state, model.layers[2].state))
    model(x).sum().backward()                # only the last step is on the tape
    nn.reset_state(model)
    assert model.layers[0].state is None and model.layers[2].state is None
    np.testing.assert_array_equal(model(x).numpy(), first)
    nn.reset_state(lambda x: x)              # a plain function holds no state
    with pytest.raises(TypeError, match=r"^reset_state: model must be a Module, got int"):
        nn.reset_state(3)


def test_learned_initial_state_is_a_parameter():
    cell = nn.RNNCell(2, 3)
    h0 = nn.Parameter(np.zeros(3, np.float32))
    rnet = nn.Recur(cell, h0)
    assert [n for n, _ in rnet.named_parameters()][-1] == "state0"
    nn.unroll(rnet, [mf.randn(2) for _ in range(3)])[-1].sum().backward()
    assert h0.grad is not None and h0.grad.shape == (3,)


def test_recur_to_moves_the_state(device):
    rnet = nn.Recur(nn.RNNCell(2, 3), mf.zeros(3))
    rnet(mf.randn(2))
    assert rnet.to(device) is rnet
    assert rnet.state.device == device and rnet.state0.device == device
    assert rnet(mf.randn(2, device=device)).device == device


def test_ten_thousand_step_bptt_without_recursion_error():
    mf.manual_seed(0)
    rnet = nn.RNN(2, 3)
    x = mf.randn(1, 2)
    y = None
    for _ in range(10_000):
        y = rnet(x)
    y.sum().backward()
    grads = [p.grad for p in rnet.parameters()]
    assert all(g is not None and np.isfinite(g).all() for g in grads)


# ---- errors --------------------------------------------------------------------------------------
def test_cell_errors():
    with pytest.raises(ValueError, match=r"RNNCell\(3, 4, tanh\): expected input of shape \(\.\.\., 3\), got \(2, 5\)"):
        nn.RNNCell(3, 4)(mf.zeros(2, 4), mf.randn(2, 5))
    with pytest.raises(ValueError, match=r"GRUCell\(3, 4\): expected state h of shape \(\.\.\., 4\), got \(2, 2\)"):
        nn.GRUCell(3, 4)(mf.zeros(2, 2), mf.randn(2, 3))
    with pytest.raises(TypeError, match=r"LSTMCell\(3, 4\): the state must be the pair \(h, c\)"):
        nn.LSTMCell(3, 4)(mf.zeros(2, 4), mf.randn(2, 3))
    with pytest.raises(ValueError, match="expected state c"):
        nn.LSTMCell(3, 4)((mf.zeros(2, 4), mf.zeros(2, 5)), mf.randn(2, 3))
    with pytest.raises(ValueError, match="LSTMCell: input_size must be a positive integer, got 0"):
        nn.LSTMCell(0, 4)
    conv = nn.ConvLSTMCell(2, 3, 3)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        nn.ConvLSTMCell(2, 3, 2)
    with pytest.raises(ValueError, match=r"ConvLSTMCell\(2, 3, 3\): expected input of shape \(N, 2, H, W\)"):
        conv.initial_state(mf.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"state h of shape \(1, 3, 4, 4\) does not fit"):
        conv((mf.zeros(1, 3, 4, 4), mf.zeros(1, 3, 4, 4)), mf.randn(1, 2, 5, 5))


@pytest.mark.parametrize("call,match", [
    (lambda: nn.RNNCell(3, 4)(mf.zeros(5, 4), mf.randn(2, 3)),
     r"^RNNCell\(3, 4, tanh\): state h of shape \(5, 4\) does not fit input of shape \(2, 3\) \(expected \(2, 4\)\)"),
    (lambda: nn.GRUCell(3, 4)(mf.zeros(5, 4), mf.randn(2, 3)),
     r"^GRUCell\(3, 4\): state h of shape \(5, 4\) does not fit input of shape \(2, 3\)"),
    (lambda: nn.LSTMCell(3, 4)((mf.zeros(5, 4), mf.zeros(2, 4)), mf.randn(2, 3)),
     r"^LSTMCell\(3, 4\): state h of shape \(5, 4\) does not fit"),
    (lambda: nn.LSTMCell(3, 4)((mf.zeros(2, 4), mf.zeros(5, 4)), mf.randn(2, 3)),
     r"^LSTMCell\(3, 4\): state c of shape \(5, 4\) does not fit"),
    (lambda: nn.RNNCell(3, 4)(mf.zeros(2, 4), mf.randn(3)),          # a state may not enlarge the batch
     r"^RNNCell\(3, 4, tanh\): state h of shape \(2, 4\) does not fit input of shape \(3,\)"),
    (lambda: nn.GRUCell(3, 4)(mf.zeros(2, 4), mf.randn(2, 5)),
     r"^GRUCell\(3, 4\): expected input of shape \(\.\.\., 3\), got \(2, 5\)"),
], ids=["rnn-h", "gru-h", "lstm-h", "lstm-c", "rnn-enlarged", "gru-input"])
def test_cell_state_must_fit_the_input_batch(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("name", ["rnn_tanh", "gru", "lstm"])
def test_an_unbatched_state_still_broadcasts_into_the_batch(name):
    cell = CELLS[name]()
    x = mf.randn(2, 3)
    state = (mf.zeros(4), mf.zeros(4)) if name == "lstm" else mf.zeros(4)
    batched = (mf.zeros(2, 4), mf.zeros(2, 4)) if name == "lstm" else mf.zeros(2, 4)
    _, y = cell(state, x)
    _, y_batched = cell(batched, x)
    np.testing.assert_allclose(y.numpy(), y_batched.numpy(), rtol=1e-6)


@pytest.mark.parametrize("state_shape", [(1, 3, 5, 5), (3, 5, 5)])
def test_conv_lstm_state_broadcasts_into_the_batch_with_its_gradient(state_shape):
    mf.manual_seed(0)
    cell = nn.ConvLSTMCell(2, 3, 3)
    x = mf.randn(4, 2, 5, 5)
    h0, c0 = (nn.Parameter(mf.randn(*state_shape).numpy()) for _ in range(2))
    (h, c), y = cell((h0, c0), x)
    (h_full, c_full), y_full = cell((F.broadcast_to(h0, (4, 3, 5, 5)), F.broadcast_to(c0, (4, 3, 5, 5))), x)
    np.testing.assert_allclose(y.numpy(), y_full.numpy(), rtol=1e-6)
    np.testing.assert_allclose(c.numpy(), c_full.numpy(), rtol=1e-6)
    (y * y).sum().backward()
    grads = h0.grad.copy(), c0.grad.copy()
    h0.grad = c0.grad = None
    (y_full * y_full).sum().backward()
    assert grads[0].shape == grads[1].shape == state_shape
    np.testing.assert_allclose(grads[0], h0.grad, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads[1], c0.grad, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"state h of shape \(2, 3, 5, 5\) does not fit"):
        cell((mf.zeros(2, 3, 5, 5), mf.zeros(4, 3, 5, 5)), x)


@pytest.mark.parametrize("name", ["RNNCell", "RNN"])
def test_rnn_refuses_a_non_callable_activation_at_construction(name):
    with pytest.raises(TypeError, match=rf"^{name}: activation must be a callable such as mf.relu or None, "
                                        r"got 'relu'$"):
        getattr(nn, name)(3, 4, "relu")


def test_recur_errors():
    with pytest.raises(TypeError, match="Recur: cell must be callable"):
        nn.Recur(3)
    with pytest.raises(ValueError, match="pass state0"):
        nn.Recur(lambda s, x: (s, x))(mf.randn(2))
    with pytest.raises(TypeError, match=r"must return \(state, y\)"):
        nn.Recur(lambda s, x: x, mf.zeros(2))(mf.randn(2))


# ---- bad input (audit) -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("bad", [2.5, True, "3", None, 0])
def test_cell_sizes_must_be_integers(name, bad):
    make = getattr(nn, name)
    got = re.escape(repr(bad))
    with pytest.raises(ValueError, match=rf"^{name}: input_size must be a positive integer, got {got}"):
        make(bad, 4)
    with pytest.raises(ValueError, match=rf"^{name}: hidden_size must be a positive integer, got {got}"):
        make(3, bad)


@pytest.mark.parametrize("bad", [0, 2.5, True, None])
def test_conv_lstm_cell_channels_must_be_integers_and_name_the_cell(bad):
    with pytest.raises(ValueError, match=rf"^ConvLSTMCell: in_channels must be a positive integer, got {bad!r}"):
        nn.ConvLSTMCell(bad, 4, 3)
    with pytest.raises(ValueError, match=rf"^ConvLSTMCell: hidden_channels must be a positive integer, got {bad!r}"):
        nn.ConvLSTMCell(3, bad, 3)


def test_conv_lstm_cell_state_that_is_not_a_tensor():
    cell = nn.ConvLSTMCell(2, 3, 3)
    x = mf.randn(1, 2, 4, 4)
    h, c = cell.initial_state(x)
    with pytest.raises(TypeError, match=r"^ConvLSTMCell\(2, 3, 3\): state h must be a Tensor, got NoneType"):
        cell((None, c), x)
    with pytest.raises(TypeError, match=r"^ConvLSTMCell\(2, 3, 3\): state c must be a Tensor, got ndarray"):
        cell((h, c.numpy()), x)


def test_unroll_bad_arguments():
    rnn = nn.RNN(3, 4)
    with pytest.raises(TypeError, match=r"^unroll: xs must be a list of per-step inputs or a Tensor whose first "
                                        r"axis is time, got NoneType"):
        nn.unroll(rnn, None)
    with pytest.raises(ValueError, match=r"^unroll: xs must have a time axis first, got a Tensor of shape \(\)"):
        nn.unroll(rnn, mf.tensor(1.0))
    with pytest.raises(TypeError, match=r"^unroll: recur must be callable as y = recur\(x\) \(a Recur\), got 5"):
        nn.unroll(5, [mf.randn(3)])


@pytest.mark.parametrize("make", [lambda b: nn.RNNCell(3, 4, bias=b), lambda b: nn.LSTMCell(3, 4, bias=b),
                                  lambda b: nn.GRUCell(3, 4, bias=b)])
def test_cell_bias_must_be_a_bool(make):
    with pytest.raises(TypeError, match=r"Cell: bias must be True or False, got 'no'"):
        make("no")
    cell = make(np.bool_(False))
    assert cell.bias_ih is None and cell.bias_hh is None


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_wrapper_bias_must_be_a_bool_and_the_error_names_the_wrapper(name):
    # as for the sizes, the wrapper the user built is named, not the cell inside it
    with pytest.raises(TypeError, match=rf"^{name}: bias must be True or False, got 'yes'$"):
        getattr(nn, name)(3, 4, bias="yes")
    assert getattr(nn, name)(3, 4, bias=np.bool_(False)).cell.bias_ih is None


def test_conv_lstm_cell_bias_must_be_a_bool():
    with pytest.raises(TypeError, match=r"^ConvLSTMCell: bias must be True or False, got 'no'"):
        nn.ConvLSTMCell(2, 3, 3, bias="no")
    assert nn.ConvLSTMCell(2, 3, 3, bias=np.bool_(False)).conv.bias is None


def test_cells_given_where_a_recur_belongs_and_layers_given_as_cells_get_named_errors():
    with pytest.raises(TypeError, match=r"^unroll: LSTMCell\(3, 4\) is a cell, .*nn.unroll\(nn.Recur\(cell\), xs\)"):
        nn.unroll(nn.LSTMCell(3, 4), mf.randn(2, 1, 3))
    with pytest.raises(TypeError, match=r"^Recur: cell Dense\(3, 3\) cannot be called as `state, y = cell"):
        nn.Recur(nn.Dense(3, 3), mf.zeros(3))
    assert [y.shape for y in nn.unroll(lambda x: x * 2, [mf.ones(2)] * 3)] == [(2,)] * 3   # any y = f(x)
    assert repr(nn.ConvLSTMCell(2, 3, 3, bias=False)) == "ConvLSTMCell(2, 3, 3, bias=False)"


def test_a_cell_given_an_array_raises_a_type_error_as_a_layer_does():
    for cell, state in ((nn.RNNCell(3, 4), mf.zeros(2, 4)), (nn.LSTMCell(3, 4), (mf.zeros(2, 4), mf.zeros(2, 4))),
                        (nn.GRUCell(3, 4), mf.zeros(2, 4))):
        with pytest.raises(TypeError, match=r"input must be a Tensor of shape \(\.\.\., 3\), got ndarray"):
            cell(state, np.ones((2, 3), np.float32))


def test_every_cell_given_a_non_tensor_input_or_state_raises_a_type_error():
    conv = nn.ConvLSTMCell(1, 2, 3)
    x = mf.randn(2, 1, 4, 4)
    for bad in (x.numpy(), None):
        with pytest.raises(TypeError, match=r"^ConvLSTMCell\(1, 2, 3\): input must be a Tensor of shape "
                                            r"\(N, 1, H, W\), got (ndarray|NoneType)$"):
            conv(conv.initial_state(x), bad)
        with pytest.raises(TypeError, match=r"^ConvLSTMCell\(1, 2, 3\): input must be a Tensor"):
            conv.initial_state(bad)
    h = np.zeros((2, 4), np.float32)
    x = mf.randn(2, 3)
    for cell, state in ((nn.RNNCell(3, 4), h), (nn.LSTMCell(3, 4), (mf.zeros(2, 4), h)), (nn.GRUCell(3, 4), None)):
        with pytest.raises(TypeError, match=rf"^{type(cell).__name__}\(.*\): state (h|c) must be a Tensor of shape "
                                            r"\(\.\.\., 4\), got (ndarray|NoneType)$"):
            cell(state, x)


def test_a_recurrent_cell_as_a_layer_of_a_chain_says_to_wrap_it_in_a_recur():
    x = mf.randn(2, 1, 5, 5)
    with pytest.raises(TypeError, match=r"^Chain: layers\[0\] ConvLSTMCell\(1, 2, 3\) is a recurrent cell, called "
                                        r"as `state, y = cell\(state, x\)`, but the Chain calls it as "
                                        r"`y = layer\(x\)`: wrap it in nn\.Recur.*\(nn\.Recur\(cell\)\)$"):
        nn.Chain(nn.ConvLSTMCell(1, 2, 3))(x)
    with pytest.raises(TypeError, match=r"^Chain: layers\[1\] GRUCell\(4, 4\) .*\(nn\.Recur\(cell\) or "
                                        r"nn\.GRU\(4, 4\)\)$"):
        nn.Chain(nn.Dense(3, 4), nn.GRUCell(4, 4))(mf.randn(2, 3))
    assert nn.Chain(nn.Recur(nn.ConvLSTMCell(1, 2, 3)))(x).shape == (2, 2, 5, 5)


def test_recur_takes_a_module_whose_own_call_takes_state_and_input():
    class Cell(nn.Module):
        def __init__(self):
            self.dense = nn.Dense(3, 3)

        def forward(self, x):
            return self.dense(x)

        def __call__(self, state, x):
            y = self.forward(x) + state
            return y, y

    rnet = nn.Recur(Cell(), mf.zeros(2, 3))
    assert rnet(mf.randn(2, 3)).shape == (2, 3)


# ---------------------------------------------------------------- found by mutation testing (session 13)
def test_detach_and_reset_keep_a_namedtuple_state():
    """Kills R05: map_state rebuilds a namedtuple state field by field."""
    HC = namedtuple("HC", ["h", "c"])
    state0 = HC(mf.randn(2, requires_grad=True) * 2, mf.randn(2, requires_grad=True) * 3)
    rnet = nn.Recur(lambda s, x: (HC(s.h + x, s.c * x), s.h), state0)
    rnet(mf.ones(2))
    rnet.detach()
    assert type(rnet.state) is HC
    assert not rnet.state.h.requires_grad and not rnet.state.c.requires_grad
    np.testing.assert_array_equal(rnet.state.h.numpy(), state0.h.numpy() + 1)


def test_a_carried_state_that_no_longer_fits_says_to_reset_first():
    lstm = nn.LSTM(3, 4)
    lstm(mf.randn(5, 3))
    with pytest.raises(ValueError, match=r"state h of shape \(5, 4\) does not fit input of shape \(2, 3\).*"
                                         r"carried over from the previous call of LSTM\(3, 4\).*call reset\(\)"):
        lstm(mf.randn(2, 3))                  # a new batch size without a reset
    lstm.reset()
    assert lstm(mf.randn(2, 3)).shape == (2, 4)
    fresh = nn.LSTM(3, 4)
    with pytest.raises(ValueError) as err:    # nothing carried: the cell's message alone
        fresh(mf.randn(2, 5))
    assert "carried over" not in str(err.value)


def test_moving_a_fresh_recur_keeps_its_state_its_initial_state(device):
    # moved separately, state0 and the current state became two tensors on a GPU, and a fresh Recur then
    # counted as one carrying a state over
    rnet = nn.Recur(nn.RNNCell(3, 4), mf.zeros(2, 4))
    rnet.to(device)
    assert rnet.state is rnet.state0 and rnet.state.device == device
    with pytest.raises(ValueError) as err:
        rnet(mf.randn(5, 3, device=device))
    assert "carried over" not in str(err.value)
