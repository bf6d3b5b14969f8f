"""Random-shape gradchecks for the ops whose gradients were checked only at hand-picked shapes.

The project's rule is that every op's backward is checked against central finite differences in
float64 on random shapes.  tests/test_functional.py does that for the elementwise ops and the
reductions; the ops below were checked there (and in tests/test_conv.py and
tests/test_ops_recurrent.py) only at a few fixed shapes, which miss the cases a backward most often
gets wrong: broadcast batch axes, 1-D operands, negative steps, repeated integer indices, degenerate
(size-1 or empty) axes, padding on one side only, non-square windows.  Here hypothesis draws the shapes
and the op's parameters, and :func:`minifb.testing.gradcheck` is the oracle: no expected value is
written down, every gradient is compared with finite differences of the op's own forward pass (a few
tests also compare the forward result, or its shape, with NumPy's on the same arrays).

Covered: ``where``; ``matmul``/``@`` (1-D, 2-D, batched with broadcast batch axes, either operand
constant); ``linear`` (with and without bias, any leading axes, a weight shared by two calls);
``reshape``, ``transpose`` (random permutations), ``flatten``; ``getitem`` with basic indices, strided
slices (negative steps), integer arrays with repeats and boolean masks; ``concat``, ``stack``, ``pad``;
``cross_entropy`` (2-D to 4-D logits, every reduction), ``mse_loss``,
``binary_cross_entropy_with_logits``; ``bias_act`` and ``merge_act`` (every activation, any channel
axis); ``lstm_pointwise`` and ``gru_pointwise`` (broadcast leading axes); ``max_pool2d`` and
``avg_pool2d`` (random kernel, stride and padding within PyTorch's rules, distinct values so that no
max-pool window has a tie); ``clip`` with tensor bounds (which are constants: only ``x`` is checked); ``Cast`` (a
float64 scalar cast down by type promotion).  ``ToDevice``'s gradcheck is in tests/test_device_parity.py (a
file that benchmarks/gpu_check.sh runs).

Shapes are small and examples few so the file runs in seconds.
"""

import itertools
import math
import operator
from unittest import mock

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minifb as mf
from minifb import functional as F
from minifb.ops.movement import Cast
from minifb.testing import gradcheck

from strategies import (distinct64, floats64, matmul_shapes, mutually_broadcastable, seeds, shapes,
                        shapes_broadcasting_to)


def t64(array, requires_grad=True):
    return mf.tensor(np.asarray(array, dtype=np.float64), dtype="float64", requires_grad=requires_grad)


def away_from_zero(values, gap=1e-2):
    """``values`` with entries near 0 pushed to ``±gap`` (finite differences across a kink are wrong)."""
    values = np.array(values, dtype=np.float64)
    near = np.abs(values) < gap
    values[near] = np.where(values[near] < 0, -gap, gap)
    return values


def required(n):
    """Which of ``n`` inputs require a gradient: any non-empty subset (the others are constants)."""
    return st.sampled_from([r for r in itertools.product([True, False], repeat=n) if any(r)])


def axis_of(draw, ndim):
    """An axis of an ``ndim``-d tensor, written non-negative or negative."""
    return draw(st.integers(-ndim, ndim - 1))


SETTINGS = settings(max_examples=25, deadline=None)


# ---- where -------------------------------------------------------------------------------------
@SETTINGS
@given(three=mutually_broadcastable(3), seed=seeds, scalar=st.sampled_from([None, "a", "b"]),
       as_tensor=st.booleans())
def test_where(three, seed, scalar, as_tensor):
    cond_shape, sa, sb = three
    cond = np.random.default_rng(seed).random(cond_shape) < 0.5
    cond = mf.tensor(cond) if as_tensor else cond
    a, b = t64(floats64(sa, seed + 1)), t64(floats64(sb, seed + 2))
    if scalar == "a":
        gradcheck(lambda y: F.where(cond, 0.75, y), b)
    elif scalar == "b":
        gradcheck(lambda x: F.where(cond, x, -1.25), a)
    else:
        gradcheck(lambda x, y: F.where(cond, x, y), a, b)


# ---- matmul and linear ---------------------------------------------------------------------------
@SETTINGS
@given(pair=matmul_shapes(), seed=seeds, op=st.sampled_from([F.matmul, operator.matmul]), needs=required(2))
def test_matmul(pair, seed, op, needs):
    a = t64(floats64(pair[0], seed), requires_grad=needs[0])
    b = t64(floats64(pair[1], seed + 1), requires_grad=needs[1])
    out = op(a, b)
    assert out.shape == np.matmul(a.numpy(), b.numpy()).shape
    gradcheck(op, a, b)
    assert (a.grad is None) != needs[0] and (b.grad is None) != needs[1]


@st.composite
def batched_matmul_shapes(draw):
    """``a @ b`` with batch axes that need summing back, for a full batch shape B: one operand 2-D and the
    other with batch B (the gradient of the 2-D one sums over B), or, for each axis of B, which operands
    have it (one or both, never both for every axis), the other having a 1 there or, for leading axes,
    no axis at all."""
    full = draw(shapes(min_dims=1, max_dims=2, min_side=2, max_side=3))
    form = draw(st.sampled_from(["a 2-D", "b 2-D", "mixed"]))
    if form != "mixed":
        batches = ((), full) if form == "a 2-D" else (full, ())
    else:
        owners = draw(st.sampled_from([o for o in itertools.product("ab+", repeat=len(full)) if set(o) != {"+"}]))

        def batch(me):
            sides = [n if who in (me, "+") else 1 for n, who in zip(full, owners)]
            ones = next((i for i, n in enumerate(sides) if n != 1), len(sides))   # leading 1s may be dropped
            return tuple(sides[draw(st.integers(0, ones)):])

        batches = (batch("a"), batch("b"))
    m, k, n = (draw(st.integers(1, 3)) for _ in range(3))
    return batches[0] + (m, k), batches[1] + (k, n)


@SETTINGS
@given(pair=batched_matmul_shapes(), seed=seeds, needs=required(2))
def test_matmul_broadcast_batch_axes(pair, seed, needs):
    a = t64(floats64(pair[0], seed), requires_grad=needs[0])
    b = t64(floats64(pair[1], seed + 1), requires_grad=needs[1])
    gradcheck(operator.matmul, a, b)


@SETTINGS
@given(lead=shapes(min_dims=0, max_dims=3, max_side=3), n_in=st.integers(1, 4), n_out=st.integers(1, 4),
       bias=st.booleans(), seed=seeds, data=st.data())
def test_linear(lead, n_in, n_out, bias, seed, data):
    needs = data.draw(required(3 if bias else 2))
    x = t64(floats64(lead + (n_in,), seed), requires_grad=needs[0])
    w = t64(floats64((n_out, n_in), seed + 1), requires_grad=needs[1])
    if bias:
        b = t64(floats64((n_out,), seed + 2), requires_grad=needs[2])
        gradcheck(F.linear, x, w, b)
    else:
        gradcheck(lambda u, v: F.linear(u, v), x, w)


@SETTINGS
@given(lead=shapes(min_dims=0, max_dims=2, max_side=3), n=st.integers(1, 4), bias=st.booleans(), seed=seeds)
def test_linear_weight_shared_by_two_calls(lead, n, bias, seed):
    """A weight used twice (as by a recurrent cell over two steps) sums its two deferred products."""
    x = t64(floats64(lead + (n,), seed))
    w = t64(floats64((n, n), seed + 1) / n)
    b = t64(floats64((n,), seed + 2)) if bias else None
    gradcheck(lambda u, v, *c: F.linear(F.tanh(F.linear(u, v, *c)), v, *c), x, w, *([b] if bias else []))


# ---- reshape, transpose, flatten ---------------------------------------------------------------------
def prime_factors(n):
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


@st.composite
def reshape_cases(draw):
    """A shape and a target shape of the same size: its prime factors shuffled, regrouped, with 1s and
    perhaps one -1."""
    shape = draw(shapes(min_dims=0, max_dims=4, max_side=4))
    factors = draw(st.permutations([p for n in shape for p in prime_factors(n)]))
    cuts = sorted(draw(st.lists(st.integers(0, len(factors)), max_size=4)))
    bounds = [0] + cuts + [len(factors)]
    target = [math.prod(factors[i:j]) for i, j in zip(bounds, bounds[1:])]
    if draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    return shape, tuple(target)


@SETTINGS
@given(case=reshape_cases(), seed=seeds, method=st.booleans())
def test_reshape(case, seed, method):
    shape, target = case
    x = t64(floats64(shape, seed))
    fn = (lambda t: t.reshape(*target)) if method else (lambda t: F.reshape(t, target))
    assert fn(x).shape == np.reshape(x.numpy(), target).shape
    gradcheck(fn, x)


@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=4, max_side=4), seed=seeds, data=st.data())
def test_transpose(shape, seed, data):
    ndim = len(shape)
    perm = data.draw(st.permutations(range(ndim)))
    axes = tuple(a - ndim if data.draw(st.booleans()) else a for a in perm)   # some written negative
    x = t64(floats64(shape, seed))
    assert F.transpose(x, *axes).shape == np.transpose(x.numpy(), perm).shape
    gradcheck(lambda t: F.transpose(t, *axes), x)
    gradcheck(lambda t: t.transpose(axes), x)
    gradcheck(F.transpose, x)   # no axes: reversed


@SETTINGS
@given(shape=shapes(min_dims=0, max_dims=4, max_side=3), seed=seeds, data=st.data())
def test_flatten(shape, seed, data):
    ndim = len(shape)
    if ndim == 0:
        start = end = data.draw(st.sampled_from([0, -1]))
    else:
        lo = data.draw(st.integers(0, ndim - 1))
        hi = data.draw(st.integers(lo, ndim - 1))
        start = lo - ndim if data.draw(st.booleans()) else lo
        end = hi - ndim if data.draw(st.booleans()) else hi
    x = t64(floats64(shape, seed))
    gradcheck(lambda t: F.flatten(t, start, end), x)
    gradcheck(lambda t: t.flatten(), x)


# ---- getitem -------------------------------------------------------------------------------------
@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=3, max_side=5), seed=seeds, data=st.data())
def test_getitem_basic_indices(shape, seed, data):
    """Ints, slices, ``None`` and ``...`` in any combination (hypothesis's own basic-index strategy)."""
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    x = t64(floats64(shape, seed))
    assume(x.numpy()[index].size > 0)                  # an empty result would check nothing
    np.testing.assert_array_equal(x[index].numpy(), x.numpy()[index])
    gradcheck(lambda t: t[index], x)


@st.composite
def strided_slice(draw, n):
    """A slice of an axis of size ``n`` with a step of either sign (often negative) and bounds that may be
    negative, out of range or omitted."""
    step = draw(st.sampled_from([-3, -2, -1, -1, 1, 2, 3, None]))
    bound = st.one_of(st.none(), st.integers(-n - 2, n + 1))
    return slice(draw(bound), draw(bound), step)


@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=3, max_side=6), seed=seeds, data=st.data())
def test_getitem_strided_slices(shape, seed, data):
    index = tuple(data.draw(strided_slice(n)) for n in shape)
    x = t64(floats64(shape, seed))
    assume(x.numpy()[index].size > 0)                  # an empty result would check nothing
    np.testing.assert_array_equal(x[index].numpy(), x.numpy()[index])
    gradcheck(lambda t: t[index], x)
    gradcheck(lambda t: F.getitem(t, index[0]), x)   # a bare slice, not in a tuple


def repeated_picks(draw, n, size):
    """``size`` indices into an axis of size ``n`` (either sign), at least one picked twice when size > 1."""
    picks = draw(st.lists(st.integers(-n, n - 1), min_size=size - 1, max_size=size - 1))
    return np.array(picks + picks[:1] if picks else [draw(st.integers(-n, n - 1))])


@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=3, max_side=4), seed=seeds, data=st.data(),
       form=st.sampled_from(["one axis", "leading axes", "mixed"]))
def test_getitem_integer_arrays_with_repeats(shape, seed, data, form):
    """Picking an element several times sums its gradients.  Forms: an array along one axis (the axes
    before it sliced), as a list or a 1-D or 2-D array; one array per leading axis, broadcast together
    (hypothesis's integer_array_indices); arrays on some axes and strided slices on the others, so that
    separated arrays move their axis to the front as NumPy's rules say."""
    x = t64(floats64(shape, seed))
    ndim = len(shape)
    if form == "one axis":
        axis = data.draw(st.integers(0, ndim - 1))
        picks = repeated_picks(data.draw, shape[axis], data.draw(st.integers(1, 6)))
        if data.draw(st.booleans()) and picks.size % 2 == 0:
            picks = picks.reshape(2, -1)                        # a 2-D index array
        index = (slice(None),) * axis + (picks if data.draw(st.booleans()) else picks.tolist(),)
    elif form == "leading axes":
        index = data.draw(hnp.integer_array_indices(shape, result_shape=shapes(min_dims=1, max_dims=2,
                                                                               max_side=6)))
    else:
        arrays = data.draw(required(ndim))                          # which axes take an array
        size = data.draw(st.integers(1, 5))
        index = tuple(repeated_picks(data.draw, n, size) if is_array else data.draw(strided_slice(n))
                      for n, is_array in zip(shape, arrays))
    np.testing.assert_array_equal(x[index].numpy(), x.numpy()[index])
    gradcheck(lambda t: t[index], x)


@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=3, max_side=4), seed=seeds, data=st.data())
def test_getitem_boolean_masks(shape, seed, data):
    """A mask over some consecutive axes (as an array or a boolean Tensor), the axes before it sliced."""
    ndim = len(shape)
    first = data.draw(st.integers(0, ndim - 1))
    last = data.draw(st.integers(first + 1, ndim))
    mask = np.random.default_rng(seed + 1).random(shape[first:last]) < 0.6
    assume(mask.any() and 0 not in shape)              # an empty result would check nothing
    mask = mf.tensor(mask) if data.draw(st.booleans()) else mask
    index = (slice(None),) * first + (mask,) if first else mask
    x = t64(floats64(shape, seed))
    gradcheck(lambda t: t[index], x)


# ---- concat, stack, pad ------------------------------------------------------------------------------
@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=3, max_side=3), seed=seeds, data=st.data())
def test_concat(shape, seed, data):
    axis = axis_of(data.draw, len(shape))
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=4).filter(any))  # not all empty
    parts = []
    for i, n in enumerate(sizes):
        s = list(shape)
        s[axis] = n
        parts.append(t64(floats64(tuple(s), seed + i)))
    gradcheck(lambda *xs: F.concat(list(xs), axis=axis), *parts)


@SETTINGS
@given(shape=shapes(min_dims=0, max_dims=3, max_side=3), count=st.integers(1, 4), seed=seeds, data=st.data())
def test_stack(shape, count, seed, data):
    axis = axis_of(data.draw, len(shape) + 1)
    parts = [t64(floats64(shape, seed + i)) for i in range(count)]
    gradcheck(lambda *xs: F.stack(xs, axis=axis), *parts)


@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=3, max_side=3), seed=seeds, data=st.data(),
       value=st.floats(-2, 2))
def test_pad(shape, seed, data, value):
    widths = tuple((data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in shape)
    x = t64(floats64(shape, seed))
    gradcheck(lambda t: F.pad(t, widths, value=value), x)


# ---- losses ------------------------------------------------------------------------------------------
@SETTINGS
@given(n=st.integers(1, 4), c=st.integers(1, 4), spatial=shapes(min_dims=0, max_dims=2, max_side=3),
       reduction=st.sampled_from(["mean", "sum", "none"]), as_tensor=st.booleans(), seed=seeds)
def test_cross_entropy(n, c, spatial, reduction, as_tensor, seed):
    """Logits (N, C), (N, C, d1) or (N, C, d1, d2)."""
    logits = t64(floats64((n, c) + spatial, seed))
    labels = np.random.default_rng(seed + 1).integers(0, c, (n,) + spatial)
    labels = mf.tensor(labels) if as_tensor else labels
    gradcheck(lambda z: F.cross_entropy(z, labels, reduction=reduction), logits)


@SETTINGS
@given(shape=shapes(min_dims=0, max_dims=3, max_side=4), reduction=st.sampled_from(["mean", "sum", "none"]),
       needs=required(2), seed=seeds)
def test_mse_loss(shape, reduction, needs, seed):
    pred = t64(floats64(shape, seed), requires_grad=needs[0])
    target = t64(floats64(shape, seed + 1), requires_grad=needs[1])
    gradcheck(lambda p, q: F.mse_loss(p, q, reduction=reduction), pred, target)


@SETTINGS
@given(shape=shapes(min_dims=0, max_dims=3, max_side=4), reduction=st.sampled_from(["mean", "sum", "none"]),
       needs=required(2), seed=seeds)
def test_binary_cross_entropy_with_logits(shape, reduction, needs, seed):
    """Soft targets in [0, 1); the loss is differentiable in both arguments."""
    logits = t64(2 * floats64(shape, seed), requires_grad=needs[0])
    targets = t64(np.random.default_rng(seed + 1).random(shape), requires_grad=needs[1])
    gradcheck(lambda z, y: F.binary_cross_entropy_with_logits(z, y, reduction=reduction), logits, targets)


# ---- fused epilogues and recurrent pointwise ops -------------------------------------------------------
ACTS = ["identity", "relu", "sigmoid", "tanh"]


def _channel_case(data, shape, seed, n_streams):
    """An axis, ``n_streams`` inputs and a bias along that axis; the last input is the one the activation
    sees, and ``it + bias`` is kept away from relu's kink at 0."""
    ndim = len(shape)
    axis = axis_of(data.draw, ndim)
    bias = floats64((shape[axis],), seed)
    view = [1] * ndim
    view[axis] = shape[axis]
    streams = [floats64(shape, seed + 1 + i) for i in range(n_streams)]
    b = bias.reshape(view)
    streams[-1] = away_from_zero(streams[-1] + b) - b
    return axis, [t64(s) for s in streams], t64(bias)


@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=4, max_side=3), act=st.sampled_from(ACTS), seed=seeds, data=st.data())
def test_bias_act(shape, act, seed, data):
    axis, (x,), b = _channel_case(data, shape, seed, 1)
    gradcheck(lambda u, c: F.bias_act(u, c, act, axis=axis), x, b)


@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=4, max_side=3), act=st.sampled_from(ACTS), seed=seeds, data=st.data())
def test_merge_act(shape, act, seed, data):
    axis, (x, fb), b = _channel_case(data, shape, seed, 2)
    gradcheck(lambda u, v, c: F.merge_act(u, v, c, act, axis=axis), x, fb, b)


@SETTINGS
@given(leads=mutually_broadcastable(3, max_dims=2, max_side=3), h=st.integers(1, 3),
       kind=st.sampled_from(["lstm", "gru"]), needs=required(3), seed=seeds)
def test_recurrent_pointwise(leads, h, kind, needs, seed):
    """Gates (..., G·H) and state (..., H) whose leading axes broadcast together."""
    fn, gates = {"lstm": (F.lstm_pointwise, 4), "gru": (F.gru_pointwise, 3)}[kind]
    widths = (gates * h, gates * h, h)
    ts = [t64(floats64(lead + (w,), seed + i), requires_grad=r)
          for i, (lead, w, r) in enumerate(zip(leads, widths, needs))]
    gradcheck(fn, *ts)


# ---- pooling -------------------------------------------------------------------------------------------
@st.composite
def pool_cases(draw):
    """An input shape and pooling arguments within PyTorch's rules: padding at most half the kernel, the
    kernel no larger than the padded input; kernel, stride and padding given as ints or pairs."""
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    hw = tuple(draw(st.integers(max(1, k - 2 * p), 7)) for k, p in zip(kernel, padding))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))

    def maybe_int(pair):
        return pair[0] if pair is not None and pair[0] == pair[1] and draw(st.booleans()) else pair

    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) + hw
    return shape, dict(kernel_size=maybe_int(kernel), stride=maybe_int(stride), padding=maybe_int(padding))


@SETTINGS
@given(case=pool_cases(), seed=seeds)
def test_max_pool2d(case, seed):
    shape, params = case
    x = t64(distinct64(shape, seed))      # no ties: every window has one maximum
    gradcheck(lambda t: F.max_pool2d(t, **params), x)


@SETTINGS
@given(case=pool_cases(), seed=seeds)
def test_avg_pool2d(case, seed):
    shape, params = case
    x = t64(floats64(shape, seed))
    gradcheck(lambda t: F.avg_pool2d(t, **params), x)


# ---- clip with tensor bounds -------------------------------------------------------------------------------
@SETTINGS
@given(shape=shapes(min_dims=0, max_dims=3, max_side=4), seed=seeds, data=st.data(),
       kinds=st.tuples(*[st.sampled_from(["tensor", "number", None])] * 2))
def test_clip_with_tensor_bounds(shape, seed, data, kinds):
    """Bounds broadcasting to ``x``'s shape; they are constants (the docstring), so only ``x`` is checked.
    ``x`` is kept away from both bounds so that no finite difference crosses one."""
    rng = np.random.default_rng(seed + 1)

    def bound(kind, offset):
        if kind is None:
            return None, None
        if kind == "number":
            return offset, offset
        values = rng.standard_normal(data.draw(shapes_broadcasting_to(shape))) * 0.3 + offset
        return mf.tensor(values, dtype="float64"), values

    low, low_values = bound(kinds[0], -0.5)
    high, high_values = bound(kinds[1], 0.5)
    x = floats64(shape, seed)
    for values in (low_values, high_values):
        if values is not None:
            x = away_from_zero(x - values) + values
    gradcheck(lambda t: F.clip(t, low, high), t64(x))
    gradcheck(lambda t: t.clip(low, high), t64(x))


# ---- Cast (type promotion) -------------------------------------------------------------------------------
@SETTINGS
@given(shape=shapes(min_dims=1, max_dims=3, max_side=4), seed=seeds, value=st.floats(-2, 2))
def test_cast_by_type_promotion(shape, seed, value):
    """A float64 0-d leaf times a float32 tensor is cast down to float32 (a ``Cast`` node), and its gradient
    goes back through ``Cast.backward``.  The product is linear in ``s``, so a large step is exact even
    though the forward pass runs in float32."""
    x32 = mf.tensor(floats64(shape, seed).astype(np.float32), dtype="float32")
    s = t64(value)
    real = Cast.backward
    calls = []

    def recording(self, grad):
        calls.append(grad.dtype)
        return real(self, grad)

    with mock.patch.object(Cast, "backward", recording):
        assert (x32 * s).dtype == np.float32
        gradcheck(lambda s: x32 * s, s, eps=1e-2, atol=1e-4, rtol=1e-3)
    assert calls, "Cast.backward did not run: the float64 scalar was not cast by type promotion"
    assert s.grad.dtype == np.float64

