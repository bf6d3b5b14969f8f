"""Feedback: Splitter, Merger, FeedbackChain, FeedbackTree, nesting, initial_state, BPTT, errors."""

import operator
import re

import numpy as np
import pytest

import minifb as mf
from minifb import functional as F
from minifb import nn
from minifb.testing import gradcheck

from strategies import to64, t64


def ident(t):
    return t


def seed_net():
    return nn.FeedbackChain(
        nn.Merger("fork1", nn.Dense(5, 10, mf.relu), operator.add),
        nn.Dense(10, 5, mf.relu),
        nn.Splitter("fork1"),
    )


def run(cell, state, xs):
    """Unroll ``cell`` by hand: the list of outputs and the final state."""
    ys = []
    for x in xs:
        state, y = cell(state, x)
        ys.append(y)
    return ys, state


# ---- the seed example and the basic semantics ------------------------------------------------
def test_seed_example_from_design():
    net = seed_net()
    x = mf.randn(10)
    h = {"fork1": mf.zeros(5)}
    h, out = net(h, x)
    assert out.shape == (5,) and list(h) == ["fork1"] and h["fork1"] is out

    rnet = nn.Recur(net, h)
    out = rnet(x)
    assert out.shape == (5,)
    assert rnet.state["fork1"] is out
    assert [n for n, _ in rnet.named_parameters()] == [
        "cell.layers.0.op.weight", "cell.layers.0.op.bias", "cell.layers.1.weight", "cell.layers.1.bias"]


def test_seed_example_equals_explicit_equations():
    net = seed_net()
    merger_dense, dense = net.layers[0].op, net.layers[1]
    w1, b1 = merger_dense.weight.numpy(), merger_dense.bias.numpy()
    w2, b2 = dense.weight.numpy(), dense.bias.numpy()
    xs = [np.random.default_rng(t).standard_normal((3, 10)).astype(np.float32) for t in range(4)]
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    fork, expected = np.zeros(5, np.float32), []
    for x in xs:
        fork = relu((x + relu(fork @ w1.T + b1)) @ w2.T + b2)
        expected.append(fork)
    rnet = nn.Recur(net, {"fork1": mf.zeros(5)})      # an unbatched zero state broadcasts into the batch
    for x, e in zip(xs, expected):
        np.testing.assert_allclose(rnet(mf.tensor(x)).numpy(), e, rtol=1e-5, atol=1e-6)


def test_merger_reads_the_previous_step():
    # state_t = x_t + state_{t-1}: a running sum, which is only right if the Merger reads the old state
    net = nn.FeedbackChain(nn.Merger("acc", nn.Lambda(ident), operator.add), nn.Splitter("acc"))
    xs = [mf.tensor([float(t)]) for t in range(1, 6)]
    ys, _ = run(net, {"acc": mf.zeros(1)}, xs)
    assert [y.item() for y in ys] == [1, 3, 6, 10, 15]


def test_merger_after_its_splitter_reads_the_previous_step():
    # the Splitter comes first in the pass, so this pass's value of "s" exists when the Merger runs;
    # the Merger must still read the previous step's value (the incoming state), never this pass's.
    net = nn.FeedbackChain(nn.Lambda(lambda t: t + 1), nn.Splitter("s"),
                           nn.Merger("s", nn.Lambda(ident), operator.add))
    xs = [mf.tensor([1.0]), mf.tensor([2.0]), mf.tensor([3.0])]
    state, outs = {"s": mf.tensor([100.0])}, []
    for x in xs:
        state, y = net(state, x)
        outs.append((state["s"].item(), y.item()))
    # by hand: s_t = x_t + 1; y_t = s_t + s_{t-1}, with s_0 = 100
    #   t=1: s = 2, y = 2 + 100 = 102;  t=2: s = 3, y = 3 + 2 = 5;  t=3: s = 4, y = 4 + 3 = 7
    # (reading this pass's value would give y = 2 s_t: 4, 6, 8)
    assert outs == [(2, 102), (3, 5), (4, 7)]


def test_new_state_holds_values_of_this_pass_only():
    net = nn.FeedbackChain(nn.Merger("b", nn.Lambda(ident), operator.add), nn.Splitter("a"),
                           nn.Lambda(lambda t: t * 10), nn.Splitter("b"))
    state = {"a": mf.tensor([100.0]), "b": mf.tensor([1.0]), "junk": mf.zeros(1)}
    new, y = net(state, mf.tensor([2.0]))
    assert list(new) == ["a", "b"]
    assert new["a"].item() == 3 and new["b"].item() == 30 and y.item() == 30


def test_feedback_tree_signals_climb_one_stage_per_step():
    stages = [nn.Lambda(lambda t: t + 1), nn.Splitter("a"), nn.Lambda(lambda t: t * 10), nn.Splitter("b")]
    tree = nn.FeedbackTree(*stages)
    chain = nn.FeedbackChain(*stages)
    x = mf.tensor([1.0])
    ys, state = run(tree, tree.initial_state(x), [x] * 4)
    # step 1: the stream continues with the zero state after each Splitter;
    # step 2: the stage above "a" sees step 1's value; step 3: the output sees it
    assert [y.item() for y in ys] == [0, 0, 20, 20]
    assert state["a"].item() == 2 and state["b"].item() == 20
    ys, _ = run(chain, chain.initial_state(x), [x] * 2)
    assert [y.item() for y in ys] == [20, 20]


def test_feedback_tree_with_a_merger():
    # a Merger in a tree reads the previous state, like in a chain
    tree = nn.FeedbackTree(nn.Merger("top", nn.Lambda(ident), operator.add), nn.Splitter("bottom"),
                           nn.Lambda(lambda t: t * 2), nn.Splitter("top"))
    state = {"bottom": mf.zeros(1), "top": mf.zeros(1)}
    outs = []
    for _ in range(4):
        state, y = tree(state, mf.tensor([1.0]))
        outs.append((state["bottom"].item(), state["top"].item(), y.item()))
    # bottom_t = 1 + top_{t-1}; top_t = 2 * bottom_{t-1}; y_t = top_{t-1}
    assert outs == [(1, 0, 0), (1, 2, 0), (3, 2, 2), (3, 6, 2)]


# ---- fused Merger path ---------------------------------------------------------------------------
@pytest.mark.parametrize("make_op,shape", [
    (lambda: nn.Dense(4, 4, mf.tanh), (3, 4)),
    (lambda: nn.Dense(4, 4), (4,)),
    (lambda: nn.Conv(2, 2, 3, mf.relu, padding=1), (2, 2, 4, 4)),
    (lambda: nn.ConvTranspose(3, 2, 4, mf.sigmoid, stride=2, padding=1), (2, 2, 4, 4)),
])
def test_fused_merger_equals_plain_merger(make_op, shape):
    op = to64(make_op())
    state_shape = (2, 3, 2, 2) if isinstance(op, nn.ConvTranspose) else shape
    rng = np.random.default_rng(0)
    x = t64(rng.standard_normal(shape), requires_grad=True)
    s = t64(rng.standard_normal(state_shape), requires_grad=True)
    fused = nn.Merger("m", op, operator.add)
    plain = nn.Merger("m", op, lambda a, b: a + b)
    y1, y2 = fused.merge(x, {"m": s}), plain.merge(x, {"m": s})
    assert type(y1._ctx).__name__ == "MergeAct" and type(y2._ctx).__name__ != "MergeAct"
    np.testing.assert_allclose(y1.numpy(), y2.numpy(), rtol=1e-12)
    gradcheck(lambda x, s, w, b: fused.merge(x, {"m": s}), x, s, op.weight, op.bias)


class _Gated(nn.Dense):
    """A user's Dense whose forward switches the feedback off."""

    def forward(self, x):
        return super().forward(x) * 0.0


def test_merger_calls_an_affine_subclass_that_overrides_forward(monkeypatch):
    mf.manual_seed(0)
    body = nn.Dense(3, 3)
    net = nn.FeedbackChain(nn.Merger("s", _Gated(3, 3, mf.relu), operator.add), body, nn.Splitter("s"))
    x, s = mf.randn(2, 3), mf.randn(2, 3)
    _, y = net({"s": s}, x)
    np.testing.assert_array_equal(y.numpy(), body(x).numpy())      # x + 0, then body
    # a subclass that changes nothing about calling it is still fused
    calls = []
    monkeypatch.setattr(F, "merge_act", lambda *a, **k: calls.append(1) or a[0])

    class Named(nn.Dense):
        pass

    nn.FeedbackChain(nn.Merger("s", Named(3, 3, mf.relu), operator.add), body, nn.Splitter("s"))({"s": s}, x)
    assert calls == [1]


def test_merger_calls_a_layer_whose_forward_was_replaced_on_the_instance():
    mf.manual_seed(0)
    op = nn.Dense(4, 4, mf.relu)
    plain = op.forward
    op.forward = lambda s: plain(s) * 0.0    # as a user's hook or a test double would
    x, s = mf.randn(2, 4), mf.randn(2, 4)
    np.testing.assert_array_equal(nn.Merger("s", op, operator.add).merge(x, {"s": s}).numpy(), x.numpy())


def test_fused_merger_with_broadcasting_state_falls_back():
    op = nn.Dense(5, 10, mf.relu)
    merger = nn.Merger("m", op, operator.add)
    x, s = mf.randn(3, 10), mf.randn(5)
    np.testing.assert_allclose(merger.merge(x, {"m": s}).numpy(), (x + op(s)).numpy(), rtol=1e-6)


AFFINE_OPS = {   # name: (op factory, stream shape, state shape)
    "dense_sigmoid": (lambda: nn.Dense(4, 4, mf.sigmoid), (3, 4), (3, 4)),
    "dense_identity": (lambda: nn.Dense(4, 4), (3, 4), (3, 4)),           # fused for + too
    "conv_sigmoid": (lambda: nn.Conv(2, 2, 3, mf.sigmoid, padding=1), (2, 2, 4, 4), (2, 2, 4, 4)),
    "convT_sigmoid": (lambda: nn.ConvTranspose(3, 2, 4, mf.sigmoid, stride=2, padding=1), (2, 2, 4, 4),
                      (2, 3, 2, 2)),
}
COMBINES = {"add": operator.add, "sub": operator.sub, "truediv": operator.truediv}


@pytest.mark.parametrize("op_name,combine_name", [
    (o, c) for o in AFFINE_OPS for c in ("sub", "truediv")
    if not (o == "dense_identity" and c == "truediv")                   # no denominator near zero
])
def test_merger_with_sub_and_truediv_of_an_affine_op(op_name, combine_name):
    """Only + has a fused epilogue: - and / must give combine(x, op(s)) exactly, in value and gradient."""
    make_op, shape, state_shape = AFFINE_OPS[op_name]
    combine = COMBINES[combine_name]
    mf.manual_seed(0)
    op = to64(make_op())
    rng = np.random.default_rng(1)
    x = t64(rng.standard_normal(shape), requires_grad=True)
    s = t64(rng.standard_normal(state_shape), requires_grad=True)
    merger = nn.Merger("m", op, combine)
    np.testing.assert_allclose(merger.merge(x, {"m": s}).numpy(), combine(x.numpy(), op(s).numpy()), rtol=1e-12)
    gradcheck(lambda x, s, w, b: merger.merge(x, {"m": s}), x, s, op.weight, op.bias)


@pytest.mark.parametrize("op_name", ["dense_sigmoid", "conv_sigmoid", "convT_sigmoid"])
@pytest.mark.parametrize("combine_name", list(COMBINES))
def test_merger_under_emulated_kernels_matches_the_array_path(op_name, combine_name, emulated_kernel_launches):
    """float32 under kernels.use("emulate") against the same Merger with kernels off: values (also against
    combine(x, op(s)) by hand) and the gradients of the stream, the state and the op's parameters."""
    from minifb import kernels

    make_op, shape, state_shape = AFFINE_OPS[op_name]
    combine = COMBINES[combine_name]
    mf.manual_seed(0)
    op = make_op()
    rng = np.random.default_rng(2)
    xa, sa = (rng.standard_normal(sh).astype(np.float32) for sh in (shape, state_shape))
    g = rng.standard_normal(shape).astype(np.float32)
    merger = nn.Merger("m", op, combine)

    def run_mode(mode):
        x, s = mf.tensor(xa, requires_grad=True), mf.tensor(sa, requires_grad=True)
        op.zero_grad()
        with kernels.use(mode):
            y = merger.merge(x, {"m": s})
            y.backward(g)
        return [y.numpy(), x.grad, s.grad, op.weight.grad.copy(), op.bias.grad.copy()]

    want = run_mode("off")
    got = run_mode("emulate")
    assert ("merger_fwd" in emulated_kernel_launches) == (combine is operator.add), sorted(set(emulated_kernel_launches))
    by_hand = combine(xa.astype(np.float64), op(mf.tensor(sa)).numpy().astype(np.float64))
    for result in (want, got):
        np.testing.assert_allclose(result[0], by_hand, rtol=1e-4, atol=1e-5)
    for name, a, e in zip(["y", "dx", "ds", "dw", "db"], got, want):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4, err_msg=name)


# ---- BPTT gradients ---------------------------------------------------------------------------
def _bptt_check(net, xs, state0):
    params = net.parameters()

    def loss(*_):
        ys, _ = run(net, state0, xs)
        return mf.stack(ys)

    gradcheck(loss, *params, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("combine", [operator.add, operator.mul])
def test_bptt_dense_feedback_chain_matches_finite_differences(combine):
    mf.manual_seed(0)
    net = to64(nn.FeedbackChain(
        nn.Dense(3, 4, mf.tanh),
        nn.Merger("h", nn.Dense(4, 4, mf.tanh), combine),
        nn.Dense(4, 4, mf.sigmoid),
        nn.Splitter("h"),
        nn.Merger("out", nn.Dense(2, 4), operator.add),    # plain op (no activation): fused too
        nn.Dense(4, 2),
        nn.Splitter("out"),
    ))
    rng = np.random.default_rng(1)
    xs = [t64(rng.standard_normal((2, 3))) for _ in range(4)]
    state0 = {k: t64(rng.standard_normal(v.shape) * 0.5) for k, v in net.initial_state(xs[0]).items()}
    _bptt_check(net, xs, state0)


def test_bptt_conv_feedback_chain_with_conv_transpose_matches_finite_differences():
    mf.manual_seed(1)
    net = to64(nn.FeedbackChain(
        nn.Conv(1, 2, 3, mf.tanh, padding=1),                               # (N, 2, 6, 6)
        nn.Merger("c2", nn.ConvTranspose(3, 2, 4, mf.tanh, stride=2, padding=1), operator.add),
        nn.Conv(2, 3, 3, mf.tanh, stride=2, padding=1),                      # (N, 3, 3, 3)
        nn.Splitter("c2"),
        nn.Flatten(),
        nn.Dense(27, 2),
    ))
    rng = np.random.default_rng(2)
    xs = [t64(rng.standard_normal((2, 1, 6, 6))) for _ in range(3)]
    state0 = net.initial_state(xs[0])
    assert state0["c2"].shape == (2, 3, 3, 3)
    _bptt_check(net, xs, state0)


def test_bptt_through_the_input_and_state():
    net = to64(seed_net())
    rng = np.random.default_rng(3)
    xs = [t64(rng.standard_normal(10), requires_grad=True) for _ in range(3)]
    s0 = t64(rng.standard_normal(5), requires_grad=True)

    def loss(s0, *xs):
        ys, _ = run(net, {"fork1": s0}, xs)
        return mf.stack(ys)

    gradcheck(loss, s0, *xs)


def test_recur_equals_the_explicitly_unrolled_graph():
    """Values and gradients of Recur over T steps equal a hand-written unrolled graph."""
    net = to64(seed_net())
    w1, b1 = net.layers[0].op.weight, net.layers[0].op.bias
    w2, b2 = net.layers[1].weight, net.layers[1].bias
    rng = np.random.default_rng(4)
    xs = [t64(rng.standard_normal((2, 10))) for _ in range(5)]
    g = rng.standard_normal((5, 2, 5))

    rnet = nn.Recur(net, {"fork1": t64(np.zeros((2, 5)))})
    through_recur = mf.stack(nn.unroll(rnet, xs))
    through_recur.backward(g)
    grads = [p.grad.copy() for p in (w1, b1, w2, b2)]
    for p in (w1, b1, w2, b2):
        p.grad = None

    fork, ys = t64(np.zeros((2, 5))), []
    for x in xs:                                    # the graph written out with plain ops
        merged = x + F.relu(fork @ w1.transpose() + b1)
        fork = F.relu(merged @ w2.transpose() + b2)
        ys.append(fork)
    expected = mf.stack(ys)
    expected.backward(g)
    np.testing.assert_allclose(through_recur.numpy(), expected.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rnet.state["fork1"].numpy(), ys[-1].numpy(), rtol=1e-12)
    for p, want in zip((w1, b1, w2, b2), grads):
        np.testing.assert_allclose(p.grad, want, rtol=1e-10, atol=1e-12)


def _tree_net():
    """A FeedbackTree with a Merger: bottom_t = d1(x_t) + m(top_{t-1}); top_t = d2(bottom_{t-1});
    y_t = d3(top_{t-1})."""
    mf.manual_seed(6)
    return to64(nn.FeedbackTree(
        nn.Dense(3, 4, mf.tanh),
        nn.Merger("top", nn.Dense(2, 4, mf.tanh), operator.add),
        nn.Splitter("bottom"),
        nn.Dense(4, 2, mf.sigmoid),
        nn.Splitter("top"),
        nn.Dense(2, 2),
    ))


def test_bptt_feedback_tree_matches_finite_differences():
    net = _tree_net()
    rng = np.random.default_rng(7)
    xs = [t64(rng.standard_normal((2, 3)), requires_grad=True) for _ in range(4)]
    state0 = {k: t64(rng.standard_normal(v.shape) * 0.5, requires_grad=True)
              for k, v in net.initial_state(xs[0]).items()}
    assert list(state0) == ["bottom", "top"]
    _bptt_check(net, xs, state0)

    def loss(bottom, top, *xs):
        ys, _ = run(net, {"bottom": bottom, "top": top}, xs)
        return mf.stack(ys)

    gradcheck(loss, state0["bottom"], state0["top"], *xs)


def test_recur_of_a_feedback_tree_equals_the_explicitly_unrolled_graph():
    net = _tree_net()
    d1, merger, d2, d3 = net.layers[0], net.layers[1], net.layers[3], net.layers[5]
    m = merger.op
    params = [d1.weight, d1.bias, m.weight, m.bias, d2.weight, d2.bias, d3.weight, d3.bias]
    assert len(params) == len(net.parameters())
    rng = np.random.default_rng(8)
    T = 5
    xs = [t64(rng.standard_normal((2, 3))) for _ in range(T)]
    bottom0, top0 = t64(rng.standard_normal((2, 4))), t64(rng.standard_normal((2, 2)))
    g = rng.standard_normal((T, 2, 2))

    rnet = nn.Recur(net, {"bottom": bottom0, "top": top0})
    through_recur = mf.stack(nn.unroll(rnet, xs))
    through_recur.backward(g)
    grads = [p.grad.copy() for p in params]
    for p in params:
        p.grad = None

    def dense(layer, v, act=None):
        out = v @ layer.weight.transpose() + layer.bias
        return out if act is None else act(out)

    bottom, top, ys = bottom0, top0, []
    for x in xs:                                    # the graph written out with plain ops
        new_bottom = dense(d1, x, mf.tanh) + dense(m, top, mf.tanh)
        new_top = dense(d2, bottom, mf.sigmoid)     # the stream continues with the previous bottom
        ys.append(dense(d3, top))                   # ... and with the previous top
        bottom, top = new_bottom, new_top
    expected = mf.stack(ys)
    expected.backward(g)
    np.testing.assert_allclose(through_recur.numpy(), expected.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rnet.state["bottom"].numpy(), bottom.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rnet.state["top"].numpy(), top.numpy(), rtol=1e-12)
    for p, want in zip(params, grads):
        np.testing.assert_allclose(p.grad, want, rtol=1e-10, atol=1e-12)


# ---- Recur with feedback: detach, reset --------------------------------------------------------
def test_detach_cuts_the_tape():
    net = seed_net()
    rng = np.random.default_rng(5)
    xs = [mf.tensor(rng.standard_normal((2, 10)).astype(np.float32)) for _ in range(3)]
    rnet = nn.Recur(net, {"fork1": mf.zeros(2, 5)})
    rnet(xs[0])
    rnet(xs[1])
    rnet.detach()
    detached = rnet.state
    assert not detached["fork1"].requires_grad
    rnet(xs[2]).sum().backward()
    through_recur = [p.grad.copy() for p in net.parameters()]
    net.zero_grad()
    _, y = net({"fork1": detached["fork1"]}, xs[2])     # one step from the detached state
    y.sum().backward()
    for got, want in zip(through_recur, [p.grad for p in net.parameters()]):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_reset_restores_the_initial_state():
    net = seed_net()
    h0 = {"fork1": mf.zeros(5)}
    rnet = nn.Recur(net, h0)
    x = mf.randn(10)
    first = [rnet(x).numpy() for _ in range(3)]
    assert rnet.state is not h0
    rnet.reset()
    assert rnet.state is h0
    again = [rnet(x).numpy() for _ in range(3)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_recur_makes_the_initial_state_lazily():
    net = seed_net()
    rnet = nn.Recur(net)
    y = rnet(mf.randn(4, 10))
    assert y.shape == (4, 5) and rnet.state["fork1"].shape == (4, 5)
    rnet.reset()
    assert rnet.state is None
    assert rnet(mf.randn(2, 10)).shape == (2, 5)


# ---- nesting -----------------------------------------------------------------------------------
def _layers():
    mf.manual_seed(7)
    return dict(
        d1=nn.Dense(3, 4, mf.tanh), ma=nn.Merger("a", nn.Dense(4, 4), operator.add),
        d2=nn.Dense(4, 4, mf.tanh), sa=nn.Splitter("a"),
        mb=nn.Merger("b", nn.Dense(2, 4, mf.relu), operator.mul),
        d3=nn.Dense(4, 2), sb=nn.Splitter("b"),
    )


def test_nested_chains_take_part_in_the_outer_state():
    L = _layers()
    flat = nn.FeedbackChain(L["d1"], L["ma"], L["d2"], L["sa"], L["mb"], L["d3"], L["sb"])
    nested = nn.FeedbackChain(
        nn.Chain(L["d1"], nn.FeedbackChain(L["ma"], L["d2"], L["sa"])),
        L["mb"],                                            # reads "b", written inside a nested Chain
        nn.Chain(L["d3"], nn.Chain(L["sb"])),
    )
    assert nested.splitnames() == flat.splitnames() == ["a", "b"]
    x = mf.randn(2, 3)
    s_flat, s_nested = flat.initial_state(x), nested.initial_state(x)
    assert {k: v.shape for k, v in s_flat.items()} == {k: v.shape for k, v in s_nested.items()} == \
        {"a": (2, 4), "b": (2, 2)}
    for _ in range(3):
        x = mf.randn(2, 3)
        s_flat, y_flat = flat(s_flat, x)
        s_nested, y_nested = nested(s_nested, x)
        np.testing.assert_array_equal(y_flat.numpy(), y_nested.numpy())
        for k in s_flat:
            np.testing.assert_array_equal(s_flat[k].numpy(), s_nested[k].numpy())
    assert len(nested.parameters()) == len(flat.parameters()) == 10


def test_nested_feedback_tree_keeps_tree_semantics():
    inner = nn.FeedbackTree(nn.Lambda(lambda t: t + 1), nn.Splitter("t"))
    outer = nn.FeedbackChain(inner, nn.Lambda(lambda t: t * 10), nn.Chain(nn.Splitter("c")))
    x = mf.tensor([1.0])
    state = outer.initial_state(x)
    assert list(state) == ["t", "c"]
    ys, _ = run(outer, state, [x] * 2)
    assert [y.item() for y in ys] == [0, 20]          # the tree's Splitter delays by one step


def test_plain_chain_nested_in_a_feedback_tree_keeps_tree_semantics():
    # a Chain inherits the behaviour of the container it is in: inside a FeedbackTree its Splitter
    # records this step's value but passes the previous step's value on
    tree = nn.FeedbackTree(nn.Chain(nn.Lambda(lambda t: t + 1), nn.Splitter("s")), nn.Lambda(lambda t: t * 10))
    assert tree.splitnames() == ["s"]
    state, outs = {"s": mf.tensor([5.0])}, []
    for x in (1.0, 2.0, 3.0):
        state, y = tree(state, mf.tensor([x]))
        outs.append((state["s"].item(), y.item()))
    # by hand: s_t = x_t + 1; y_t = 10 * s_{t-1}, with s_0 = 5
    #   t=1: s = 2, y = 50;  t=2: s = 3, y = 20;  t=3: s = 4, y = 30
    # (chain semantics would give y = 10 * s_t: 20, 30, 40)
    assert outs == [(2, 50), (3, 20), (4, 30)]
    # from the zero initial state the first output sees zeros
    x = mf.tensor([1.0])
    ys, _ = run(tree, tree.initial_state(x), [x] * 3)
    assert [y.item() for y in ys] == [0, 20, 20]


def test_validation_sees_through_nesting():
    with pytest.raises(ValueError, match=r"duplicate Splitter names \['a'\]"):
        nn.FeedbackChain(nn.Splitter("a"), nn.Chain(nn.Dense(2, 2), nn.Splitter("a")))
    with pytest.raises(ValueError, match=r'Merger\("z"\)'):
        nn.FeedbackChain(nn.Chain(nn.Merger("z", nn.Dense(2, 2), operator.add)), nn.Splitter("a"))
    # a Merger in a nested Chain may read a Splitter of the outer chain
    nn.FeedbackChain(nn.Chain(nn.Merger("a", nn.Dense(2, 2), operator.add)), nn.Splitter("a"))


class _Halved(nn.FeedbackChain):
    """A user's FeedbackChain whose forward post-processes its output."""

    def forward(self, state, x):
        state, y = super().forward(state, x)
        return state, y * 0.5


def test_nested_feedback_chain_subclass_is_called_with_its_own_forward():
    mf.manual_seed(0)
    inner = _Halved(nn.Dense(3, 3), nn.Splitter("a"), nn.Merger("a", nn.Dense(3, 3), operator.add))
    outer = nn.FeedbackChain(inner, nn.Splitter("b"))
    xs = [mf.randn(2, 3) for _ in range(3)]
    s_inner, s_outer = inner.initial_state(xs[0]), outer.initial_state(xs[0])
    assert list(s_outer) == ["a", "b"]
    for x in xs:
        s_inner, y_inner = inner(s_inner, x)
        s_outer, y_outer = outer(s_outer, x)
        np.testing.assert_array_equal(y_outer.numpy(), y_inner.numpy())       # halved, as alone
        np.testing.assert_array_equal(s_outer["a"].numpy(), s_inner["a"].numpy())
        np.testing.assert_array_equal(s_outer["b"].numpy(), y_inner.numpy())


# ---- initial_state ---------------------------------------------------------------------------------
def test_initial_state_shapes_dtype_and_no_side_effects():
    net = nn.FeedbackChain(
        nn.Conv(1, 4, 3, mf.relu, padding=1), nn.BatchNorm(4), nn.Splitter("c1"),
        nn.Merger("c2", nn.ConvTranspose(8, 4, 2, stride=2), operator.add),
        nn.MaxPool(2), nn.Conv(4, 8, 3, mf.relu, padding=1), nn.Splitter("c2"),
        nn.Flatten(), nn.Dropout(0.5), nn.Dense(8 * 4 * 4, 10), nn.Splitter("out"),
    )
    bn = net.layers[1]
    before = bn.running_mean.numpy().copy()
    x = mf.randn(3, 1, 8, 8)
    state = net.initial_state(x)
    assert {k: v.shape for k, v in state.items()} == {"c1": (3, 4, 8, 8), "c2": (3, 8, 4, 4), "out": (3, 10)}
    assert all(v.dtype == np.float32 and not v.requires_grad and not v.numpy().any() for v in state.values())
    np.testing.assert_array_equal(bn.running_mean.numpy(), before)
    assert all(m.training for m in net.modules())
    state, y = net(state, x)
    assert y.shape == (3, 10)
    x64 = mf.tensor(np.zeros((1, 1, 8, 8)), dtype="float64")
    assert all(v.dtype == np.float64 for v in net.initial_state(x64).values())


def test_initial_state_leaves_a_recur_inside_the_chain_as_it_was():
    mf.manual_seed(0)
    gru = nn.GRU(4, 4)
    net = nn.FeedbackChain(nn.Merger("s", nn.Dense(4, 4), operator.add), gru, nn.Splitter("s"))
    x = mf.randn(2, 4)
    state = net.initial_state(x)
    assert gru.state is None                       # no step was taken
    _, y = net(state, x)
    gru.reset()
    _, y_zero = net({"s": mf.zeros(2, 4)}, x)
    np.testing.assert_array_equal(y.numpy(), y_zero.numpy())
    gru.state = mf.ones(2, 4)                      # a Recur mid-sequence keeps its state too
    net.initial_state(x)
    np.testing.assert_array_equal(gru.state.numpy(), np.ones((2, 4), np.float32))


def test_initial_state_runs_an_inner_recur_from_its_initial_state_whatever_its_last_batch():
    mf.manual_seed(0)
    lstm = nn.LSTM(6, 7)
    net = nn.FeedbackChain(nn.Merger("o", nn.Dense(3, 6), operator.add), lstm, nn.Dense(7, 3), nn.Splitter("o"))
    x4, x7 = mf.randn(4, 6), mf.randn(7, 6)
    net(net.initial_state(x4), x4)                 # the LSTM now holds a (4, 7) state
    held = lstm.state
    state = net.initial_state(x7)                  # a new batch size: inferred from the LSTM's zero state
    assert state["o"].shape == (7, 3) and lstm.state is held
    lstm.state0 = (mf.zeros(1, 7), mf.zeros(1, 7))  # an initial state of its own is the one used
    assert net.initial_state(x7)["o"].shape == (7, 3) and lstm.state is held


def test_initial_state_on_the_input_device(device):
    net = seed_net().to(device)
    state = net.initial_state(mf.randn(2, 10, device=device))
    assert state["fork1"].device == device and state["fork1"].shape == (2, 5)


def test_initial_state_fails_clearly_when_combine_changes_the_shape():
    net = nn.FeedbackChain(
        nn.Merger("h", nn.Dense(2, 2), lambda a, b: mf.concat([a, b], axis=-1)),
        nn.Dense(5, 2), nn.Splitter("h"),
    )
    with pytest.raises(ValueError, match="initial_state.*build the state by hand"):
        net.initial_state(mf.randn(3))
    state, y = net({"h": mf.zeros(2)}, mf.randn(3))     # works with a hand-made state
    assert y.shape == (2,)


# ---- errors ------------------------------------------------------------------------------------
def test_error_missing_state_key_names_merger_and_key():
    net = seed_net()
    with pytest.raises(KeyError, match=r'Merger\("fork1".*no entry "fork1"'):
        net({"other": mf.zeros(5)}, mf.randn(10))
    tree = nn.FeedbackTree(nn.Dense(2, 2), nn.Splitter("s"))
    with pytest.raises(KeyError, match=r'Splitter\("s"\) in a FeedbackTree.*no entry "s"'):
        tree({}, mf.randn(2))


def test_error_shapes_that_do_not_combine():
    net = nn.FeedbackChain(nn.Merger("h", nn.Dense(4, 6), operator.add), nn.Dense(5, 4), nn.Splitter("h"))
    with pytest.raises(ValueError, match=r'Merger\("h".*stream of shape \(5,\).*shape \(6,\)'):
        net({"h": mf.zeros(4)}, mf.randn(5))
    # feedback may broadcast into the stream, but never enlarge it
    net2 = nn.FeedbackChain(nn.Merger("h", nn.Lambda(ident), operator.add), nn.Splitter("h"))
    with pytest.raises(ValueError, match=r"stream of shape \(3,\).*shape \(2, 3\)"):
        net2({"h": mf.zeros(2, 3)}, mf.randn(3))
    cat = nn.FeedbackChain(nn.Merger("h", nn.Lambda(ident), lambda a, b: mf.concat([a, b], axis=0)),
                           nn.Splitter("h"))
    with pytest.raises(ValueError, match=r"combine <lambda> failed on the stream of shape \(2, 3\)"):
        cat({"h": mf.zeros(4, 2)}, mf.randn(2, 3))


def test_error_op_cannot_take_the_state():
    net = seed_net()
    with pytest.raises(ValueError, match=r'Merger\("fork1"\): op Dense\(5, 10, relu\) failed on '
                                         r'state\["fork1"\] of shape \(7,\)'):
        net({"fork1": mf.zeros(7)}, mf.randn(10))
    net2 = nn.FeedbackChain(nn.Merger("a", nn.Chain(nn.Dense(3, 2)), operator.add), nn.Splitter("a"))
    with pytest.raises(ValueError, match=r'Merger\("a"\): op Chain\(Dense\(3, 2\)\) failed'):
        net2({"a": mf.zeros(4)}, mf.randn(2))


def test_error_construction():
    with pytest.raises(ValueError, match=r"duplicate Splitter names \['s'\]"):
        nn.FeedbackChain(nn.Splitter("s"), nn.Dense(2, 2), nn.Splitter("s"))
    with pytest.raises(ValueError, match=r'no Splitter writes the state read by Merger\("x"\)'):
        nn.FeedbackChain(nn.Merger("x", nn.Dense(2, 2), operator.add), nn.Splitter("y"))
    with pytest.raises(ValueError, match="FeedbackTree"):
        nn.FeedbackTree(nn.Merger("x", nn.Dense(2, 2), operator.add))
    with pytest.raises(TypeError, match="Splitter"):
        nn.Splitter("")
    with pytest.raises(TypeError, match="Merger"):
        nn.Merger("x", nn.Dense(2, 2), "add")


def test_error_markers_outside_a_feedback_container():
    with pytest.raises(RuntimeError, match=r'Splitter\("s"\) was called outside'):
        nn.Chain(nn.Dense(2, 2), nn.Splitter("s"))(mf.randn(2))
    with pytest.raises(RuntimeError, match=r'Merger\("s"\) was called outside'):
        nn.Merger("s", nn.Dense(2, 2), operator.add)(mf.randn(2))


def test_error_state_is_not_a_dict():
    with pytest.raises(TypeError, match="state must be a dict"):
        seed_net()(mf.zeros(5), mf.randn(10))


def test_error_tree_state_of_the_wrong_shape():
    tree = nn.FeedbackTree(nn.Dense(2, 2), nn.Splitter("s"))
    with pytest.raises(ValueError, match=r'state\["s"\] has shape \(3,\), but this Splitter records values of '
                                         r"shape \(2,\)"):
        tree({"s": mf.zeros(3)}, mf.randn(2))
    with pytest.raises(ValueError, match=r'state\["s"\] has shape \(3, 2\), but .* shape \(2, 2\)'):
        tree({"s": mf.zeros(3, 2)}, mf.randn(2, 2))


@pytest.mark.parametrize("cls", [nn.FeedbackChain, nn.FeedbackTree])
def test_a_state_that_a_merger_would_broadcast_but_its_splitter_does_not_write_is_refused(cls):
    # FeedbackNets.jl's Merger("f", identity, +): the state is added to the stream as it is
    net = cls(nn.Dense(5, 5), nn.Merger("f", nn.Lambda(lambda s: s), operator.add), nn.Dense(5, 5),
              nn.Splitter("f"))
    x = mf.randn(2, 5)
    for bad in (mf.ones(2, 1), mf.ones(1), mf.tensor(1.0)):       # (3, 5) fails in the Merger already
        with pytest.raises(ValueError, match=rf'Splitter\("f"\): state\["f"\] has shape {re.escape(str(bad.shape))}'):
            net({"f": bad}, x)
    for fine in (mf.ones(2, 5), mf.ones(1, 5), mf.ones(5)):   # its own shape, a batch of 1, no batch axis
        state, _ = net({"f": fine}, x)
        assert state["f"].shape == (2, 5)


def test_tree_splitter_broadcasts_a_batch_1_state_like_a_merger():
    mf.manual_seed(0)
    tree = nn.FeedbackTree(nn.Dense(2, 3), nn.Splitter("s"), nn.Dense(3, 2))
    s0 = nn.Parameter(mf.randn(1, 3).numpy())
    x = mf.randn(4, 2)
    _, y = tree({"s": s0}, x)
    _, y_full = tree({"s": F.broadcast_to(s0, (4, 3))}, x)
    np.testing.assert_array_equal(y.numpy(), y_full.numpy())
    y.sum().backward()
    assert s0.grad.shape == (1, 3)
    # y = s0 @ W.T + b in every row, so d(sum y)/d s0 sums W's rows once per batch row
    np.testing.assert_allclose(s0.grad, 4 * tree.layers[2].weight.numpy().sum(axis=0, keepdims=True), rtol=1e-5)


def test_feedback_chain_indexing():
    net = seed_net()
    assert isinstance(net[1], nn.Dense) and len(net) == 3 and list(net) == net.layers
    assert isinstance(net[1:], nn.FeedbackChain)
    with pytest.raises(ValueError, match="no Splitter"):
        net[:2]


# ---- bad input (audit): refused where it is passed, naming the marker, the state and the shapes -------
@pytest.mark.parametrize("combine", [operator.add, F.add, F.maximum, lambda a, b: a * b],
                         ids=["operator.add", "F.add", "F.maximum", "lambda"])
def test_merger_state_never_enlarges_the_stream_batch_whatever_the_combine(combine):
    net = nn.FeedbackChain(nn.Merger("fork1", nn.Dense(5, 10, mf.relu), combine),
                           nn.Dense(10, 5, mf.relu), nn.Splitter("fork1"))
    with pytest.raises(ValueError, match=r'Merger\("fork1".*stream of shape \(1, 10\).*shape \(4, 10\)'):
        net({"fork1": mf.zeros(4, 5)}, mf.randn(1, 10))
    _, y = net({"fork1": mf.zeros(1, 5)}, mf.randn(4, 10))   # a batch-1 state broadcasts (documented)
    assert y.shape == (4, 5)
    with pytest.raises(ValueError, match=r"stream of shape \(10,\).*shape \(4, 10\)"):
        net({"fork1": mf.zeros(4, 5)}, mf.randn(10))          # nor batch an unbatched stream


def test_merger_concatenating_combine_still_changes_the_channels_not_the_batch():
    net = nn.FeedbackChain(nn.Merger("h", nn.Lambda(ident), lambda a, b: mf.concat([a, b], axis=1)),
                           nn.Dense(5, 2), nn.Splitter("h"))
    state, y = net({"h": mf.zeros(4, 2)}, mf.randn(4, 3))
    assert y.shape == (4, 2) and state["h"].shape == (4, 2)


@pytest.mark.parametrize("value", [None, [0.0] * 5, np.zeros(5, np.float32)], ids=["None", "list", "ndarray"])
def test_merger_state_value_that_is_not_a_tensor(value):
    for net in (seed_net(), nn.FeedbackChain(nn.Merger("fork1", nn.Dense(5, 10), operator.add),
                                             nn.Dense(10, 5), nn.Splitter("fork1"))):
        with pytest.raises(TypeError, match=rf'Merger\("fork1".*state\["fork1"\] must be a Tensor, '
                                            rf"got {type(value).__name__}"):
            net({"fork1": value}, mf.randn(10))


def test_feedback_chain_input_that_is_not_a_tensor():
    with pytest.raises(TypeError, match=r'Merger\("fork1".*the stream must be a Tensor, got NoneType'):
        seed_net()({"fork1": mf.zeros(5)}, None)
    with pytest.raises(TypeError, match=r"FeedbackChain.initial_state: x must be a Tensor, got NoneType"):
        seed_net().initial_state(None)


@pytest.mark.parametrize("value", [None, np.zeros(3, np.float32)], ids=["None", "ndarray"])
def test_tree_state_value_that_is_not_a_tensor_names_the_splitter(value):
    tree = nn.FeedbackTree(nn.Dense(3, 3), nn.Splitter("s1"), nn.Dense(3, 2))
    with pytest.raises(TypeError, match=rf'Splitter\("s1"\) in a FeedbackTree: state\["s1"\] must be a '
                                        rf"Tensor, got {type(value).__name__}"):
        tree({"s1": value}, mf.ones(3))


def test_feedback_chain_refuses_a_layer_that_is_not_callable():
    with pytest.raises(TypeError, match=r"FeedbackChain: layers\[1\] must be callable, got 5"):
        nn.FeedbackChain(nn.Dense(2, 2), 5)


@pytest.mark.parametrize("build, marker, container", [
    (lambda: nn.FeedbackChain(nn.Dense(4, 4), nn.SkipConnection(nn.Chain(nn.Merger("s", nn.Dense(4, 4), operator.add)),
                                                                operator.add), nn.Splitter("s")),
     'Merger("s"', "SkipConnection("),
    (lambda: nn.FeedbackChain(nn.Dense(4, 4), nn.Parallel(operator.add, nn.Splitter("s"), nn.Dense(4, 4)),
                              nn.Merger("s", nn.Dense(4, 4), operator.add)),
     'Splitter("s")', "Parallel("),
    (lambda: nn.FeedbackTree(nn.Merger("s", nn.Chain(nn.Dense(4, 4), nn.Splitter("q")), operator.add), nn.Dense(4, 4),
                             nn.Splitter("s")),
     'Splitter("q")', 'Merger("s"'),
    (lambda: nn.FeedbackChain(nn.Chain(nn.Dense(4, 4), nn.SkipConnection(nn.Splitter("s"), operator.add)),
                              nn.Merger("s", nn.Dense(4, 4), operator.add)),
     'Splitter("s")', "SkipConnection("),
])
def test_validate_refuses_markers_the_chain_cannot_reach(build, marker, container):
    with pytest.raises(ValueError, match=re.escape(marker) + r".* sits inside " + re.escape(container)):
        build()


@pytest.mark.parametrize("build, container", [
    (lambda inner: nn.FeedbackChain(nn.Dense(4, 4), nn.SkipConnection(inner, operator.add)), "SkipConnection("),
    (lambda inner: nn.FeedbackChain(nn.Parallel(operator.add, nn.Dense(4, 4), inner)), "Parallel("),
    (lambda inner: nn.FeedbackChain(nn.Merger("s", inner, operator.add), nn.Splitter("s")), "Merger("),
    (lambda inner: nn.FeedbackTree(nn.Chain(nn.Dense(4, 4), nn.SkipConnection(nn.Chain(inner), operator.add))),
     "SkipConnection("),
])
@pytest.mark.parametrize("kind", [nn.FeedbackChain, nn.FeedbackTree])
@pytest.mark.parametrize("with_markers", [True, False], ids=["markers", "no-markers"])
def test_validate_refuses_a_nested_feedback_chain_the_chain_cannot_reach(build, container, kind, with_markers):
    # there it would be called as layer(x), without the state it needs: refused at construction
    layers = [nn.Merger("a", nn.Dense(4, 4), operator.add), nn.Dense(4, 4), nn.Splitter("a")]
    inner = kind(*layers) if with_markers else kind(nn.Dense(4, 4))
    with pytest.raises(ValueError, match=rf"(?s)^Feedback(Chain|Tree): {kind.__name__}\(.* sits inside "
                                         rf"{re.escape(container)}.* a nested {kind.__name__} runs on the outer "
                                         r"state.*wrap it in nn\.Recur"):
        build(inner)


def test_a_feedback_chain_in_a_plain_chain_called_as_a_layer_says_it_needs_the_state():
    mf.manual_seed(0)
    inner = nn.FeedbackChain(nn.Merger("a", nn.Dense(4, 4), operator.add), nn.Dense(4, 4), nn.Splitter("a"))
    x = mf.randn(2, 4)
    nested_tree = nn.Chain(nn.Chain(nn.FeedbackTree(nn.Dense(4, 4))))     # the innermost Chain explains
    for chain, index, kind in ((nn.Chain(nn.Dense(4, 4), inner), 1, "FeedbackChain"),
                               (nested_tree, 0, "FeedbackTree")):
        with pytest.raises(TypeError, match=rf"^Chain: layers\[{index}\] {kind}\(.*\) is a {kind}, called as "
                                            r"`state, y = net\(state, x\)`.*put the Chain in a FeedbackChain.*"
                                            rf"or wrap the {kind} in nn\.Recur$"):
            chain(x)
    # what the message advises works: in a FeedbackChain it takes part in the state; in a Recur it keeps its own
    outer = nn.FeedbackChain(nn.Chain(nn.Dense(4, 4), inner))
    assert outer.splitnames() == ["a"]
    assert outer(outer.initial_state(x), x)[1].shape == (2, 4)
    assert nn.Chain(nn.Dense(4, 4), nn.Recur(inner))(x).shape == (2, 4)
    wrapped = nn.FeedbackChain(nn.Dense(4, 4), nn.SkipConnection(nn.Recur(inner), operator.add))
    assert wrapped.splitnames() == [] and wrapped({}, x)[1].shape == (2, 4)


def test_a_recurrent_cell_as_a_layer_of_a_feedback_chain_is_refused_at_construction():
    cell = nn.LSTMCell(4, 4)
    with pytest.raises(TypeError, match=r"^FeedbackChain: layers\[1\] LSTMCell\(4, 4\) is a recurrent cell, called as "
                                        r"`state, y = cell\(state, x\)`, but the FeedbackChain calls it as "
                                        r"`y = layer\(x\)`: wrap it in nn\.Recur.*\(nn\.Recur\(cell\) or "
                                        r"nn\.LSTM\(4, 4\)\)$"):
        nn.FeedbackChain(nn.Dense(3, 4), cell, nn.Splitter("a"))
    with pytest.raises(TypeError, match=r"^FeedbackTree: layers\[0\]\.layers\[1\] ConvLSTMCell\(1, 2, 3\) is a "
                                        r"recurrent cell.*\(nn\.Recur\(cell\)\)$"):
        nn.FeedbackTree(nn.Chain(nn.Lambda(ident), nn.ConvLSTMCell(1, 2, 3)), nn.Splitter("a"))
    with pytest.raises(TypeError, match=r"layers\[0\] RNNCell\(3, 3, relu\) .*nn\.RNN\(3, 3, relu\)"):
        nn.FeedbackChain(nn.RNNCell(3, 3, mf.relu))
    class LastStep(nn.LSTMCell):                  # a subclass called as y = layer(x) is a layer like any other
        def forward(self, x):
            return super().forward(self.initial_state(x), x)[1]

    # what the message advises works
    x = mf.randn(2, 3)
    for layer in (nn.Recur(cell), nn.LSTM(4, 4), LastStep(4, 4)):
        net = nn.FeedbackChain(nn.Dense(3, 4), layer, nn.Splitter("a"))
        assert net(net.initial_state(x), x)[1].shape == (2, 4)


def test_markers_inside_a_nested_recur_belong_to_it():
    mf.manual_seed(0)
    inner = nn.FeedbackChain(nn.Merger("a", nn.Dense(4, 4), operator.add), nn.Dense(4, 4), nn.Splitter("a"))
    net = nn.FeedbackChain(nn.Merger("s", nn.Dense(4, 4), operator.add), nn.Recur(inner), nn.Splitter("s"))
    assert net.splitnames() == ["s"]
    x = mf.randn(2, 4)
    state, y = net(net.initial_state(x), x)
    assert list(state) == ["s"] and y.shape == (2, 4)


def test_initial_state_takes_the_dtype_of_the_value_each_splitter_records():
    net = nn.FeedbackChain(nn.Merger("s", nn.Dense(3, 3), operator.add), nn.Dense(3, 3), nn.Splitter("s"))
    assert net.initial_state(mf.tensor(np.ones((2, 3), np.int64)))["s"].dtype == np.float32
    assert net.initial_state(mf.randn(2, 3, dtype="float64"))["s"].dtype == np.float64


def test_validate_survives_a_module_that_refers_back_to_its_parent():
    class Block(nn.Module):
        def __init__(self):
            self.dense, self.owner = nn.Dense(4, 4), None

        def forward(self, x):
            return self.dense(x)

    block = Block()
    chain = nn.Chain(block)
    block.owner = chain                     # a cycle: chain -> block -> chain
    net = nn.FeedbackChain(chain, nn.Splitter("h"), nn.Merger("h", nn.Dense(4, 4), operator.add))
    assert net.splitnames() == ["h"]


def test_a_state_for_an_unbatched_stream_must_have_its_shape():
    net = nn.FeedbackChain(nn.Merger("h", nn.Lambda(lambda s: s), operator.add), nn.Dense(5, 5), nn.Splitter("h"))
    for bad in (mf.ones(1), mf.tensor(1.0)):   # a 1-d stream has no batch axis to broadcast over
        with pytest.raises(ValueError, match=r'state\["h"\] has shape'):
            net({"h": bad}, mf.randn(5))
    state, _ = net({"h": mf.ones(5)}, mf.randn(5))
    assert state["h"].shape == (5,)


# ---------------------------------------------------------------- found by mutation testing (session 13)
def test_markers_used_by_a_custom_cell_inside_a_recur_are_not_the_chains():
    """Kills F10: validate() must not look inside a Recur, whose cell may use a Merger itself (Merger.merge)."""
    class MergeCell(nn.Module):
        def __init__(self):
            self.merger = nn.Merger("h", nn.Dense(4, 4), operator.add)

        def forward(self, state, x):
            y = self.merger.merge(x, state)
            return {"h": y}, y

    mf.manual_seed(0)
    net = nn.FeedbackChain(nn.Merger("s", nn.Dense(4, 4), operator.add),
                           nn.Recur(MergeCell(), {"h": mf.zeros(4)}), nn.Splitter("s"))
    x = mf.randn(2, 4)
    state, y = net(net.initial_state(x), x)
    assert list(state) == ["s"] and y.shape == (2, 4)
