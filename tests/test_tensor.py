"""The tape: backward order, accumulation, no_grad, detach, freeing, deep graphs."""

import gc
import operator
import re
import weakref

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minifb as mf
import minifb.functional as F
from minifb import backend
from minifb.tensor import unbroadcast

from strategies import broadcastable_pair, floats64, seeds, t64


def test_gradient_accumulates_until_cleared():
    x = mf.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [2 + 3, 4 + 3])
    x.zero_grad()
    assert x.grad is None


def test_shared_subexpression_gets_summed_gradient():
    x = mf.tensor([3.0], requires_grad=True)
    y = x * x
    (y + y * x).sum().backward()   # d/dx (x² + x³) = 2x + 3x²
    np.testing.assert_allclose(x.grad, [2 * 3 + 3 * 9])


def test_leaf_grad_is_not_aliased_with_other_buffers():
    x = mf.tensor([1.0, 1.0], requires_grad=True)
    y = mf.tensor([1.0, 1.0], requires_grad=True)
    (x + y).sum().backward()
    x.grad += 10
    np.testing.assert_allclose(y.grad, [1, 1])


@pytest.mark.parametrize("build", [
    lambda a, b: F.concat([a, b]).reshape(2, 6),          # slices of one gradient buffer
    lambda a, b: F.stack([a, b]).transpose(1, 0),         # views of one buffer, transposed
    lambda a, b: (a.reshape(3, 2) * 1).transpose(1, 0) + b.reshape(3, 2).transpose(1, 0).sum(0),  # broadcast
    lambda a, b: a.reshape(2, 3) + b.reshape(2, 3),       # views of the user's seed, one per leaf
    lambda a, b: (a + b) * 2,                             # one fresh array sent to both leaves
    lambda a, b: a.reshape(3, 2).transpose(1, 0) * 2 + b.reshape(3, 2).transpose(1, 0),  # a fresh view each
])
def test_leaf_grads_never_share_memory_with_each_other_or_the_seed(build):
    """However a gradient reaches a leaf (a view of a private buffer, a slice of a shared one, a broadcast,
    a view of the user's seed), the leaf's ``.grad`` is a writeable array of its own."""
    a = mf.tensor(np.arange(6.0), requires_grad=True)
    b = mf.tensor(np.arange(6.0) + 6, requires_grad=True)
    out = build(a, b)
    seed = np.ones(out.shape, dtype=out.dtype)
    out.backward(seed)
    grads = [a.grad, b.grad]
    expected = [g.copy() for g in grads]
    for g in grads:
        assert g.flags.writeable and g.shape == (6,)
        assert not np.shares_memory(g, seed)
    assert not np.shares_memory(grads[0], grads[1])
    a.grad += 100  # writing one changes nothing else
    np.testing.assert_array_equal(b.grad, expected[1])
    np.testing.assert_array_equal(seed, np.ones_like(seed))


class _ViewGradient(mf.Function):
    """Identity forward; backward hands out a view built by ``make_view`` from a private array."""

    make_view = None

    def forward(self, x):
        return x.copy()

    def backward(self, grad):
        return (type(self).make_view(grad.copy()),)


@pytest.mark.parametrize("make_view", [
    lambda g: np.broadcast_to(g, g.shape),                                        # read-only, all of g
    lambda g: np.ndarray(g.shape, g.dtype, buffer=g, strides=(0,)),              # every entry the same cell
], ids=["read-only", "zero-stride"])
def test_a_view_gradient_that_is_read_only_or_self_overlapping_is_copied(make_view):
    """A view that covers all of its private memory is still copied when ``.grad`` could not be added
    into correctly: read-only, or with entries that alias one another."""
    op = type("Op", (_ViewGradient,), {"make_view": staticmethod(make_view)})
    x = mf.tensor(np.arange(4.0), requires_grad=True)
    op.apply(x).backward(np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32))
    assert x.grad.flags.writeable
    np.testing.assert_array_equal(x.grad, make_view(np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)))
    op.apply(x).backward(np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32))
    twice = 2 * make_view(np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32))
    np.testing.assert_array_equal(x.grad, twice)
    x.grad[0] += 10  # its entries are separate numbers
    np.testing.assert_array_equal(x.grad[1:], twice[1:])


_VIEW_STEPS = {  # differentiable rearrangements whose gradients come back as views or copies
    "flat": lambda t: t.reshape(24),
    "matrix": lambda t: t.reshape(4, 6),
    "transpose": lambda t: t.reshape(4, 6).transpose(1, 0),
    "reverse": lambda t: t.reshape(24)[::-1],
    "scale": lambda t: t.reshape(24) * 2,
    "same": lambda t: t,
}
_COMBINE = {  # "add-as-is" with no steps sends one fresh array to both leaves
    "add": lambda p, q: p.reshape(24) + q.reshape(24),
    "mul": lambda p, q: p.reshape(24) * q.reshape(24),
    "concat": lambda p, q: F.concat([p.reshape(24), q.reshape(24)]),
    "stack": lambda p, q: F.stack([p.reshape(24), q.reshape(24)], axis=1),
    "first-twice": lambda p, q: p.reshape(24) + p.reshape(24) * 3 + q.reshape(24) * 0,
    "add-as-is": lambda p, q: (p + q) * 2 if p.shape == q.shape else (p.reshape(24) + q.reshape(24)) * 2,
}


@settings(max_examples=60, deadline=None)
@example(steps_a=[], steps_b=[], combine="add-as-is", seeded=False, seed=0)   # one array to both leaves
@example(steps_a=["scale"], steps_b=["transpose"], combine="stack", seeded=True, seed=1)
@given(steps_a=st.lists(st.sampled_from(sorted(_VIEW_STEPS)), max_size=3),
       steps_b=st.lists(st.sampled_from(sorted(_VIEW_STEPS)), max_size=3),
       combine=st.sampled_from(sorted(_COMBINE)), seeded=st.booleans(), seed=seeds)
def test_leaf_grads_are_private_and_right_whatever_views_carry_them(steps_a, steps_b, combine, seeded, seed):
    """Property: for random chains of views, copies and combinations, every leaf's ``.grad`` is writeable,
    shares memory with no other gradient and not with the seed, and has the values (once, then twice
    after a second pass) that the always-copy rule gives."""
    import sys

    tensor_module = sys.modules["minifb.tensor"]
    rng = np.random.default_rng(seed)
    data = [rng.standard_normal((2, 3, 4)) for _ in range(2)]

    def run(passes):
        a, b = (mf.tensor(d, requires_grad=True) for d in data)
        for _ in range(passes):
            p, q = a, b
            for step in steps_a:
                p = _VIEW_STEPS[step](p)
            for step in steps_b:
                q = _VIEW_STEPS[step](q)
            out = _COMBINE[combine](p, q)
            grad_seed = np.arange(out.size, dtype=np.float32).reshape(out.shape) if seeded else None
            (out.backward(grad_seed) if seeded else out.sum().backward())
        return a.grad, b.grad, grad_seed

    ga, gb, grad_seed = run(1)
    for g in (ga, gb):
        assert g is not None and g.shape == (2, 3, 4) and g.flags.writeable
        if grad_seed is not None:
            assert not np.shares_memory(g, grad_seed)
    assert not np.shares_memory(ga, gb)
    ga2, gb2, _ = run(2)
    saved = tensor_module._PRIVATE_REFS
    try:
        tensor_module._PRIVATE_REFS = None  # the always-copy rule as the reference
        ra, rb, _ = run(1)
    finally:
        tensor_module._PRIVATE_REFS = saved
    np.testing.assert_array_equal(ga, ra)
    np.testing.assert_array_equal(gb, rb)
    np.testing.assert_allclose(ga2, 2 * ra, rtol=1e-6)
    np.testing.assert_allclose(gb2, 2 * rb, rtol=1e-6)


def test_without_reference_counts_every_first_gradient_is_copied(monkeypatch):
    """Where the interpreter has no reference counts (``_PRIVATE_REFS`` is None), nothing is taken over."""
    import sys

    tensor_module = sys.modules["minifb.tensor"]
    x = mf.tensor(np.arange(6.0), requires_grad=True)
    seed = np.ones((2, 3), dtype=np.float32)
    (x.reshape(2, 3) * 2).backward(seed)  # the product's fresh gradient, reshaped back: a private view
    assert x.grad.base is not None        # normally taken over as it is
    x.zero_grad()
    monkeypatch.setattr(tensor_module, "_PRIVATE_REFS", None)
    (x.reshape(2, 3) * 2).backward(seed)
    assert x.grad.base is None            # now copied
    np.testing.assert_array_equal(x.grad, np.full(6, 2.0))


def test_a_private_view_gradient_is_taken_without_a_copy_and_accumulates():
    """A convolution's input gradient is an NCHW view of channels-last memory that nothing else holds:
    it becomes ``.grad`` as it is (no transposing copy), and later passes add into it correctly.
    (On the array path: the fused kernels write their own layout.)"""
    from minifb import kernels

    rng = np.random.default_rng(0)
    x = mf.tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True)
    w = mf.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    with kernels.use("off"):
        F.conv2d(x, w, padding=1).sum().backward()
        first = x.grad
        assert first.base is not None and not first.flags.c_contiguous  # the view itself, not a copy
        once = first.copy()
        F.conv2d(x, w, padding=1).sum().backward()
    assert x.grad is first
    np.testing.assert_allclose(x.grad, 2 * once)


def test_no_grad_records_nothing():
    x = mf.tensor([1.0], requires_grad=True)
    with mf.no_grad():
        y = x * 2
    assert not y.requires_grad and y.is_leaf
    assert mf.is_grad_enabled()

    @mf.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad


def test_nested_no_grad_restores_the_outer_setting():
    x = mf.tensor([1.0], requires_grad=True)
    with mf.no_grad():
        with mf.no_grad():
            assert not (x * 2).requires_grad
        # the inner block closed, but the outer one is still open: still nothing recorded
        assert not mf.is_grad_enabled()
        y = x * 2
        assert not y.requires_grad and y.is_leaf
    assert mf.is_grad_enabled()
    z = x * 2
    assert z.requires_grad and not z.is_leaf         # recording resumed after both closed
    z.sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0])

    # three levels: each exit restores the setting its own enter found
    with mf.no_grad():
        with mf.no_grad():
            with mf.no_grad():
                pass
            assert not mf.is_grad_enabled() and not (x * 3).requires_grad
        assert not mf.is_grad_enabled() and not (x * 3).requires_grad
    assert mf.is_grad_enabled() and (x * 3).requires_grad


@pytest.mark.parametrize("decorator", [mf.no_grad, mf.no_grad()], ids=["bare", "called"])
def test_no_grad_decorator_inside_a_no_grad_block_keeps_it_off(decorator):
    x = mf.tensor([1.0], requires_grad=True)

    @decorator
    def double(t):
        return t * 2

    with mf.no_grad():
        assert not double(x).requires_grad
        # the decorated call returned inside the block: recording must stay off until the block ends
        assert not mf.is_grad_enabled()
        assert not (x * 3).requires_grad
    assert mf.is_grad_enabled() and (x * 3).requires_grad
    assert not double(x).requires_grad and mf.is_grad_enabled()

    @decorator
    def nested(t):
        with mf.no_grad():
            inner = t * 2
        # the inner block closed inside the decorated call: still off
        assert not mf.is_grad_enabled()
        return inner + t * 3

    assert not nested(x).requires_grad and mf.is_grad_enabled()


def test_detach_cuts_the_tape_but_shares_values():
    x = mf.tensor([2.0], requires_grad=True)
    y = (x * x).detach()
    assert not y.requires_grad and y.numpy()[0] == 4
    z = x * y
    z.sum().backward()
    np.testing.assert_allclose(x.grad, [4.0])


def test_backward_errors():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mf.tensor([1.0]).sum().backward()
    x = mf.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="one-element tensor"):
        (x * 2).backward()
    with pytest.raises(ValueError, match=r"gradient shape \(3,\) does not match tensor shape \(2,\)"):
        (x * 2).backward(np.ones(3, dtype=np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        mf.tensor([1, 2], requires_grad=True)


def test_graph_is_freed_after_backward_unless_retained():
    x = mf.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, [4, 8])
    with pytest.raises(RuntimeError, match="already freed"):
        y.backward()


def test_saved_arrays_are_released_during_backward():
    x = mf.tensor(np.ones(1000, dtype=np.float32), requires_grad=True)
    h = mf.log(x * 2 + 1)          # Log saves its input, an intermediate only the tape holds
    saved = weakref.ref(h._ctx.a)
    h.sum().backward()
    gc.collect()
    assert saved() is None


def test_ten_thousand_step_graph_has_no_recursion_limit():
    x = mf.tensor([1.0], requires_grad=True)
    s = x
    for _ in range(10_000):
        s = mf.tanh(s) * 1.0001
    s.sum().backward()
    assert np.isfinite(x.grad).all() and x.grad[0] != 0


def test_gradient_only_flows_where_needed():
    x = mf.tensor([1.0], requires_grad=True)
    c = mf.tensor([5.0])
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(x.grad, [5.0])


@settings(max_examples=40, deadline=None)
@given(pair=broadcastable_pair(), seed=seeds)
def test_unbroadcast_inverts_broadcasting(pair, seed):
    shape, other = pair
    out_shape = np.broadcast_shapes(shape, other)
    g = floats64(out_shape, seed)
    reduced = unbroadcast(g, other)
    assert reduced.shape == tuple(other)
    # the explicit adjoint of broadcasting: sum the added leading axes, then the stretched size-1 axes
    lead = len(out_shape) - len(other)
    expected = g.sum(axis=tuple(range(lead)))
    for i, n in enumerate(other):
        if n == 1:
            expected = expected.sum(axis=i, keepdims=True)
    np.testing.assert_allclose(reduced, expected.reshape(other), rtol=1e-12, atol=1e-12)
    # adjoint identity: <broadcast(v), g> = <v, unbroadcast(g)>
    v = floats64(other, seed + 1)
    assert np.isclose((np.broadcast_to(v, out_shape) * g).sum(), (v * reduced).sum(), rtol=1e-10, atol=1e-10)


def test_dtype_is_preserved_float32():
    x = mf.randn(3, 4, requires_grad=True)
    y = (x * 2.5 + 1) ** 2 / 3
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_properties_repr_and_device():
    x = mf.tensor([[1.0, 2.0]], requires_grad=True)
    assert x.shape == (1, 2) and x.ndim == 2 and x.size == 2 and x.device == "cpu"
    assert "requires_grad=True" in repr(x)
    assert "grad_fn=Mul" in repr(x * 2)
    assert x.to("cpu") is x
    with pytest.raises(ValueError, match="unknown device"):
        x.to("tpu")
    with pytest.raises(ValueError, match="ambiguous"):
        bool(x)


@pytest.mark.skipif(not mf.cuda_available(), reason="needs CuPy and an NVIDIA GPU")
def test_to_cuda_and_back_is_differentiable():
    x = mf.tensor([1.0, 2.0], requires_grad=True)
    y = (x.to("cuda") * 3).to("cpu").sum()
    y.backward()
    np.testing.assert_allclose(x.grad, [3, 3])


# ---------------------------------------------------------------- deferred weight gradients (ProductSum)
def test_weight_shared_over_timesteps_gets_the_summed_gradient():
    """Linear's weight gradient is a ProductSum per use; backward stacks them into one product."""
    from minifb import functional as F
    from minifb.testing import gradcheck

    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((3, 5)) for _ in range(4)]
    w = t64(rng.standard_normal((6, 5)), requires_grad=True)
    b = t64(rng.standard_normal(6), requires_grad=True)
    loss = None
    for x in xs:
        y = F.linear(t64(x), w, b)
        term = (y * y).sum()
        loss = term if loss is None else loss + term
    loss.backward()
    expected = sum(2 * (x @ w.data.T + b.data)[:, :, None] * x[:, None, :] for x in xs).sum(axis=0)
    np.testing.assert_allclose(w.grad, expected, rtol=1e-12, atol=1e-12)
    assert type(w.grad) is np.ndarray and w.grad.shape == (6, 5)

    def f(w, b):
        return sum(((F.linear(t64(x), w, b)) ** 2).sum() for x in xs)
    assert gradcheck(f, t64(w.data, requires_grad=True), t64(b.data, requires_grad=True))


def test_deferred_and_plain_gradients_of_one_weight_add_up():
    """A weight used by linear (deferred) and by an elementwise op (a plain array) in either order."""
    from minifb import functional as F

    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 3))
    for plain_first in (True, False):
        w = t64(rng.standard_normal((2, 3)), requires_grad=True)
        plain = (w * w).sum()
        lin = F.linear(t64(x), w).sum()
        (plain + lin if plain_first else lin + plain).backward()
        expected = 2 * w.data + np.ones((4, 2)).T @ x
        np.testing.assert_allclose(w.grad, expected, rtol=1e-12, atol=1e-12)


def test_product_sum_combines_and_evaluates():
    from minifb.tensor import ProductSum

    rng = np.random.default_rng(9)
    pairs = [(rng.standard_normal((3, k)), rng.standard_normal((k, 2))) for k in (1, 4, 2)]
    extra = rng.standard_normal((3, 2))
    total = ProductSum(*pairs[0])
    total = ProductSum.combine(total, ProductSum(*pairs[1]))
    total = ProductSum.combine(extra, total)
    total = ProductSum.combine(total, ProductSum(*pairs[2]))
    expected = sum(a @ b for a, b in pairs) + extra
    np.testing.assert_allclose(total.evaluate(), expected, rtol=1e-12, atol=1e-12)
    assert total.shape == (3, 2) and total.dtype == np.float64


def test_product_sum_evaluates_early_to_bound_its_memory(monkeypatch):
    """Once the factors outgrow MAX_FACTOR_RATIO x the result, the terms are folded into ``extra``."""
    from minifb.tensor import ProductSum

    monkeypatch.setattr(ProductSum, "MAX_FACTOR_RATIO", 1)
    monkeypatch.setattr(ProductSum, "MIN_INNER", 0)
    rng = np.random.default_rng(10)
    pairs = [(rng.standard_normal((4, 3)), rng.standard_normal((3, 5))) for _ in range(6)]
    total = ProductSum(*pairs[0])
    for a, b in pairs[1:]:
        total = ProductSum.combine(total, ProductSum(a, b))
        assert total.held <= 2 * (4 * 3 + 3 * 5) + 20   # never more than ~ the limit plus one term
    assert total.extra is not None
    np.testing.assert_allclose(total.evaluate(), sum(a @ b for a, b in pairs), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- deferred slice gradients (SliceSum)
def test_slices_of_one_tensor_get_one_summed_gradient_with_every_other_use():
    """xs[t] per timestep (as unroll feeds a sequence), overlapping slices, the whole tensor, and a Linear
    weight (a ProductSum) in one graph: the gradient is the sum of them all, in either order of use."""
    from minifb import functional as F
    from minifb.tensor import SliceSum

    rng = np.random.default_rng(12)
    x = rng.standard_normal((5, 3))
    for order in range(3):
        w = t64(rng.standard_normal((4, 3)), requires_grad=True)
        terms = [(w[t] * w[t]).sum() * (t + 1) for t in range(4)]         # rows 0..3, weighted
        terms.append((w[1:3, ::2] * 3.0).sum())                             # a strided slice overlapping them
        terms.append(F.linear(t64(x), w).sum())                             # deferred as a ProductSum
        terms.append((w * w * w).sum())                                     # a plain gradient
        terms = terms[order:] + terms[:order]
        loss = terms[0]
        for term in terms[1:]:
            loss = loss + term
        loss.backward()
        want = 2 * w.data * np.array([1.0, 2.0, 3.0, 4.0])[:, None] + 3 * w.data ** 2 + np.ones((5, 4)).T @ x
        want[1:3, ::2] += 3.0
        np.testing.assert_allclose(w.grad, want, rtol=1e-12, atol=1e-12)
    ys = mf.tensor(np.ones((3, 2)), requires_grad=True)
    assert type(ys[1]._ctx.backward(np.ones(2))[0]) is SliceSum      # basic indices are deferred


def test_slice_sum_combines_and_evaluates_once_it_holds_the_whole_array():
    from minifb.tensor import SliceSum

    rng = np.random.default_rng(13)
    pieces = [((t,), rng.standard_normal(6)) for t in (0, 1, 1, 3)] + [((slice(None), 2), rng.standard_normal(4))]
    extra = rng.standard_normal((4, 6))
    total = SliceSum((4, 6), *pieces[0])
    total = SliceSum.combine(total, SliceSum((4, 6), *pieces[1]))
    total = SliceSum.combine(extra, total)
    assert total.extra is extra and total.held == 12
    for index, g in pieces[2:]:
        total = SliceSum.combine(total, SliceSum((4, 6), index, g))
        assert total.held <= 4 * 6
    want = extra.copy()
    for index, g in pieces:
        want[index] += g
    np.testing.assert_allclose(total.evaluate(), want, rtol=1e-12, atol=1e-12)
    assert total.evaluate() is not total.evaluate() and total.shape == (4, 6)


def test_product_sum_stacks_at_least_min_inner_rows_before_evaluating(monkeypatch):
    """A small result is not evaluated at twice its size: the terms are kept until the stacked product's
    inner dimension passes MIN_INNER, and then folded into ``extra``."""
    from minifb.tensor import ProductSum

    monkeypatch.setattr(ProductSum, "MIN_INNER", 12)
    rng = np.random.default_rng(11)
    pairs = [(rng.standard_normal((4, 3)), rng.standard_normal((3, 5))) for _ in range(6)]
    total = ProductSum(*pairs[0])
    for k, (a, b) in enumerate(pairs[1:], start=2):
        total = ProductSum.combine(total, ProductSum(a, b))
        # 2 * 4 * 5 = 40 elements allow one term of 27; 12 * (4 + 5) = 108 allow four (inner dimension 12)
        assert (total.extra is None) == (k <= 4)
        assert total.held <= 108
    np.testing.assert_allclose(total.evaluate(), sum(a @ b for a, b in pairs), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- audit fixes
def test_backward_seed_takes_the_tensors_dtype_and_checks_its_shape():
    x = mf.ones(2, requires_grad=True)
    x.backward(mf.tensor([1.0, 2.0], dtype="float64"))
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [1.0, 2.0])
    y = mf.ones(2, requires_grad=True)
    (y * 3).backward(np.array([1, 2]))              # an integer array seed
    assert y.grad.dtype == np.float32
    np.testing.assert_array_equal(y.grad, [3.0, 6.0])
    z = mf.ones(2, requires_grad=True)
    (z * 1).backward([0.5, 0.5])
    np.testing.assert_array_equal(z.grad, [0.5, 0.5])
    with pytest.raises(ValueError, match=r"gradient shape \(3,\) does not match tensor shape \(2,\)"):
        (z * 2).backward(mf.ones(3, dtype="float64"))
    s = mf.tensor(2.0, dtype="float64", requires_grad=True)
    (s * s).backward(1)
    assert s.grad.dtype == np.float64 and s.grad == 4.0


def test_a_complex_seed_for_a_real_tensor_is_refused():
    # casting it would drop the imaginary part with only a NumPy warning
    x = mf.ones(2, requires_grad=True)
    with pytest.raises(TypeError, match=r"backward\(\): a complex gradient .*complex128.* float32"):
        (x * 2).backward(np.array([1 + 1j, 2j]))
    assert x.grad is None


def test_no_grad_as_a_bare_decorator():
    x = mf.tensor([1.0], requires_grad=True)

    @mf.no_grad
    def f(t):
        """Doubles."""
        return t * 2

    assert not f(x).requires_grad and mf.is_grad_enabled()
    assert f.__name__ == "f" and f.__doc__ == "Doubles."


@pytest.mark.parametrize("decorator", [mf.no_grad, mf.no_grad()], ids=["bare", "called"])
def test_no_grad_decorates_generator_functions(decorator):
    x = mf.tensor([1.0], requires_grad=True)

    @decorator
    def steps(t, n):
        for i in range(n):
            received = yield t * (i + 1)
            if received is not None:
                yield received * t
        return "done"

    gen = steps(x, 3)
    first = next(gen)
    assert not first.requires_grad
    assert mf.is_grad_enabled() and (x * 2).requires_grad   # recording is back on between the yields
    assert not gen.send(mf.tensor([4.0])).requires_grad
    assert all(not y.requires_grad for y in gen)
    assert mf.is_grad_enabled()

    def delegate():
        return (yield from steps(x, 1))
    outer = delegate()
    next(outer)
    with pytest.raises(StopIteration) as stop:
        next(outer)
    assert stop.value.value == "done"
    gen = steps(x, 5)
    next(gen)
    gen.close()
    assert mf.is_grad_enabled()


def test_numpy_conversion_and_python_scalars():
    t = mf.tensor([[1.0, 2.0], [3.0, 4.0]])
    a = np.asarray(t)
    assert type(a) is np.ndarray and a.dtype == np.float32 and a.shape == (2, 2)
    np.testing.assert_array_equal(a, t.numpy())
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert np.array(t, copy=True) is not t.data
    assert np.asarray([mf.tensor(1.0), mf.tensor(2.0)]).dtype == np.float32
    assert isinstance(np.ones(2) + mf.ones(2), mf.Tensor)   # NumPy still defers to Tensor's operators
    assert float(mf.tensor(2.5)) == 2.5 and float(mf.tensor([[2.5]])) == 2.5
    assert int(mf.tensor(3.9)) == 3 and int(mf.tensor([7])) == 7
    loss = (mf.ones(3, requires_grad=True) * 2).sum()
    assert f"{float(loss):.1f}" == "6.0"
    for convert in (float, int):
        with pytest.raises(ValueError, match=r"only one-element tensors.*shape \(2,\)"):
            convert(mf.ones(2))


def test_numpy_conversion_of_a_cuda_tensor_is_refused(monkeypatch):
    from minifb import backend

    t = mf.ones(2)
    monkeypatch.setattr(backend, "device_of", lambda array: "cuda")
    with pytest.raises(TypeError, match=r"cannot convert a cuda tensor to a NumPy array.*\.numpy\(\)"):
        np.asarray(t)


def test_reflected_operators_have_docstrings():
    for name, symbol in [("__radd__", "+"), ("__rsub__", "-"), ("__rmul__", "*"), ("__rtruediv__", "/"),
                         ("__rpow__", "**"), ("__rmatmul__", "@")]:
        method = getattr(mf.Tensor, name)
        assert method.__name__ == name
        assert method.__doc__ and f"other {symbol} self" in method.__doc__
    assert mf.Tensor.flatten.__doc__
    np.testing.assert_allclose((2 ** mf.tensor([1.0, 3.0])).numpy(), [2.0, 8.0])
    np.testing.assert_allclose((1 - mf.tensor([1.0, 3.0])).numpy(), [0.0, -2.0])


def test_zero_dim_gradients_with_many_contributions_all_count():
    # NumPy arithmetic on 0-d arrays gives immutable scalars; none of the contributions may be lost
    x = mf.tensor(1.0, requires_grad=True, dtype="float64")
    (x + x + x + x).backward()
    assert float(x.grad) == 4.0 and isinstance(x.grad, np.ndarray) and x.grad.shape == ()
    a = mf.tensor(np.ones(3), requires_grad=True, dtype="float64")
    m = a.sum()
    (m * 1.0 + m * 2.0 + m * 3.0).backward()
    np.testing.assert_array_equal(a.grad, [6.0, 6.0, 6.0])
    s = mf.tensor(0.5, requires_grad=True, dtype="float64")
    h = mf.tensor(np.ones(3), dtype="float64")
    for _ in range(4):
        h = h * s + 1.0
    h.sum().backward()
    # d/ds of sum(h4), h_{k+1} = h_k s + 1, h_0 = 1: 3 * (1 + 2s + 3s^2 + 4s^3) at s = 0.5
    assert float(s.grad) == pytest.approx(3 * (1 + 2 * 0.5 + 3 * 0.25 + 4 * 0.125))


@pytest.mark.parametrize("a_shape, b_shape", [((2, 3, 0), (0, 4)), ((2, 3, 4), (4, 0)), ((3, 0), (0, 2))])
def test_matmul_and_linear_gradients_with_an_empty_inner_or_outer_axis(a_shape, b_shape):
    a, b = mf.ones(*a_shape, requires_grad=True), mf.ones(*b_shape, requires_grad=True)
    (a @ b).sum().backward()
    assert a.grad.shape == a_shape and b.grad.shape == b_shape and not a.grad.any() and not b.grad.any()
    x, w = mf.ones(*a_shape, requires_grad=True), mf.ones(b_shape[1], a_shape[-1], requires_grad=True)
    F.linear(x, w).sum().backward()
    assert x.grad.shape == a_shape and w.grad.shape == w.shape


def test_requires_grad_cannot_be_switched_off_on_a_computed_tensor():
    x = mf.ones(2, requires_grad=True)
    h = x * 2
    with pytest.raises(RuntimeError, match="only leaf tensors"):
        h.requires_grad_(False)
    assert x.requires_grad_(False) is x and not x.requires_grad


# ---------------------------------------------------------------- formatting, construction, iteration
_NUMBER_SPECS = [".4f", ".2e", ".3g", "10.2f", "<8.1f", "+.1%", ",.2f", "g"]


@settings(max_examples=60, deadline=None)
@given(value=st.floats(-1e6, 1e6, allow_nan=False), spec=st.sampled_from(_NUMBER_SPECS),
       shape=st.sampled_from([(), (1,), (1, 1)]))
def test_a_one_element_tensor_formats_like_its_number(value, spec, shape):
    """Property: ``format(t, spec) == format(t.item(), spec)`` for a one-element tensor of any rank."""
    t = mf.tensor(np.full(shape, value), dtype="float64")
    assert format(t, spec) == format(value, spec)


def test_format_of_a_loss_an_empty_spec_and_a_multi_element_tensor():
    loss = (mf.ones(3, requires_grad=True) * 0.5).sum()
    assert f"loss {loss:.4f}" == "loss 1.5000"
    assert f"{mf.tensor(7):03d}" == "007" and f"{mf.tensor([True]):}" == str(mf.tensor([True]))
    t = mf.tensor([1.0, 2.0])
    assert f"{t}" == str(t) and format(loss) == str(loss)
    with pytest.raises(TypeError, match=r"format spec '.4f'.*shape \(2,\)"):
        f"{t:.4f}"


def test_Tensor_converts_array_like_data_as_tensor_does():
    t = mf.Tensor([1.0, 2.0])
    assert isinstance(t.data, np.ndarray) and t.dtype == np.float32 and t.shape == (2,)
    np.testing.assert_array_equal((t * 2).numpy(), [2.0, 4.0])
    assert "tensor([1., 2.])" == repr(t)
    assert mf.Tensor([1, 2]).dtype == mf.tensor([1, 2]).dtype and mf.Tensor(True).dtype == np.bool_
    assert mf.Tensor(3.0).shape == () and mf.Tensor(3.0).dtype == np.float32
    assert mf.Tensor(np.float64(2.5)).data.shape == ()   # a NumPy scalar becomes a 0-d array, dtype kept
    assert mf.Tensor(np.float64(2.5)).dtype == np.float64
    assert mf.Tensor([mf.tensor(1.0), mf.tensor(2.0)]).shape == (2,)
    w = mf.Tensor([[1.0, 2.0]], requires_grad=True)
    (w * w).sum().backward()
    np.testing.assert_array_equal(w.grad, [[2.0, 4.0]])
    a = np.zeros(2)
    assert mf.Tensor(a).data is a and mf.Tensor(a).dtype == np.float64   # arrays are wrapped as they are
    x = mf.tensor([1.0])
    assert mf.Tensor(x).data is x.data
    with pytest.raises(TypeError, match="floating-point"):
        mf.Tensor([1, 2], requires_grad=True)
    for bad in ("abc", None, {"a": 1}):
        with pytest.raises(TypeError, match=r"Tensor\(\): cannot make a tensor from"):
            mf.Tensor(bad)


def test_Tensor_wraps_a_cupy_array_as_it_is(monkeypatch):
    """Runs without a GPU: an array whose type comes from the ``cupy`` package is kept, not converted, and
    its type joins the one isinstance check that ``Function.apply``'s outputs go through."""
    import sys

    tensor_module = sys.modules["minifb.tensor"]
    monkeypatch.setattr(tensor_module, "_ARRAY_TYPES", tensor_module._ARRAY_TYPES)
    fake = type("ndarray", (), {"__module__": "cupy", "dtype": np.dtype(np.float32), "shape": (2,)})
    array = fake()
    assert mf.Tensor(array).data is array and fake in tensor_module._ARRAY_TYPES
    assert mf.Tensor(array).data is array


def test_iterating_a_tensor_and_the_0d_errors():
    s = mf.tensor(3.0)
    with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
        iter(s)
    with pytest.raises(TypeError, match="iteration over a 0-d tensor"):
        list(s)
    with pytest.raises(TypeError, match=r"len\(\) of a 0-d tensor"):
        len(s)
    x = mf.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    rows = list(x)
    assert len(x) == 2 and len(rows) == 2 and rows[1].numpy().tolist() == [3.0, 4.0]
    (rows[0] * 2 + rows[1]).sum().backward()     # iteration is indexing: differentiable
    np.testing.assert_array_equal(x.grad, [[2.0, 2.0], [1.0, 1.0]])
    assert list(mf.zeros(0, 3)) == [] and len(mf.zeros(0, 3)) == 0


_BITWISE = {"&": operator.and_, "|": operator.or_, "^": operator.xor}


@settings(max_examples=40, deadline=None)
@given(pair=broadcastable_pair(), seed=seeds, dtypes=st.sampled_from(
    [("bool", "bool"), ("int64", "int64"), ("int32", "int32"), ("uint8", "uint8"), ("bool", "int64")]))
def test_bitwise_operators_match_numpy_on_bool_and_integer_tensors(pair, seed, dtypes):
    """Property: ``& | ^ ~`` on boolean and integer tensors (and with arrays, lists and Python numbers on
    either side) give NumPy's values, promoted to the dtype ``+`` gives, as tensors that need no gradient."""
    rng = np.random.default_rng(seed)
    a, b = (rng.integers(0, 8, s).astype(d) for s, d in zip(pair, dtypes))
    ta, tb = mf.tensor(a), mf.tensor(b)
    for symbol, op in _BITWISE.items():
        for x, y in [(ta, tb), (a, tb), (ta, b.tolist()), (b.tolist(), ta), (ta, True), (1, tb)]:
            got = op(x, y)
            assert isinstance(got, mf.Tensor) and not got.requires_grad, symbol
            assert got.dtype == (x + y).dtype, symbol
            np.testing.assert_array_equal(got.numpy(), op(np.asarray(x), np.asarray(y)))
    assert (~ta).dtype == a.dtype
    np.testing.assert_array_equal((~ta).numpy(), ~a)


def test_bitwise_operators_combine_masks_and_refuse_floats():
    x = mf.tensor([1.0, 2.0, 3.0], requires_grad=True)
    assert ((x > 1) & (x < 3)).numpy().tolist() == [False, True, False]
    assert ((x < 2) | (x > 2)).numpy().tolist() == [True, False, True]
    assert ((x > 1) ^ (x > 2)).numpy().tolist() == [False, True, False]
    assert (~(x > 1)).numpy().tolist() == [True, False, False]
    i32, s = mf.tensor([6, 3], dtype="int32"), mf.tensor(5)    # a 0-d int64 operand: promoted like ``+``
    assert (i32 & s).dtype == (i32 + s).dtype == np.int32 and (i32 & s).numpy().tolist() == [4, 1]
    assert ((x > 1) & 1).dtype == np.int64 and (~i32).numpy().tolist() == [-7, -4]
    with pytest.raises(TypeError, match=r"~: only boolean and integer tensors.*float32"):
        ~x
    with pytest.raises(TypeError, match=r"&: only boolean and integer tensors.*float32 and bool"):
        x & (x > 1)
    with pytest.raises(TypeError, match=r"\|: only boolean and integer tensors.*bool and float"):
        (x > 1) | 1.5
    with pytest.raises(TypeError, match=r"\^: only boolean and integer tensors"):
        np.ones(3) ^ (x > 1)
    with pytest.raises(TypeError, match=r"unsupported operand type\(s\) for &: 'Tensor' and 'str'"):
        (x > 1) & "yes"
    for name in ("__and__", "__rand__", "__or__", "__ror__", "__xor__", "__rxor__", "__invert__"):
        assert getattr(mf.Tensor, name).__doc__


def test_comparisons_take_lists_and_arrays_on_the_tensor_device(device):
    """CuPy's operators refuse lists and NumPy arrays, so comparisons move them as arithmetic does."""
    t = mf.tensor([0.0, 1.0, 2.0], device=device)
    for other in ([1.0, 1.0, 1.0], np.array([1.0, 1.0, 1.0]), 1.0, mf.ones(3, device=device)):
        got = t > other
        assert got.device == device and got.dtype == np.bool_
        assert got.numpy().tolist() == [False, False, True]
        assert (t == other).numpy().tolist() == [False, True, False]
    with pytest.raises(TypeError, match=r"'<' not supported between instances of 'Tensor' and 'str'"):
        t < "a"


def test_a_bad_index_names_the_tensors_shape():
    x = mf.zeros(2, 3)
    for index, numpy_says in ((5, "index 5 is out of bounds"), ((0, 0, 0), "too many indices"),
                              (np.array([True, False, True]), "boolean index did not match")):
        with pytest.raises(IndexError, match=rf"getitem: indexing a tensor of shape \(2, 3\).*{numpy_says}"):
            x[index]


def test_requires_grad_must_be_a_bool():
    for bad in ("x", 1, None):
        with pytest.raises(TypeError, match=r"Tensor: requires_grad must be True or False"):
            mf.Tensor(np.ones(2, np.float32), requires_grad=bad)
        with pytest.raises(TypeError, match=r"requires_grad_: flag must be True or False"):
            mf.ones(2).requires_grad_(bad)
    assert mf.Tensor(np.ones(2, np.float32), requires_grad=np.bool_(True)).requires_grad is True


def test_a_pickle_from_before_the_shared_version_counter_loads():
    # such a pickle sets the slot "_version" (now a property over the shared counter) before any other
    t = mf.Tensor.__new__(mf.Tensor)
    for name, value in (("_version", 2), ("data", np.ones(2, np.float32)), ("grad", None),
                        ("requires_grad", True), ("_ctx", None)):
        setattr(t, name, value)
    assert t._version == 2 and t.detach()._version == 2
    import pickle
    u = pickle.loads(pickle.dumps(t))
    assert u._version == 2 and np.array_equal(u.data, t.data)


# ---------------------------------------------------------------- session 12 audit: tensor semantics
def test_an_index_list_changed_after_indexing_does_not_move_the_gradient():
    x = mf.tensor([1.0, 2.0, 3.0], requires_grad=True)
    idx, mask = [0, 0], np.array([True, False, True])
    y, z = x[idx], x[mask]
    idx[:] = [2, 2]                  # backward reads the index again: it must be the one the forward used
    mask[:] = False
    ((y * mf.tensor([1.0, 10.0])).sum() + z.sum()).backward()
    np.testing.assert_array_equal(x.grad, [12.0, 0.0, 1.0])


def test_assigning_requires_grad_checks_what_requires_grad__checks():
    x = mf.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"^requires_grad\(False\): only leaf tensors"):
        y.requires_grad = False
    with pytest.raises(TypeError, match=r"only floating-point tensors can require gradients"):
        mf.tensor([1, 2]).requires_grad = True
    with pytest.raises(TypeError, match=r"^requires_grad: flag must be True or False, got 'yes'"):
        x.requires_grad = "yes"
    x.requires_grad = False          # a leaf may
    assert not x.requires_grad and not (x * 2).requires_grad


def test_complex_and_decimal_numbers_promote_as_in_pytorch():
    import decimal

    assert (mf.tensor([1.0], dtype="float64") + 1j).dtype == np.complex128   # the tensor's precision kept
    assert (mf.tensor([1.0]) + 1j).dtype == np.complex64
    assert (mf.tensor([1.0]) + decimal.Decimal("1.5")).dtype == np.float32     # a real number, not complex


def test_contains_index_unary_plus_and_the_repr_of_an_empty_matrix():
    t = mf.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert 2.0 in t and 5.0 not in t and mf.tensor(3.0) in t
    assert +t is t
    assert [10, 20, 30][mf.tensor(1)] == 20 and list(range(5))[:mf.tensor(2)] == [0, 1]
    with pytest.raises(TypeError, match=r"only 0-d integer tensors can be used as an index"):
        [1, 2][mf.tensor(1.0)]
    assert repr(mf.zeros(0, 3)) == "tensor([], size=(0, 3))" and repr(mf.zeros(0)) == "tensor([])"


@pytest.mark.parametrize("flag", [True, False])
def test_a_tensor_pickled_before_the_requires_grad_property_still_loads(flag):
    from minifb.tensor import Tensor

    t = Tensor.__new__(Tensor)   # what unpickling an older file does: the old slots, set one by one, in order
    for name, value in (("data", np.ones(2, np.float32)), ("grad", None), ("requires_grad", flag), ("_ctx", None),
                        ("_shared", None)):
        setattr(t, name, value)
    assert t.requires_grad is flag and t.is_leaf
    if flag:
        (t * 2).sum().backward()
        np.testing.assert_array_equal(t.grad, [2.0, 2.0])


def test_numpy_and_0d_integer_indices_are_basic_and_the_in_operator_needs_a_number():
    from minifb.tensor import SliceSum

    x = mf.tensor(np.ones((3, 2)), requires_grad=True)
    for index in (np.int64(1), np.array(1), mf.tensor(1)):
        assert type(x[index]._ctx.backward(np.ones(2))[0]) is SliceSum
    with pytest.raises(TypeError, match=r"'in' needs a number or a Tensor, got str"):
        "a" in x


def test_a_0d_index_array_changed_after_indexing_does_not_move_the_gradient():
    x = mf.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    i = np.array(2)
    y = x[i]
    i[...] = 0
    y.backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0, 0.0])


# ---------------------------------------------------------------- found by mutation testing (session 13)
def test_a_deferred_gradient_of_another_dtype_than_its_weight_is_cast():
    """Kills T07: Linear.apply on a float64 input and a float32 weight returns a float64 ProductSum for the
    float32 weight; backward must evaluate it before casting (a ProductSum has no astype)."""
    from minifb.ops.matmul import Linear

    rng = np.random.default_rng(20)
    w = mf.tensor(rng.standard_normal((2, 3)), dtype="float32", requires_grad=True)
    x = rng.standard_normal((4, 3))
    y = Linear.apply(mf.tensor(x, dtype="float64"), w)
    assert y.dtype == np.float64
    y.sum().backward()
    assert w.grad.dtype == np.float32
    np.testing.assert_allclose(w.grad, np.ones((4, 2)).T @ x, rtol=1e-6)


def test_no_grad_generator_stays_off_after_an_exception_is_thrown_in():
    """Kills T16: gen.throw() must also resume the body under no_grad, as next() and send() do."""
    x = mf.tensor([1.0], requires_grad=True)

    @mf.no_grad
    def steps():
        while True:
            try:
                yield x * 2
            except ValueError:
                yield x * 3                        # computed after the exception: still unrecorded

    gen = steps()
    assert not next(gen).requires_grad
    after = gen.throw(ValueError("skip"))
    assert not after.requires_grad and after._ctx is None
    assert mf.is_grad_enabled()
    gen.close()


def test_a_freed_op_that_gets_no_gradient_is_skipped():
    """Kills T21: a custom op may return None for an input that needs a gradient (a stop-gradient); an op of an
    already back-propagated (freed) graph that is reached only through it gets no gradient and is not run, so
    a second backward is fine as long as no gradient has to flow through the freed part."""
    class StopGradient(mf.Function):
        def forward(self, x):
            return x.copy()

        def backward(self, grad):
            return (None,)

    x = mf.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y.sum().backward()                             # frees y's op
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])
    (StopGradient.apply(y).sum() + x.sum()).backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


def test_product_sum_evaluate_returns_a_fresh_array_each_time():
    """T06 (equivalent inside backward, which evaluates a sum once): the documented contract of evaluate()."""
    from minifb.tensor import ProductSum

    rng = np.random.default_rng(21)
    total = ProductSum(rng.standard_normal((3, 2)), rng.standard_normal((2, 4)))
    total.extra, total.parts, total.held = total.evaluate(), [], 0     # as an early evaluation leaves it
    first = total.evaluate()
    first += 1.0
    assert total.evaluate() is not first
    np.testing.assert_allclose(total.evaluate(), first - 1.0)


# ---------------------------------------------------------------- found by mutation testing (session 13)
def test_an_array_or_list_left_of_at_is_refused_as_the_left_operand():
    """``x @ t`` with ``x`` no Tensor reaches ``__rmatmul__``, i.e. ``F.matmul(x, t)``: matmul takes Tensors only,
    and the message names ``x`` as argument 'a' (the left operand), with the hint to wrap it."""
    t = mf.ones(3, 2)
    for left in (np.ones((2, 3), np.float32), [[1.0, 2.0, 3.0]]):
        with pytest.raises(TypeError, match=r"matmul: argument 'a' must be a minifb Tensor"):
            left @ t


def test_every_comparison_operator_compares_as_numpy():
    t = mf.tensor([0.0, 1.0, 2.0])
    for op in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"):
        got = getattr(t, op)(1.0)
        assert got.dtype == np.bool_, op
        np.testing.assert_array_equal(got.numpy(), getattr(t.numpy(), op)(1.0), err_msg=op)
    np.testing.assert_array_equal((1.0 <= t).numpy(), [False, True, True])   # reflected: t >= 1


def test_reflected_arithmetic_puts_the_other_operand_on_the_left():
    """``2 / t`` is 2 divided by t (not t / 2), and so on for every reflected operator, with a number, a list
    or an array on the left."""
    t = mf.tensor([1.0, 2.0, 4.0])
    for left in (2.0, [2.0, 2.0, 2.0], np.full(3, 2.0, np.float32)):
        for op in (operator.add, operator.sub, operator.mul, operator.truediv, operator.pow):
            got = op(left, t)
            assert isinstance(got, mf.Tensor), (op, left)
            np.testing.assert_allclose(got.numpy(), op(np.asarray(left, np.float32), t.numpy()), rtol=1e-6,
                                       err_msg=f"{op.__name__} with {type(left).__name__} on the left")


def test_T_reverses_the_axes_as_numpy_does():
    for shape in ((2, 3), (3, 3), (2, 3, 4)):
        a = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        t = mf.tensor(a, requires_grad=True)
        np.testing.assert_array_equal(t.T.numpy(), a.T)
        (t.T * mf.tensor(a.T)).sum().backward()      # the gradient goes back through the transpose
        np.testing.assert_array_equal(t.grad, a)


# ---------------------------------------------------------------- in-place operators (audit 14)
def test_manual_sgd_with_in_place_operators_updates_the_parameters_as_out_of_place_does(device):
    # ``q -= ...`` on the loop variable must update the parameter itself, as in PyTorch
    params = [mf.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device),
              mf.tensor([[0.5, -1.0]], requires_grad=True, device=device)]
    start = [p.numpy().copy() for p in params]
    for _ in range(3):
        loss = sum((p * p).sum() for p in params)
        for p in params:
            p.grad = None
        loss.backward()
        expected = [p.numpy() - 0.1 * backend.to_numpy(p.grad) for p in params]
        with mf.no_grad():
            for q in params:
                q -= 0.1 * q.grad                 # a backend array operand: CuPy's on the GPU
        for p, want in zip(params, expected):
            np.testing.assert_allclose(p.numpy(), want, rtol=1e-6)
            assert p.requires_grad and p.is_leaf and p.dtype == np.float32 and p.device == device
    np.testing.assert_allclose(params[0].numpy(), start[0] * 0.8 ** 3, rtol=1e-6)
    stale = (params[0] * 2).sum()
    with mf.no_grad():
        params[0] += 1.0
    with pytest.raises(RuntimeError, match=r"updated in place"):
        stale.backward()


@pytest.mark.parametrize("symbol, other", [("+", 2.0), ("-", [1.0, 2.0]), ("*", np.array([2.0, 3.0])),
                                           ("/", mf.tensor([2.0, 4.0])), ("**", 2)])
def test_each_arithmetic_in_place_operator_updates_self_and_returns_it(symbol, other):
    x = mf.tensor([3.0, 5.0])
    want = eval(f"x {symbol} other").numpy()
    alias = x
    namespace = {"x": x, "other": other}
    exec(f"x {symbol}= other", namespace)
    assert namespace["x"] is x                  # the same tensor, updated: no rebinding to a new one
    np.testing.assert_array_equal(alias.numpy(), want)


def test_bitwise_in_place_operators_update_masks_and_integers():
    m = mf.tensor([True, True, False])
    mask = m
    m &= mf.tensor([True, False, False])
    m |= [False, False, True]
    m ^= True
    assert m is mask and mask.dtype == np.bool_ and mask.numpy().tolist() == [False, True, False]
    i = mf.tensor([6, 3], dtype="int32")
    row = i[None]                             # a view: it sees the update
    i &= 5
    assert i.dtype == np.int32 and row.numpy().tolist() == [[4, 1]]
    with pytest.raises(TypeError, match=r"&: only boolean and integer tensors"):
        f = mf.ones(2)
        f &= 1
    with pytest.raises(TypeError, match=r"unsupported operand type\(s\) for \|=: 'Tensor' and 'str'"):
        m |= "yes"


def test_in_place_update_of_a_view_changes_the_tensor_it_views():
    t = mf.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert np.shares_memory(t[0:1].data, t.data)       # basic indexing gives views, as in NumPy
    rows = t[0:1]
    rows += 10
    column = t[:, 1]
    column *= 0
    last = t.T[2]                                      # a view of a view: t[:, 2]
    last -= 1
    np.testing.assert_array_equal(t.numpy(), [[11.0, 0.0, 12.0], [4.0, 0.0, 5.0]])


def test_in_place_update_keeps_the_dtype_under_same_kind_casting():
    x = mf.ones(3)
    x -= mf.ones(3, dtype="float64")          # PyTorch keeps float32 too
    x += np.float64(0.5)
    x *= np.full(3, 4.0)                      # a float64 array
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x.numpy(), [2.0, 2.0, 2.0])
    i8 = mf.tensor(np.array([1], np.int8))
    i8 += 300                                 # wraps as out of place and in PyTorch
    assert i8.dtype == np.int8 and i8.numpy().tolist() == [45]
    s = mf.tensor(2.0)
    s *= 3                                    # a 0-d tensor
    assert s.shape == () and s.item() == 6.0


def test_in_place_operators_refuse_what_pytorch_refuses():
    with pytest.raises(RuntimeError, match=r"-=: a leaf tensor that requires grad \(a parameter\).*mf\.no_grad"):
        p = mf.tensor([1.0, 2.0], requires_grad=True)
        p -= 1.0
    np.testing.assert_array_equal(p.numpy(), [1.0, 2.0])
    with pytest.raises(ValueError, match=r"-=: the result's broadcast shape \(2, 3\) differs from the shape "
                                         r"\(3,\).*other operand of shape \(2, 3\)"):
        r = mf.ones(3)
        r -= mf.ones(2, 3)
    with pytest.raises(ValueError, match=r"\+=: the result's broadcast shape \(1, 3\) differs"):
        r += mf.ones(1, 3)                    # NumPy would write it, dropping the leading 1; PyTorch refuses
    np.testing.assert_array_equal(r.numpy(), [1.0, 1.0, 1.0])
    with pytest.raises(TypeError, match=r"\+=: the result's dtype float32 cannot be cast to the dtype int64"):
        i = mf.tensor([1, 2])
        i += 0.5
    with pytest.raises(TypeError, match=r"/=: the result's dtype float32 cannot be cast to the dtype int64"):
        i /= 2
    np.testing.assert_array_equal(i.numpy(), [1, 2])
    with pytest.raises(ValueError, match=r"\*=: the tensor of shape \(2, 3\) is a read-only array"):
        b = F.broadcast_to(mf.ones(3), (2, 3))
        b *= 2


def test_in_place_operators_on_the_tape_record_the_out_of_place_op():
    # ``loss += step_loss`` in a BPTT loop: the name gets a new, recorded tensor; aliases keep the old one
    w = mf.tensor([1.0, 2.0], requires_grad=True)
    loss = (w * w).sum()
    first = loss
    loss += (3 * w).sum()
    assert loss is not first and first.item() == 5.0 and loss.item() == 14.0
    loss.backward()
    np.testing.assert_array_equal(w.grad, [5.0, 7.0])       # 2w + 3
    acc = mf.zeros(2)                                        # no grad of its own, a recorded operand
    alias = acc
    acc += w * w
    acc *= 2
    assert acc.requires_grad and alias.requires_grad is False
    np.testing.assert_array_equal(alias.numpy(), [0.0, 0.0])
    w.zero_grad()
    acc.sum().backward()
    np.testing.assert_array_equal(w.grad, [4.0, 8.0])       # 4w


def test_in_place_update_makes_a_graph_recorded_before_it_refuse_backward():
    w = mf.tensor([1.0, 2.0], requires_grad=True)
    loss = (w * w).sum()
    with mf.no_grad():
        w -= 0.5                                  # a leaf
    with pytest.raises(RuntimeError, match=r"leaf tensor of shape \(2,\).*updated in place.*version 0 then, 1 now"):
        loss.backward()
    assert w.grad is None
    x = mf.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    loss = (y * y).sum()
    with mf.no_grad():
        y -= 1                                    # a computed tensor: its graph read the old values
    with pytest.raises(RuntimeError, match=r"computed tensor \(made by <Mul>\).*updated in place"):
        loss.backward()
    y = x * 2
    loss = (y * y).sum()
    d = y.detach()
    d += 1                                        # a detach() shares the values and the version
    with pytest.raises(RuntimeError, match=r"updated in place"):
        loss.backward()
    base = mf.tensor([1.0, 2.0, 3.0], requires_grad=True)
    loss = (base * 3).sum()
    with mf.no_grad():
        view = base[1:]
        view += 1                                 # a view shares its base's version
    with pytest.raises(RuntimeError, match=r"updated in place"):
        loss.backward()
    np.testing.assert_array_equal(base.numpy(), [1.0, 3.0, 4.0])
    (base * base).sum().backward()                # a graph recorded after the update is fine
    np.testing.assert_array_equal(base.grad, [2.0, 6.0, 8.0])


# ---------------------------------------------------------------- saved outputs, views, no_grad reuse (review 14)
def _x(*shape):
    return mf.tensor(np.linspace(0.2, 0.9, int(np.prod(shape))).reshape(shape), requires_grad=True)


# Ops whose backward reads their own output: (name shown in the error, build the output from a leaf x)
_KEEP_OUTPUT = [
    ("Exp", lambda x: x.exp()), ("Sqrt", lambda x: x.sqrt()), ("ReLU", lambda x: x.relu()),
    ("Sigmoid", lambda x: x.sigmoid()), ("Tanh", lambda x: x.tanh()), ("Softmax", lambda x: F.softmax(x)),
    ("LogSoftmax", lambda x: F.log_softmax(x)),
    ("BiasAct", lambda x: F.bias_act(x, mf.tensor([0.1, 0.2, 0.3]), act="tanh")),
    ("LSTMPointwise", lambda x: F.lstm_pointwise(mf.ones(2, 12), F.concat([x] * 4, axis=1), mf.ones(2, 3))),
    ("Div", lambda x: mf.tensor([1.0, 2.0, 3.0]) / x),                 # the divisor needs a gradient
    ("Pow", lambda x: mf.tensor([1.5, 2.0, 3.0]) ** x),                # the exponent needs a gradient
]


@pytest.mark.parametrize("name, build", _KEEP_OUTPUT, ids=[n for n, _ in _KEEP_OUTPUT])
def test_an_op_that_keeps_its_output_refuses_backward_after_the_output_is_updated_in_place(name, build):
    """y = exp(x); y -= 1 under no_grad; backward used the changed y (x.grad = exp(x) - 1), silently."""
    x = _x(2, 3)
    y = build(x)
    with mf.no_grad():
        y -= 1.0
    with pytest.raises(RuntimeError, match=rf"the output of <{name}> of shape {re.escape(str(y.shape))}, which "
                                           rf"its backward reads, was updated in place.*version 0 then, 1 now"):
        (y * 1.0).sum().backward()
    assert x.grad is None                          # refused before any gradient was formed
    y = build(x)
    with mf.no_grad():
        d = y.detach()                             # through a detach() or a view, the same values
        d *= 2.0
    with pytest.raises(RuntimeError, match=rf"output of <{name}>.*updated in place"):
        y.sum().backward()
    y = build(x)
    with mf.no_grad():
        v = y[:1]
        v += 1.0
    with pytest.raises(RuntimeError, match=rf"output of <{name}>.*updated in place"):
        y.sum().backward()
    y = build(x)
    y.sum().backward()                             # untouched: fine
    assert x.grad is not None


def test_the_output_of_an_lstm_step_is_checked_through_the_slices_the_cell_takes():
    x = _x(2, 12)
    hc = F.lstm_pointwise(x, mf.zeros(2, 12), mf.ones(2, 3))
    with mf.no_grad():
        c = hc[:, 3:]
        c -= 1.0                                   # writes into the saved [h' | c'] array
    h = hc[:, :3]                                  # read after the update: only the op's own check sees it
    with pytest.raises(RuntimeError, match=r"output of <LSTMPointwise> of shape \(2, 6\).*updated in place"):
        (h * h).sum().backward()


@pytest.mark.parametrize("build, grad", [
    (lambda x: x * mf.tensor([2.0, 3.0]), [2.0, 3.0]),                 # Mul keeps its inputs only
    (lambda x: x + 1.0, [1.0, 1.0]),
    (lambda x: x / 2.0, [0.5, 0.5]),                                    # Div keeps its output only for b's grad
    (lambda x: x ** 2, [1.0, 2.0]),                                     # PowScalar keeps its input
    (lambda x: x ** mf.tensor([2.0, 2.0]), [1.0, 2.0]),                 # Pow, an exponent without grad
    (lambda x: F.bias_act(x.reshape(1, 2), mf.tensor([1.0, 1.0])), [1.0, 1.0]),   # identity keeps nothing
    (lambda x: F.linear(x.reshape(1, 2), mf.tensor([[1.0, 2.0]])), [1.0, 2.0]),
    (lambda x: x.log(), [2.0, 1.0]),                                    # Log keeps its input
], ids=["mul", "add", "div-by-constant", "pow-scalar", "pow-constant-exponent", "bias-identity", "linear", "log"])
def test_an_op_that_does_not_keep_its_output_allows_an_in_place_update_of_it(build, grad):
    """As in PyTorch: the gradient does not depend on the output's values, so no stricter refusal."""
    x = mf.tensor([0.5, 1.0], requires_grad=True)
    y = build(x)
    with mf.no_grad():
        y -= 100.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, grad, rtol=1e-6)


def test_an_op_that_keeps_its_output_only_refuses_once_the_output_changes():
    x = mf.tensor([0.0, 1.0], requires_grad=True)
    y = x.exp()
    y.backward(mf.ones(2), retain_graph=True)      # y itself the root: no other op reads it
    np.testing.assert_allclose(x.grad, np.exp([0.0, 1.0]), rtol=1e-6)
    z = y * 3.0                                    # a later reader of y records y's current version
    with mf.no_grad():
        y += 1.0
    with pytest.raises(RuntimeError, match=r"output of <Exp>.*version 0 then, 1 now"):
        y.backward(mf.ones(2))
    with pytest.raises(RuntimeError, match=r"updated in place"):
        z.sum().backward()
    np.testing.assert_allclose(x.grad, np.exp([0.0, 1.0]), rtol=1e-6)


def test_a_view_taken_under_no_grad_before_the_tensor_is_recorded_shares_its_version():
    """The view's counter is its base's whatever the order: taken before y was read by a recorded op, writes
    through it changed y behind loss's back (x.grad [-392, -384])."""
    x = mf.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2                                      # computed, read by no recorded op yet
    with mf.no_grad():
        v = y[:]
    loss = (y * y).sum()
    with mf.no_grad():
        v -= 100.0
    with pytest.raises(RuntimeError, match=r"computed tensor \(made by <Mul>\).*updated in place"):
        loss.backward()
    assert x.grad is None
    y = x * 2                                      # and a view's in-place update is seen by its base
    with mf.no_grad():
        r = y.reshape(2, 1)
        r += 1.0
    assert y._version == r._version == 1


def test_one_no_grad_instance_nests_and_is_reusable():
    x = mf.tensor([1.0], requires_grad=True)
    ng = mf.no_grad()
    with ng:
        with ng:                                   # the same instance inside itself
            assert not mf.is_grad_enabled()
        assert not mf.is_grad_enabled() and not (x * 2).requires_grad
    assert mf.is_grad_enabled() and (x * 2).requires_grad
    with ng:                                       # and again afterwards
        assert not (x * 2).requires_grad
    assert mf.is_grad_enabled()
    with pytest.raises(ValueError):
        with ng:
            with ng:
                raise ValueError("inside")
    assert mf.is_grad_enabled()

    @ng                                            # the instance as a decorator, called inside itself
    def depth(n):
        with ng:
            inner = depth(n - 1) if n else 0
        assert not mf.is_grad_enabled()
        return inner + 1

    with ng:
        assert depth(3) == 4 and not mf.is_grad_enabled()
    assert depth(2) == 3 and mf.is_grad_enabled()


# ---------------------------------------------------------------- backward's arguments (audit 14)
@pytest.mark.parametrize("grad, says", [
    ([None, None, None], r"must hold numbers, got dtype object"), ("abc", r"must hold numbers, got dtype <U3"),
    ([True, False, True], r"must hold numbers, got dtype bool"), (mf.tensor([True, True, False]), r"dtype bool"),
    (np.array(["a", "b", "c"]), r"dtype <U1"), ([[1.0, 2.0], [3.0]], r"ragged list"),
])
def test_backward_refuses_a_gradient_that_is_not_numbers(grad, says):
    x = mf.tensor([1.0, 2.0, 3.0], requires_grad=True)
    with pytest.raises(TypeError, match=rf"^backward\(\): .*{says}"):
        (x * x).backward(grad)
    assert x.grad is None


def test_backward_retain_graph_must_be_a_bool():
    x = mf.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    for bad in ("no", 0, None):
        with pytest.raises(TypeError, match=r"backward\(\): retain_graph must be True or False"):
            y.backward(retain_graph=bad)
    y.backward(retain_graph=np.bool_(True))
    y.backward()
    np.testing.assert_array_equal(x.grad, [4.0, 8.0])


def test_a_freed_graph_error_names_a_recur_state0_computed_by_recorded_ops():
    from minifb import nn

    net = nn.RNNCell(3, 4)
    x = mf.randn(2, 3)
    h, _ = net(mf.zeros(2, 4), x)
    rnet = nn.Recur(net, h)
    rnet(x).sum().backward()
    rnet.reset()
    with pytest.raises(RuntimeError, match=r"already freed.*nn\.Recur's state0.*mf\.no_grad\(\).*h\.detach\(\)"):
        rnet(x).sum().backward()


def test_a_freed_graph_error_names_reset_state_for_a_recur_inside_the_model():
    from minifb import nn

    model = nn.Chain(nn.LSTM(3, 4), nn.Dense(4, 2))
    x = mf.randn(2, 3)
    model(x).sum().backward()
    with pytest.raises(RuntimeError, match=r"already freed.*an nn\.LSTM or Recur inside the model still holding "
                                           r"the last batch's state: nn\.reset_state\(model\)$"):
        model(x).sum().backward()       # the next batch, without nn.reset_state(model)
    nn.reset_state(model)
    model(x).sum().backward()


# ---------------------------------------------------------------- operator messages (audit 14)
@pytest.mark.parametrize("symbol", ["<", "<=", ">", ">=", "==", "!="])
def test_a_comparison_of_shapes_that_do_not_broadcast_names_the_operator_and_shapes(symbol):
    a = mf.ones(2, 3)
    for other, shape in ((mf.ones(4), r"\(4,\)"), ([1.0, 2.0], r"\(2,\)"), (np.ones(4), r"\(4,\)")):
        with pytest.raises(ValueError, match=rf"^{re.escape(symbol)}: shapes \(2, 3\), {shape} cannot be broadcast"):
            eval(f"a {symbol} other", {"a": a, "other": other})


@pytest.mark.parametrize("symbol", ["&", "|", "^"])
def test_a_bitwise_operator_on_shapes_that_do_not_broadcast_names_the_operator_and_shapes(symbol):
    a, b = mf.ones(2, 3) > 0, mf.ones(4) > 0
    with pytest.raises(ValueError, match=rf"^\{symbol}: shapes \(2, 3\), \(4,\) cannot be broadcast"):
        eval(f"a {symbol} b", {"a": a, "b": b})
    with pytest.raises(ValueError, match=rf"^\{symbol}: shapes \(4,\), \(2, 3\) cannot be broadcast"):
        eval(f"np.ones(4, bool) {symbol} a", {"a": a, "np": np})


def test_the_hint_for_inverting_a_float_tensor_is_valid_code():
    with pytest.raises(TypeError, match=r"~: only boolean.*e\.g\. ~\(x > 0\)$"):
        ~mf.ones(2)


# ---------------------------------------------------------------- .data and .grad set by hand (audit 14b)
@pytest.mark.parametrize("value, hint", [(None, ""), (2.5, r" \(wrap it: mf\.tensor\(value\)\.data\)"),
                                         ([1, 2], r" \(wrap it: mf\.tensor\(value\)\.data\)"), ("ab", ""),
                                         (mf.ones(2), r" \(assign its \.data\)")])
def test_assigning_data_that_is_no_backend_array_is_refused(value, hint):
    # it was accepted, and repr and .dtype then raised AttributeError (a Tensor was nested inside .data)
    t = mf.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match=rf"^Tensor\.data must be a backend array \(a NumPy or CuPy ndarray\), got "
                                        rf"{type(value).__name__}{hint}$"):
        t.data = value
    assert type(t.data) is np.ndarray and repr(t) == "tensor([1., 2.])"


def test_assigning_data_takes_any_array_and_a_numpy_scalar_as_a_0d_array():
    t = mf.tensor([1.0, 2.0], requires_grad=True)
    t.data = np.arange(3.0)                 # another shape and dtype, as PyTorch allows
    assert t.shape == (3,) and t.dtype == np.float64 and t.requires_grad
    t.data = np.float32(2.5)                # what arithmetic on 0-d arrays returns (gradcheck's t.data = x + h)
    assert type(t.data) is np.ndarray and t.shape == () and t.dtype == np.float32
    p = mf.nn.Parameter(np.ones(2, np.float32))
    with pytest.raises(TypeError, match=r"^Tensor\.data must be a backend array"):
        p.data = None
    import pickle
    u = pickle.loads(pickle.dumps(mf.tensor([1.0, 2.0], requires_grad=True)))
    assert u.requires_grad and np.array_equal(u.data, [1.0, 2.0])


@pytest.mark.parametrize("grad, shown", [(np.zeros(4, np.float32), r"of shape \(4,\)"),
                                         (np.zeros((2, 3), np.float32), r"of shape \(2, 3\)"),   # was broadcast into
                                         ([0.0, 0.0, 0.0], r"\(a list\)")])
def test_backward_into_a_grad_of_another_shape_names_both_shapes(grad, shown):
    x = mf.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x.grad = grad
    with pytest.raises(ValueError, match=rf"^backward\(\): cannot add the gradient of a leaf of shape \(3,\) into "
                                         rf"its \.grad {shown} .*set it to None \(zero_grad\(\)\) first$"):
        (x * 2).sum().backward()


def test_backward_into_an_integer_grad_names_both_dtypes():
    x = mf.tensor([1.0, 2.0], requires_grad=True)
    x.grad = np.zeros(2, np.int64)
    with pytest.raises(TypeError, match=r"^backward\(\): cannot add the float32 gradient of a leaf of shape \(2,\) "
                                        r"into its \.grad of dtype int64"):
        (x * 2).sum().backward()
    x.grad = np.ones(2, np.float32)         # the right shape and dtype: accumulated
    (x * 2).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


def test_in_place_matmul_is_refused_as_in_pytorch():
    a = mf.ones(2, 2)
    alias = a
    with pytest.raises(TypeError, match=r"@=: in-place matmul is not supported.*x = x @ y"):
        a @= mf.ones(2, 2)
    assert a is alias and a.numpy().tolist() == [[1.0, 1.0], [1.0, 1.0]]
