"""Tests for minifb.optim: update rules written out by hand, PyTorch as an oracle, clipping."""

import math

import numpy as np
import pytest

from minifb import backend, optim
from minifb.tensor import Tensor

W0 = np.array([[0.5, -1.0, 2.0], [0.0, 0.25, -0.75]])
GRADS = [  # the gradients fed at steps 1, 2, 3
    np.array([[0.1, -0.2, 0.3], [1.0, -0.5, 0.0]]),
    np.array([[-0.4, 0.2, 0.05], [0.3, 0.3, -1.2]]),
    np.array([[0.7, 0.0, -0.1], [-0.2, 0.9, 0.4]]),
]


def run(opt_cls, steps=3, **kw):
    """Apply ``opt_cls`` for ``steps`` steps with the GRADS above to a float64 copy of W0."""
    p = Tensor(W0.copy(), requires_grad=True)
    opt = opt_cls([p], **kw)
    for g in GRADS[:steps]:
        p.grad = g.copy()
        opt.step()
    return p.data


# ---- SGD ------------------------------------------------------------------
def test_sgd_plain():
    w = W0.copy()
    for g in GRADS:
        w = w - 0.1 * g
    np.testing.assert_allclose(run(optim.SGD, lr=0.1), w, rtol=1e-12)


def test_sgd_momentum_dampening_weight_decay():
    lr, mu, damp, wd = 0.05, 0.9, 0.3, 0.01
    w, buf = W0.copy(), None
    for g in GRADS:
        g = g + wd * w
        buf = g.copy() if buf is None else mu * buf + (1 - damp) * g   # first step: no dampening
        w = w - lr * buf
    np.testing.assert_allclose(run(optim.SGD, lr=lr, momentum=mu, dampening=damp, weight_decay=wd), w, rtol=1e-12)


def test_sgd_nesterov():
    lr, mu = 0.1, 0.8
    w, buf = W0.copy(), None
    for g in GRADS:
        buf = g.copy() if buf is None else mu * buf + g
        w = w - lr * (g + mu * buf)
    np.testing.assert_allclose(run(optim.SGD, lr=lr, momentum=mu, nesterov=True), w, rtol=1e-12)


# ---- Adam / AdamW ---------------------------------------------------------
def adam_reference(lr, b1, b2, eps, wd, decoupled):
    """PyTorch's arrangement of the Adam step, written out in float64."""
    w, m, v = W0.copy(), np.zeros_like(W0), np.zeros_like(W0)
    for t, g in enumerate(GRADS, start=1):
        if decoupled:
            w = w * (1 - lr * wd)
        else:
            g = g + wd * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - (lr / (1 - b1 ** t)) * m / (np.sqrt(v) / math.sqrt(1 - b2 ** t) + eps)
    return w


def test_adam_matches_formula():
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-3
    expected = adam_reference(lr, b1, b2, eps, 0.0, False)
    np.testing.assert_allclose(run(optim.Adam, lr=lr, betas=(b1, b2), eps=eps), expected, rtol=1e-12)


def test_adam_textbook_form():
    """Kingma & Ba's bias-corrected form agrees with the implementation."""
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    w, m, v = W0.copy(), np.zeros_like(W0), np.zeros_like(W0)
    for t, g in enumerate(GRADS, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    np.testing.assert_allclose(run(optim.Adam, lr=lr), w, rtol=1e-6)


def test_adam_l2_weight_decay():
    lr, wd = 0.02, 0.1
    expected = adam_reference(lr, 0.9, 0.999, 1e-8, wd, False)
    np.testing.assert_allclose(run(optim.Adam, lr=lr, weight_decay=wd), expected, rtol=1e-12)


def test_adamw_decoupled_weight_decay():
    lr, wd = 0.02, 0.1
    expected = adam_reference(lr, 0.9, 0.999, 1e-8, wd, True)
    np.testing.assert_allclose(run(optim.AdamW, lr=lr, weight_decay=wd), expected, rtol=1e-12)
    # AdamW's default weight decay is 0.01
    assert optim.AdamW([Tensor(W0.copy(), requires_grad=True)]).weight_decay == 0.01


# ---- common behaviour -----------------------------------------------------
@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: optim.Adam(ps), lambda ps: optim.AdamW(ps)])
def test_params_without_grad_are_skipped_and_zero_grad_clears(make):
    a = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    b = Tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    opt = make([a, b])
    a.grad = np.full(3, 0.5, dtype=np.float32)
    data_a = a.data
    opt.step()
    assert a.data is data_a                       # updated in place
    assert a.data.dtype == np.float32             # float32 stays float32
    assert not np.allclose(a.data, 1.0)
    np.testing.assert_array_equal(b.data, np.ones(2))  # no grad: untouched
    assert opt.state[1] == {}
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_argument_validation():
    p = [Tensor(np.zeros(2), requires_grad=True)]
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(p, lr=-0.1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(p, lr=0.1, nesterov=True)
    # dampening and nesterov are keyword-only (orders differ)
    with pytest.raises(TypeError, match=r"takes from 3 to 5 positional arguments but 6 were given"):
        optim.SGD(p, 0.1, 0.9, 1e-4, 0.1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(TypeError, match=r"^SGD: nesterov must be True or False, got 'no'"):
        optim.SGD(p, lr=0.1, momentum=0.9, nesterov="no")
    with pytest.raises(TypeError, match=r"^clip_grad_norm: error_if_nonfinite must be True or False, got 'no'"):
        optim.clip_grad_norm(p, 1.0, error_if_nonfinite="no")
    with pytest.raises(ValueError, match=r"^SGD: lr must be a finite number >= 0, got inf"):
        optim.SGD(p, lr=float("inf"))
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(p, betas=(-0.1, 0.9))
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(p, betas=0.9)
    with pytest.raises(ValueError, match="eps"):
        optim.Adam(p, eps=-1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        optim.AdamW(p, weight_decay=-1.0)
    with pytest.raises(TypeError, match="lr"):
        optim.Adam(p, lr="fast")
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])
    with pytest.raises(TypeError, match="Tensor"):
        optim.Adam([np.zeros(2)])
    with pytest.raises(TypeError, match="list"):
        optim.Adam(p[0])
    with pytest.raises(ValueError, match="more than once"):
        optim.Adam(p + p)
    opt = optim.SGD(p, lr=0.1)
    p[0].grad = np.zeros(3)
    with pytest.raises(ValueError, match="shape"):
        opt.step()


def test_state_dict_round_trip_continues_identically():
    p1 = Tensor(W0.copy(), requires_grad=True)
    opt1 = optim.Adam([p1], lr=0.05)
    p1.grad = GRADS[0].copy()
    opt1.step()
    saved_w, saved = p1.data.copy(), opt1.state_dict()

    p2 = Tensor(saved_w.copy(), requires_grad=True)
    opt2 = optim.Adam([p2], lr=0.5)
    opt2.load_state_dict(saved)
    assert opt2.lr == 0.05 and opt2.state[0]["step"] == 1
    for g in GRADS[1:]:
        p1.grad, p2.grad = g.copy(), g.copy()
        opt1.step()
        opt2.step()
    np.testing.assert_allclose(p2.data, p1.data, rtol=1e-12)

    with pytest.raises(ValueError, match="SGD"):
        optim.SGD([p2], lr=0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match="shape"):
        optim.Adam([Tensor(np.zeros(4), requires_grad=True)]).load_state_dict(saved)


@pytest.mark.skipif(not backend.cuda_available(), reason="needs CuPy and a GPU")
@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)), ("Adam", {}),
                                     ("AdamW", dict(weight_decay=0.1))])
def test_gpu_matches_cpu_and_follows_a_moved_parameter(name, kw):
    cpu = Tensor(W0.astype(np.float32), requires_grad=True)
    gpu = Tensor(backend.to_device(W0.astype(np.float32), "cuda"), requires_grad=True)
    opt_cpu, opt_gpu = getattr(optim, name)([cpu], **kw), getattr(optim, name)([gpu], **kw)
    for g in GRADS:
        cpu.grad = g.astype(np.float32)
        gpu.grad = backend.to_device(g.astype(np.float32), "cuda")
        opt_cpu.step()
        opt_gpu.step()
        np.testing.assert_allclose(gpu.numpy(), cpu.numpy(), rtol=1e-5, atol=1e-6)
    gpu.data, gpu.grad = backend.to_numpy(gpu.data), GRADS[0].astype(np.float32)  # moved back to the CPU
    opt_gpu.step()
    assert gpu.device == "cpu"


@pytest.mark.skipif(not backend.cuda_available(), reason="needs CuPy and a GPU")
@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", {})])
def test_a_model_moved_to_the_gpu_after_cpu_steps_takes_fused_steps(name, kw):
    """CPU steps make NumPy state buffers; after the move, the fused flat path must move them too."""
    cpu = Tensor(W0.astype(np.float32), requires_grad=True)
    moved = Tensor(W0.astype(np.float32), requires_grad=True)
    opt_cpu, opt_moved = getattr(optim, name)([cpu], **kw), getattr(optim, name)([moved], **kw)
    for i, g in enumerate(GRADS):
        if i == 1:
            moved.data = backend.to_device(moved.data, "cuda")   # as Module.to("cuda") does
        cpu.grad = g.astype(np.float32)
        moved.grad = backend.to_device(g.astype(np.float32), moved.device)
        opt_cpu.step()
        opt_moved.step()
        np.testing.assert_allclose(moved.numpy(), cpu.numpy(), rtol=1e-5, atol=1e-6)
    assert moved.device == "cuda"


# ---- clip_grad_norm -------------------------------------------------------
def test_clip_grad_norm_scales_above_the_limit():
    a = Tensor(np.zeros(2), requires_grad=True)
    b = Tensor(np.zeros((2, 2)), requires_grad=True)
    c = Tensor(np.zeros(1), requires_grad=True)  # no grad: ignored
    a.grad = np.array([3.0, 0.0])
    b.grad = np.array([[0.0, 4.0], [0.0, 0.0]])
    total = optim.clip_grad_norm([a, b, c], max_norm=1.0)
    assert total == pytest.approx(5.0)
    coef = 1.0 / (5.0 + 1e-6)
    np.testing.assert_allclose(a.grad, [3.0 * coef, 0.0])
    np.testing.assert_allclose(b.grad, [[0.0, 4.0 * coef], [0.0, 0.0]])
    assert c.grad is None
    new_norm = math.sqrt((a.grad ** 2).sum() + (b.grad ** 2).sum())
    assert new_norm == pytest.approx(1.0, rel=1e-5)


def test_clip_grad_norm_leaves_small_gradients_and_other_norms():
    a = Tensor(np.zeros(3), requires_grad=True)
    a.grad = np.array([0.1, -0.2, 0.2])
    assert optim.clip_grad_norm([a], 1.0) == pytest.approx(0.3)
    np.testing.assert_array_equal(a.grad, [0.1, -0.2, 0.2])
    assert optim.clip_grad_norm([a], 10.0, norm_type=float("inf")) == pytest.approx(0.2)
    assert optim.clip_grad_norm([a], 10.0, norm_type=1) == pytest.approx(0.5)
    assert optim.clip_grad_norm([Tensor(np.zeros(2), requires_grad=True)], 1.0) == 0.0
    a.grad = np.array([np.inf, 0.0, 0.0])
    with pytest.raises(RuntimeError, match="norm"):
        optim.clip_grad_norm([a], 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_grad_norm([a], -1.0)


# ---- PyTorch as an oracle -------------------------------------------------
TORCH_CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.7, dampening=0.2)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.001)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.003, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.003, betas=(0.5, 0.9), eps=1e-5, weight_decay=0.2)),
]


@pytest.mark.parametrize("name,kw", TORCH_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(TORCH_CASES)])
def test_matches_pytorch_over_several_steps(name, kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    shapes = [(4, 3), (3,), (2, 2, 2), ()]
    init = [np.asarray(rng.standard_normal(s)) for s in shapes]
    ours = [Tensor(w.copy(), requires_grad=True) for w in init]
    theirs = [torch.tensor(w.copy(), requires_grad=True) for w in init]
    opt = getattr(optim, name)(ours, **kw)
    topt = getattr(torch.optim, name)(theirs, **kw)
    for step in range(6):
        for k, (p, tp) in enumerate(zip(ours, theirs)):
            if step == 2 and k == 1:  # a parameter that misses a gradient one step
                p.grad, tp.grad = None, None
                continue
            g = rng.standard_normal(p.shape)
            p.grad, tp.grad = g.copy(), torch.tensor(g.copy())
        opt.step()
        topt.step()
        for p, tp in zip(ours, theirs):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,kw", TORCH_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(TORCH_CASES)])
def test_a_0d_parameter_moves_as_a_1_element_one_does(name, kw):
    # ``g + wd * w`` of 0-d arrays is a NumPy scalar; a momentum buffer kept as one never changed again
    scalar, vector = Tensor(np.array(1.5), requires_grad=True), Tensor(np.array([1.5]), requires_grad=True)
    opts = [getattr(optim, name)([p], **kw) for p in (scalar, vector)]
    for step in range(5):
        for p, opt in zip((scalar, vector), opts):
            p.grad = (2.0 * p.data).reshape(p.shape)   # the gradient of p ** 2
            opt.step()
        assert scalar.shape == () and scalar.data.item() == vector.data.item()


def test_clip_grad_norm_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(s) * 3 for s in [(5, 4), (4,), (3, 3)]]
    for norm_type in (2.0, 1.0, 3.0, float("inf")):
        ours = [Tensor(np.zeros_like(g), requires_grad=True) for g in grads]
        theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
        for p, tp, g in zip(ours, theirs, grads):
            p.grad, tp.grad = g.copy(), torch.tensor(g.copy())
        total = optim.clip_grad_norm(ours, 2.0, norm_type=norm_type)
        ttotal = torch.nn.utils.clip_grad_norm_(theirs, 2.0, norm_type=norm_type)
        assert total == pytest.approx(float(ttotal), rel=1e-10)
        for p, tp in zip(ours, theirs):
            np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-10)


# ---- the fused flat-buffer path (kernels.use("emulate") on the CPU, CuPy on a GPU) -----------------
FUSED_SGD_CASES = [
    dict(lr=0.1, momentum=0.9, weight_decay=0.01),
    dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.9, dampening=0.5),
    dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.02),
]
# (step, parameter) pairs whose gradient is missing: some parameters then have a momentum
# buffer and others not when the flat buffers are packed
MISSING_GRADS = [(), ((0, 0),), ((0, 1),), ((0, 2),), ((0, 0), (1, 0)), ((0, 0), (0, 2)), ((2, 1),)]


@pytest.mark.parametrize("missing", MISSING_GRADS, ids=str)
@pytest.mark.parametrize("kw", FUSED_SGD_CASES, ids=lambda kw: "-".join(f"{k}{v}" for k, v in kw.items()))
def test_fused_sgd_matches_pytorch_in_every_mix_of_buffer_states(kw, missing):
    torch = pytest.importorskip("torch")
    from minifb import kernels
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (5,), (2,)]]
    ours = [Tensor(w.copy(), requires_grad=True) for w in init]
    plain = [Tensor(w.copy(), requires_grad=True) for w in init]
    theirs = [torch.tensor(w.copy(), requires_grad=True) for w in init]
    opt, ref, topt = optim.SGD(ours, **kw), optim.SGD(plain, **kw), torch.optim.SGD(theirs, **kw)
    for step in range(5):
        for k, (p, q, tp) in enumerate(zip(ours, plain, theirs)):
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad, q.grad, tp.grad = g.copy(), g.copy(), torch.tensor(g)
            if (step, k) in missing:
                p.grad = q.grad = tp.grad = None
        with kernels.use("emulate"):
            opt.step()
        with kernels.use("off"):
            ref.step()
        topt.step()
        for p, q, tp in zip(ours, plain, theirs):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, 0.1, momentum=0.9),
                                  lambda ps: optim.SGD(ps, 0.1, momentum=0.9, dampening=0.4),
                                  lambda ps: optim.Adam(ps, lr=0.1), lambda ps: optim.AdamW(ps, lr=0.1)],
                         ids=["sgd", "sgd-dampening", "adam", "adamw"])
def test_fused_load_state_dict_replaces_the_flat_state(make):
    from minifb import kernels
    w = np.random.default_rng(0).standard_normal(4).astype(np.float32)
    a, b = Tensor(w.copy(), requires_grad=True), Tensor(w.copy(), requires_grad=True)
    opt_a, opt_b = make([a]), make([b])
    with kernels.use("emulate"):
        for _ in range(3):
            a.grad = np.full(4, 1.0, np.float32)
            opt_a.step()
        b.grad = np.full(4, -5.0, np.float32)
        opt_b.step()                                  # b's flat buffers now hold other state
        opt_b.load_state_dict(opt_a.state_dict())
        b.data[...] = a.data
        for _ in range(2):
            a.grad, b.grad = np.full(4, 0.5, np.float32), np.full(4, 0.5, np.float32)
            opt_a.step()
            opt_b.step()
    np.testing.assert_array_equal(b.data, a.data)
    for key, value in opt_a.state[0].items():
        np.testing.assert_array_equal(opt_b.state[0][key], value)


def test_fused_adam_step_count_follows_per_parameter_steps():
    """Steps taken on the per-parameter path in between must not leave the fused path's step count stale."""
    from minifb import kernels
    w = np.random.default_rng(1).standard_normal(3).astype(np.float32)
    a, b = Tensor(w.copy(), requires_grad=True), Tensor(w.copy(), requires_grad=True)
    opt_a, opt_b = optim.Adam([a], lr=0.1), optim.Adam([b], lr=0.1)
    for mode in ["emulate", "off", "emulate"]:
        a.grad, b.grad = np.full(3, 0.5, np.float32), np.full(3, 0.5, np.float32)
        with kernels.use(mode):
            opt_a.step()
        with kernels.use("off"):
            opt_b.step()
    assert opt_a.state[0]["step"] == opt_b.state[0]["step"] == 3
    np.testing.assert_allclose(a.data, b.data, rtol=1e-5, atol=1e-5)


def test_sgd_weight_decay_is_the_fourth_positional_argument():
    expected = run(optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-2)
    p = Tensor(W0.copy(), requires_grad=True)
    opt = optim.SGD([p], 0.1, 0.9, 1e-2)
    assert opt.weight_decay == 1e-2 and opt.dampening == 0.0
    for g in GRADS:
        p.grad = g.copy()
        opt.step()
    np.testing.assert_array_equal(p.data, expected)


def test_docstring_examples_run():
    import doctest

    import minifb as mf
    from minifb import nn

    mf.manual_seed(0)
    result = doctest.testmod(optim, extraglobs={"mf": mf, "nn": nn, "np": np, "optim": optim})
    assert result.attempted > 0 and result.failed == 0


# ---- version counters: a graph recorded before a step cannot backward -------------------------------
@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), lambda ps: optim.Adam(ps)])
@pytest.mark.parametrize("mode", ["off", "emulate"])
def test_backward_after_a_step_through_an_older_graph_is_refused(make, mode):
    """forward, step, backward: the weights the forward pass used changed in place, so backward raises
    (as PyTorch does) instead of computing gradients from the new values; on both update paths."""
    from minifb import kernels, nn

    net = nn.Dense(3, 2, activation=Tensor.relu)
    opt = make(net.parameters())
    x = Tensor(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3))
    with kernels.use(mode):
        net(x).sum().backward()
        opt.step()                       # a normal step: gradients were computed before it
        stale = net(x).sum()
        opt.step()                       # the weights stale's graph used are updated in place
        with pytest.raises(RuntimeError, match=r"updated in place after the forward pass.*version 1 then, 2 now"):
            stale.backward()
        opt.zero_grad()
        fresh = net(x).sum()             # a forward pass after the step is fine
        fresh.backward()
    assert net.weight.grad is not None and net.weight._version == 2


def test_a_retained_graph_cannot_backward_again_after_a_step():
    w = Tensor(np.ones((2, 2), dtype=np.float32), requires_grad=True)
    x = Tensor(np.eye(2, dtype=np.float32))
    loss = (x @ w).sum()
    loss.backward(retain_graph=True)
    loss.backward(retain_graph=True)     # no step in between: allowed, the gradients add up
    np.testing.assert_array_equal(w.grad, 2 * np.ones((2, 2)))
    optim.SGD([w], lr=1.0).step()
    with pytest.raises(RuntimeError, match=r"shape \(2, 2\).*<MatMul>"):
        loss.backward()


@pytest.mark.parametrize("view", [
    lambda w: w.detach()[0], lambda w: w[0].detach(), lambda w: w.detach().reshape(-1)[:2],
    lambda w: w.detach().T[0], lambda w: _unrecorded(lambda: w[0]), lambda w: w[0],
], ids=["detach-index", "index-detach", "detach-reshape", "detach-T", "no_grad-index", "recorded-index"])
def test_a_view_of_a_parameter_shares_its_version_and_nothing_is_written_before_the_refusal(view):
    w = Tensor(np.array([[1.0, 2.0], [3.0, 4.0]]), requires_grad=True)
    o = Tensor(np.array([1.0, 1.0]), requires_grad=True)
    loss = (view(w) * o).sum()
    w.grad = np.ones_like(w.data)
    optim.SGD([w], lr=1.0).step()
    w.grad = None
    with pytest.raises(RuntimeError, match=r"updated in place after the forward pass"):
        loss.backward()
    assert o.grad is None and w.grad is None     # refused before any gradient was formed (as PyTorch)


def _unrecorded(fn):
    from minifb import no_grad

    with no_grad():
        return fn()


def test_a_frozen_weight_loaded_after_the_forward_pass_is_noticed():
    """A weight never updated before has a version counter from its first use, so a first in-place update
    (load_state_dict here) is seen."""
    from minifb import nn

    net = nn.Dense(2, 1, bias=False)
    net.weight.requires_grad_(False)
    x = Tensor(np.ones((1, 2), np.float32), requires_grad=True)
    loss = net(x).sum()
    net.load_state_dict({"weight": np.array([[10.0, 20.0]], np.float32)})
    with pytest.raises(RuntimeError, match=r"updated in place after the forward pass"):
        loss.backward()


@pytest.mark.parametrize("share", [Tensor.detach, Tensor], ids=["detach", "Tensor(p)"])
def test_a_detached_copy_of_a_parameter_shares_its_version(share):
    """detach() and Tensor(p) share p's values, so they share its version counter too (as in PyTorch): a
    graph that used them cannot backward after a step either, where it would use the stepped values."""
    w = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    x = Tensor(np.array([1.0, 1.0]), requires_grad=True)
    y = (x * share(w)).sum()              # Mul keeps w's array to form x's gradient
    (w * 1.0).sum().backward()
    optim.SGD([w], lr=1.0).step()         # w's values change in place under y's graph
    assert share(w)._version == w._version == 1
    with pytest.raises(RuntimeError, match=r"a detach\(\) or a view of a parameter\).*updated in place"):
        y.backward()
    assert x.grad is None
    z = (x * share(w)).sum()              # recorded after the step: fine
    z.backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0])


def test_a_parameter_without_a_gradient_keeps_its_version():
    a = Tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    b = Tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    (a * 2).sum().backward()
    optim.SGD([a, b], lr=0.1).step()
    assert (a._version, b._version) == (1, 0)


# ---- the fused path: dtypes, betas close to 1, and what it does to .data -----------------------------
def _emulation_or_skip():
    import os
    import shutil

    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("kernel emulation needs a C++ compiler")


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, 0.1), lambda ps: optim.SGD(ps, 0.1, momentum=0.9),
                                  lambda ps: optim.Adam(ps, lr=0.1), lambda ps: optim.AdamW(ps, lr=0.1)],
                         ids=["sgd", "sgd-momentum", "adam", "adamw"])
def test_float64_gradient_on_a_float32_parameter_updates_as_without_kernels(make):
    """The flat kernel path checks every gradient's dtype too: a float64 gradient sends the step to the
    per-parameter path, which updates as the kernels-off path does (float32 parameter, values rounded)."""
    from minifb import kernels

    _emulation_or_skip()
    rng = np.random.default_rng(2)
    init = [rng.standard_normal(s).astype(np.float32) for s in [(2, 3), (4,)]]
    grads = [[rng.standard_normal(w.shape) for w in init] for _ in range(3)]   # float64
    got = {}
    for mode in ("off", "emulate"):
        ps = [Tensor(w.copy(), requires_grad=True) for w in init]
        opt = make(ps)
        with kernels.use(mode):
            for gs in grads:
                ps[0].grad, ps[1].grad = gs[0], gs[1].astype(np.float32)   # one float64, one float32
                opt.step()
        got[mode] = [p.data for p in ps]
    for a, b in zip(got["emulate"], got["off"]):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("betas", [(0.9, 1 - 1e-8), (1 - 1e-8, 0.999)])
def test_adam_betas_close_to_one_update_as_without_kernels(betas):
    from minifb import kernels

    _emulation_or_skip()
    got = {}
    for mode in ("off", "emulate"):
        p = Tensor(np.ones(3, np.float32), requires_grad=True)
        opt = optim.Adam([p], lr=1e-3, betas=betas)
        with kernels.use(mode):
            for _ in range(3):
                p.grad = np.full(3, 0.5, np.float32)
                opt.step()
        got[mode] = p.data.copy(), opt.state[0]["exp_avg"].copy(), opt.state[0]["exp_avg_sq"].copy()
    for a, b in zip(got["emulate"], got["off"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=0)
    np.testing.assert_allclose(got["emulate"][0], 0.997, rtol=1e-6)   # three steps of about lr each


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, 0.1, momentum=0.9), lambda ps: optim.Adam(ps, lr=0.1)],
                         ids=["sgd", "adam"])
def test_fused_step_makes_data_a_view_into_the_flat_buffer(make):
    """Pins what Optimizer.step documents for the fused path: the first fused step replaces each parameter's
    ``.data`` (and its state arrays) with views into flat buffers.  An array taken from ``.data`` or
    ``detach()`` before that step keeps the values it had; one taken after it shares the parameter's memory
    and follows later steps (until something replaces the arrays and the optimiser packs them again)."""
    from minifb import kernels, nn

    _emulation_or_skip()
    import minifb as mf

    mf.manual_seed(0)
    net = nn.Dense(3, 2)
    opt = make(net.parameters())
    before_data, before_detached = net.weight.data, net.weight.detach()
    start = net.weight.numpy().copy()
    x = mf.randn(4, 3)

    def step():
        opt.zero_grad()
        (net(x) ** 2).mean().backward()
        opt.step()

    with kernels.use("emulate"):
        step()                                             # the first fused step packs the parameters
        assert net.weight.data is not before_data
        assert not np.shares_memory(before_data, net.weight.data)
        np.testing.assert_array_equal(before_data, start)  # the old array kept the old values
        np.testing.assert_array_equal(before_detached.data, start)
        after_data, after_detached = net.weight.data, net.weight.detach()
        state_after = {k: v for k, v in opt.state[0].items() if hasattr(v, "shape")}
        step()
        step()
        assert net.weight.data is after_data               # later steps update the same arrays in place
        assert np.shares_memory(after_detached.data, net.weight.data)
        np.testing.assert_array_equal(after_detached.numpy(), net.weight.numpy())
        assert not np.array_equal(net.weight.numpy(), start)
        for k, v in state_after.items():
            assert opt.state[0][k] is v
    with kernels.use("off"):                               # the per-parameter path updates .data in place
        kept = net.weight.data
        step()
        assert net.weight.data is kept


@pytest.mark.parametrize("cls", [optim.Adam, optim.AdamW])
def test_adam_survives_a_gradient_whose_square_overflows_float32(cls):
    # (1 - beta2) * g * g, left to right as PyTorch does: squaring 3e19 first overflows float32, and a second
    # moment of inf freezes the weight for good. The float64 run, where nothing overflows, is the reference.
    got = {}
    for dtype in (np.float32, np.float64):
        p = Tensor(np.zeros(2, dtype), requires_grad=True)
        opt = cls([p], lr=1e-2)
        for step in range(20):
            p.grad = np.full(2, 3e19 if step == 0 else 1.0, dtype)
            opt.step()
        got[dtype] = p.data.copy(), opt.state[0]["exp_avg_sq"].copy()
    assert np.isfinite(got[np.float32][1]).all()
    for a, b in zip(got[np.float32], got[np.float64]):
        np.testing.assert_allclose(a, b, rtol=1e-4)


# ---- bad input (audit) -------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=0.1), lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
                                  lambda p: optim.Adam(p), lambda p: optim.AdamW(p)])
def test_step_refuses_a_gradient_that_is_not_an_array(make):
    p = Tensor(W0.copy(), requires_grad=True)
    opt = make([p])
    p.grad = GRADS[0].tolist()
    with pytest.raises(TypeError, match=rf"^{type(opt).__name__}.step: params\[0\].grad must be an array of shape "
                                        r"\(2, 3\), got list"):
        opt.step()
    np.testing.assert_array_equal(p.data, W0)
    assert opt.state[0] == {}
    q = Tensor(W0.copy(), requires_grad=True)              # checked before any update: q is left as it was
    opt = make([q, p])
    q.grad = GRADS[1].copy()
    with pytest.raises(TypeError, match=r"params\[1\].grad must be an array"):
        opt.step()
    np.testing.assert_array_equal(q.data, W0)
    assert opt.state == [{}, {}]


@pytest.mark.parametrize("fused", [False, True], ids=["float64", "float32-emulated-kernels"])
@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam])
def test_a_read_only_parameter_is_refused(cls, fused):
    import contextlib

    from minifb import kernels

    dtype = np.float32 if fused else np.float64   # float32 under emulation takes the flat fused path
    if fused:
        _emulation_or_skip()
    w = W0.astype(dtype)
    w.setflags(write=False)
    frozen = Tensor(w, requires_grad=True)               # a read-only array (np.load with mmap_mode="r", say)
    cls([frozen], lr=0.1).step()                         # without a gradient it is never updated: fine
    p = Tensor(W0.astype(dtype), requires_grad=True)
    opt = cls([p], lr=0.1)
    p.data = w                                           # a read-only array with a gradient: refused at step
    p.grad = GRADS[0].astype(dtype)
    with kernels.use("emulate") if fused else contextlib.nullcontext():
        with pytest.raises(ValueError, match=rf"^{cls.__name__}.step: params\[0\] \(shape \(2, 3\)\) is a "
                                             r"read-only array"):
            opt.step()
    assert opt.state[0] == {}
    assert p.data is w
    np.testing.assert_array_equal(p.data, W0.astype(dtype))


def test_clip_grad_norm_refuses_what_is_not_an_iterable_of_tensors():
    from minifb import nn

    with pytest.raises(TypeError, match=r"^clip_grad_norm: params must be a Tensor or an iterable of Tensors, "
                                        r"got NoneType"):
        optim.clip_grad_norm(None, 1.0)
    with pytest.raises(TypeError, match=r"^clip_grad_norm: params must be a Tensor or an iterable of Tensors; "
                                        r"pass model.parameters\(\), not the Dense itself"):
        optim.clip_grad_norm(nn.Dense(3, 2), 1.0)


def test_a_kept_backward_error_does_not_keep_the_graph_alive():
    # the tape walk's frame holds the graph and the pending gradients; a kept traceback must not pin them
    w = Tensor(np.ones(3), requires_grad=True)
    loss = ((w * 2.0).exp() * 3.0).sum()
    (w * 1.0).sum().backward()
    optim.SGD([w], lr=0.1).step()
    with pytest.raises(RuntimeError, match="updated in place") as info:
        loss.backward()
    tb, walks = info.value.__traceback__, []
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "_backprop":
            walks.append(tb.tb_frame.f_locals)
        tb = tb.tb_next
    assert walks == [{}]


def test_a_parameter_made_from_a_parameter_shares_its_version():
    from minifb import nn

    p = nn.Parameter(np.ones(3, np.float32))
    q, r = nn.Parameter(p), nn.Parameter(p[:2])        # the same memory
    loss = (q * q).sum() + (r * r).sum()
    (p * 1).sum().backward()
    optim.SGD([p], lr=0.5).step()
    with pytest.raises(RuntimeError, match=r"updated in place after the forward pass"):
        loss.backward()


def test_a_frozen_weight_refusal_names_it():
    from minifb import nn

    net = nn.Dense(3, 2, bias=False)
    net.weight.requires_grad_(False)
    x = Tensor(np.ones((1, 3), np.float32), requires_grad=True)
    loss = net(x).sum()
    net.load_state_dict({"weight": np.zeros((2, 3), np.float32)})
    with pytest.raises(RuntimeError, match=r"a tensor that needs no gradient \(a frozen weight"):
        loss.backward()


def test_the_refusal_names_a_view_of_a_trainable_parameter_as_such():
    w = Tensor(np.ones((3, 3)), requires_grad=True)
    v = w.reshape(9).reshape(3, 3)
    loss = (v * v).sum()
    w.grad = np.ones_like(w.data)
    optim.SGD([w], lr=0.1).step()
    with pytest.raises(RuntimeError, match=r"a view \(an index, a reshape, a transpose\) of a parameter"):
        loss.backward()


# ---------------------------------------------------------------- found by mutation testing (session 13)
@pytest.mark.parametrize("make", [lambda ps: optim.Adam(ps, lr=0.05, weight_decay=0.1),
                                  lambda ps: optim.AdamW(ps, lr=0.05, weight_decay=0.1),
                                  lambda ps: optim.AdamW(ps, lr=0.05, betas=(0.5, 0.9))],
                         ids=["adam-l2", "adamw", "adamw-default-wd"])
@pytest.mark.parametrize("missing", [(), ((0, 1),), ((1, 0),)], ids=str)
def test_fused_adam_matches_the_array_path_also_with_unequal_step_counts(make, missing):
    """Kills O11 (AdamW decays twice on the flat path) and O02 (the flat path used with per-parameter step
    counts that differ, each parameter then bias-corrected with the first one's count): one step's missing
    gradient leaves the step counts unequal, and every later step must still match the kernels-off path."""
    from minifb import kernels

    _emulation_or_skip()
    rng = np.random.default_rng(3)
    init = [rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (5,)]]
    grads = [[rng.standard_normal(w.shape).astype(np.float32) for w in init] for _ in range(4)]
    got = {}
    for mode in ("off", "emulate"):
        ps = [Tensor(w.copy(), requires_grad=True) for w in init]
        opt = make(ps)
        with kernels.use(mode):
            for step, gs in enumerate(grads):
                for k, (p, g) in enumerate(zip(ps, gs)):
                    p.grad = None if (step, k) in missing else g.copy()
                opt.step()
        got[mode] = [p.data.copy() for p in ps], [s.get("step") for s in opt.state]
    assert got["emulate"][1] == got["off"][1]
    for a, b in zip(got["emulate"][0], got["off"][0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_clip_grad_norm_with_a_nan_gradient_scales_by_nan_as_pytorch():
    """Kills O07: a NaN total norm makes the coefficient NaN, which must still be applied (as PyTorch does);
    ``coef < 1.0`` alone is False for NaN and would leave the gradients as they were."""
    a = Tensor(np.zeros(2), requires_grad=True)
    b = Tensor(np.zeros(2), requires_grad=True)
    a.grad = np.array([np.nan, 1.0])
    b.grad = np.array([1.0, 2.0])
    total = optim.clip_grad_norm([a, b], 1.0)
    assert math.isnan(total)
    assert np.isnan(a.grad).all() and np.isnan(b.grad).all()
    torch = pytest.importorskip("torch")
    ta, tb = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    ta.grad, tb.grad = torch.tensor([math.nan, 1.0], dtype=torch.float64), torch.tensor([1.0, 2.0], dtype=torch.float64)
    torch.nn.utils.clip_grad_norm_([ta, tb], 1.0)
    np.testing.assert_array_equal(b.grad, tb.grad.numpy())


# ---------------------------------------------------------------- found by the user audit (session 14)
def test_clip_grad_norm_with_an_infinite_max_norm_only_measures():
    a, b = Tensor(np.zeros(2), requires_grad=True), Tensor(np.zeros(1), requires_grad=True)
    a.grad, b.grad = np.array([3.0, 4.0]), np.array([12.0])
    assert optim.clip_grad_norm([a, b], math.inf) == pytest.approx(13.0)
    np.testing.assert_array_equal(a.grad, [3.0, 4.0])                  # not scaled
    np.testing.assert_array_equal(b.grad, [12.0])
    for bad in (math.nan, -1.0, -math.inf):
        with pytest.raises(ValueError, match=r"^clip_grad_norm: max_norm must be a number >= 0, got"):
            optim.clip_grad_norm([a, b], bad)


@pytest.mark.parametrize("state_dict, error, message", [
    ([1, 2], TypeError, r"^Adam.load_state_dict: expected a dict as Adam.state_dict\(\) returns, got list"),
    ({"type": "Adam"}, ValueError, r"^Adam.load_state_dict: the dict has no 'state' entry; .*got keys \['type'\]"),
    ({"state": [{}]}, ValueError, r"^Adam.load_state_dict: the dict has no 'type' entry"),
    ({"type": "Adam", "state": 3}, TypeError, r"^Adam.load_state_dict: 'state' must be a list .*got int"),
    ({"type": "Adam", "state": [3]}, TypeError, r"^Adam.load_state_dict: state\[0\] must be a dict, got int"),
    ({"type": "Adam", "state": [{}], "hyperparameters": [0.1]}, TypeError,
     r"^Adam.load_state_dict: 'hyperparameters' must be a dict, got list"),
], ids=["list", "no-state", "no-type", "state-int", "entry-int", "hyper-list"])
def test_load_state_dict_refuses_malformed_input_naming_the_optimiser(state_dict, error, message):
    opt = optim.Adam([Tensor(np.zeros(2), requires_grad=True)])
    with pytest.raises(error, match=message):
        opt.load_state_dict(state_dict)


@pytest.mark.parametrize("make, hyper, message", [
    (lambda ps: optim.Adam(ps, lr=0.1), {"lr": -1.0}, r"lr must be a finite number >= 0, got -1.0"),
    (lambda ps: optim.AdamW(ps, lr=0.1), {"betas": [0.9, 1.5]}, r"betas\[1\] must be a finite number"),
    (lambda ps: optim.Adam(ps, lr=0.1), {"eps": math.nan}, r"eps must be a finite number >= 0, got nan"),
    (lambda ps: optim.SGD(ps, 0.1), {"weight_decay": "0.1"}, r"weight_decay must be a number, got '0.1'"),
    (lambda ps: optim.SGD(ps, 0.1, momentum=0.9, nesterov=True), {"momentum": 0.0},
     r"nesterov=True needs momentum > 0 and dampening = 0"),
], ids=["adam-lr", "adamw-betas", "adam-eps", "sgd-weight-decay", "sgd-nesterov"])
def test_load_state_dict_checks_the_hyperparameters_as_the_constructor_does(make, hyper, message):
    p = Tensor(W0.copy(), requires_grad=True)
    opt = make([p])
    p.grad = GRADS[0].copy()
    opt.step()
    saved = opt.state_dict()
    saved["hyperparameters"].update(hyper)
    before = (repr(opt), opt.state)
    name = type(opt).__name__
    with pytest.raises((ValueError, TypeError), match=rf"^{name}.load_state_dict: {message}"):
        opt.load_state_dict(saved)
    assert (repr(opt), opt.state) == before                            # nothing changed
    ok = opt.state_dict()
    ok["hyperparameters"]["lr"] = 0.5
    opt.load_state_dict(ok)                                            # a good one still loads
    assert opt.lr == 0.5


# ---------------------------------------------------------------- found by the fuzz audit (session 14b)
_MAKERS = [lambda ps: optim.SGD(ps, lr=0.1), lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
           lambda ps: optim.Adam(ps, lr=0.1), lambda ps: optim.AdamW(ps, lr=0.1)]
_MAKER_IDS = ["sgd", "sgd-momentum", "adam", "adamw"]


@pytest.mark.parametrize("fused", [False, True], ids=["float64", "float32-emulated-kernels"])
@pytest.mark.parametrize("make", _MAKERS, ids=_MAKER_IDS)
def test_step_refuses_a_tensor_gradient_instead_of_skipping_the_update(make, fused):
    """``.grad`` is a backend array; a Tensor there used to make ``w -= lr * g`` rebind ``w`` and leave the
    parameter as it was (SGD, Adam, AdamW), silently."""
    import contextlib

    from minifb import kernels

    if fused:
        _emulation_or_skip()
    dtype = np.float32 if fused else np.float64
    q, p = Tensor(W0.astype(dtype), requires_grad=True), Tensor(W0.astype(dtype), requires_grad=True)
    opt = make([q, p])
    q.grad, p.grad = GRADS[0].astype(dtype), Tensor(GRADS[0].astype(dtype))
    name = type(opt).__name__
    with kernels.use("emulate") if fused else contextlib.nullcontext():
        with pytest.raises(TypeError, match=rf"^{name}.step: params\[1\].grad must be an array of shape \(2, 3\), "
                                            r"got Tensor; set p.grad = t.data"):
            opt.step()
        np.testing.assert_array_equal(q.data, W0.astype(dtype))          # checked before any update
        np.testing.assert_array_equal(p.data, W0.astype(dtype))
        assert opt.state == [{}, {}]
        p.grad = np.array([["a", "b", "c"]] * 2)                          # an array, but not of numbers
        with pytest.raises(TypeError, match=rf"^{name}.step: params\[1\].grad must be an array of real numbers "
                                            r"of shape \(2, 3\), got dtype <U1"):
            opt.step()
        p.grad = GRADS[0].astype(dtype)                                   # the array itself: updated
        opt.step()
    assert not np.array_equal(p.data, W0.astype(dtype))
    np.testing.assert_allclose(p.data, q.data)


@pytest.mark.parametrize("grad, message", [
    (lambda: Tensor(np.ones(3)), r"got Tensor; set p.grad = t.data"),
    (lambda: "x", r"got str$"),
    (lambda: np.array(["a", "b", "c"]), r"got dtype <U1$"),
], ids=["tensor", "string", "string-array"])
def test_clip_grad_norm_refuses_a_gradient_that_is_not_an_array(grad, message):
    a, b = Tensor(np.zeros(3), requires_grad=True), Tensor(np.zeros(3), requires_grad=True)
    a.grad, b.grad = np.full(3, 10.0), grad()
    with pytest.raises(TypeError, match=r"^clip_grad_norm: params\[1\].grad must be an array .*" + message):
        optim.clip_grad_norm([a, b], 1.0)
    np.testing.assert_array_equal(a.grad, np.full(3, 10.0))             # nothing scaled


def test_clip_grad_norm_refuses_a_read_only_gradient_before_scaling_any():
    a, b = Tensor(np.zeros(2), requires_grad=True), Tensor(np.zeros(2), requires_grad=True)
    frozen = np.array([3.0, 4.0])
    frozen.setflags(write=False)
    a.grad, b.grad = np.array([3.0, 4.0]), frozen
    assert optim.clip_grad_norm([a, b], 100.0) == pytest.approx(math.sqrt(50.0))   # nothing to scale: fine
    with pytest.raises(ValueError, match=r"^clip_grad_norm: params\[1\].grad \(shape \(2,\)\) is a read-only array"):
        optim.clip_grad_norm([a, b], 1.0)
    np.testing.assert_array_equal(a.grad, [3.0, 4.0])


def _adam_state(**changes):
    state = {"step": 2, "exp_avg": np.full((2, 3), 0.1), "exp_avg_sq": np.full((2, 3), 0.01)}
    state.update(changes)
    return {k: v for k, v in state.items() if v is not None}


@pytest.mark.parametrize("name, state, error, message", [
    ("Adam", _adam_state(step=-1), ValueError, r"state\[0\]\['step'\] must be an integer >= 0, got -1$"),
    ("Adam", _adam_state(step=-1.5), ValueError, r"state\[0\]\['step'\] must be an integer >= 0, got -1.5$"),
    ("Adam", _adam_state(step=2.5), ValueError, r"state\[0\]\['step'\] must be an integer >= 0, got 2.5$"),
    ("Adam", _adam_state(step="x"), ValueError, r"state\[0\]\['step'\] must be an integer >= 0, got 'x'$"),
    ("Adam", _adam_state(step=True), ValueError, r"state\[0\]\['step'\] must be an integer >= 0, got True$"),
    ("AdamW", _adam_state(step=np.float64(3.0)), ValueError,
     r"state\[0\]\['step'\] must be an integer >= 0, got np.float64\(3.0\)$"),
    ("Adam", _adam_state(exp_avg=[[0.0] * 3] * 2), TypeError,
     r"state\[0\]\['exp_avg'\] must be an array of real numbers of shape \(2, 3\), got list$"),
    ("Adam", _adam_state(exp_avg_sq=np.array([["a"] * 3] * 2)), TypeError,
     r"state\[0\]\['exp_avg_sq'\] must be an array of real numbers of shape \(2, 3\), got dtype <U1$"),
    ("Adam", _adam_state(exp_avg_sq=None), ValueError,
     r"state\[0\] has no 'exp_avg_sq'; Adam keeps \['step', 'exp_avg', 'exp_avg_sq'\] per parameter"),
    ("AdamW", {"step": 3}, ValueError, r"state\[0\] has no 'exp_avg' or 'exp_avg_sq'; AdamW keeps"),
    ("Adam", _adam_state(momentum_buffer=np.zeros((2, 3))), ValueError,
     r"state\[0\] has unknown key\(s\) \['momentum_buffer'\]; Adam keeps"),
    ("SGD", {"momentum_buffer": "x"}, TypeError,
     r"state\[0\]\['momentum_buffer'\] must be an array of real numbers of shape \(2, 3\), got str$"),
    ("SGD", {"momentum_buffer": np.zeros((2, 3)), "step": 1}, ValueError,
     r"state\[0\] has unknown key\(s\) \['step'\]; SGD keeps \['momentum_buffer'\]"),
], ids=["step-negative", "step-negative-float", "step-fraction", "step-string", "step-bool", "step-np-float",
        "exp-avg-list", "exp-avg-sq-strings", "no-exp-avg-sq", "step-only", "unknown-key", "sgd-buffer-string",
        "sgd-unknown-key"])
def test_load_state_dict_checks_each_parameters_state_before_anything_changes(name, state, error, message):
    p, q = Tensor(W0.copy(), requires_grad=True), Tensor(W0.copy(), requires_grad=True)
    opt = getattr(optim, name)([q, p], lr=0.1, **({"momentum": 0.9} if name == "SGD" else {}))
    q.grad = GRADS[0].copy()
    opt.step()                                              # q has a state, p has none yet
    saved = opt.state_dict()
    before = opt.state_dict()
    saved["state"] = [saved["state"][0], state]
    with pytest.raises(error, match=rf"^{name}.load_state_dict: " + message.replace("state\\[0\\]", "state\\[1\\]")):
        opt.load_state_dict(saved)
    after = opt.state_dict()                                # nothing changed
    assert after["state"][1] == {}
    for key, value in before["state"][0].items():
        np.testing.assert_array_equal(after["state"][0][key], value)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_load_state_dict_still_takes_what_state_dict_gives(name):
    """An empty state (a parameter not stepped yet), NumPy integer step counts (kept as ints) and arrays of
    another dtype (cast to the parameter's) load; the run then continues as the saved one would."""
    p, q = Tensor(W0.copy(), requires_grad=True), Tensor(W0.copy(), requires_grad=True)
    opt = getattr(optim, name)([p, q], lr=0.1)
    p.grad = GRADS[0].copy()
    opt.step()
    saved = opt.state_dict()
    assert saved["state"][1] == {}
    saved["state"][0]["step"] = np.int64(saved["state"][0]["step"])
    saved["state"][0] = {k: v.astype(np.float32) if isinstance(v, np.ndarray) else v
                         for k, v in saved["state"][0].items()}
    p2, q2 = Tensor(p.data.copy(), requires_grad=True), Tensor(W0.copy(), requires_grad=True)
    opt2 = getattr(optim, name)([p2, q2], lr=0.1)
    opt2.load_state_dict(saved)
    assert opt2.state[1] == {}
    assert type(opt2.state[0]["step"]) is int and opt2.state[0]["step"] == 1
    assert all(v.dtype == np.float64 for v in opt2.state[0].values() if hasattr(v, "dtype"))
    for g in GRADS[1:]:
        p.grad, q.grad, p2.grad, q2.grad = g.copy(), g.copy(), g.copy(), g.copy()
        opt.step()
        opt2.step()
    np.testing.assert_allclose(p2.data, p.data, rtol=1e-6)
    np.testing.assert_allclose(q2.data, q.data, rtol=1e-12)


def test_clip_grad_norm_scales_a_numpy_scalar_gradient_and_refuses_an_integer_one():
    """A 0-d parameter's gradient computed by NumPy is a NumPy scalar, which ``g *= coef`` cannot change in
    place: it used to be measured but left unclipped."""
    a, b = Tensor(np.array(0.0), requires_grad=True), Tensor(np.zeros(1), requires_grad=True)
    a.grad, b.grad = np.float64(3.0) * np.array(1.0), np.array([4.0])
    assert isinstance(a.grad, np.generic)
    assert optim.clip_grad_norm([a, b], 1.0) == pytest.approx(5.0)
    assert a.grad.shape == () and float(a.grad) == pytest.approx(0.6, rel=1e-5)
    np.testing.assert_allclose(b.grad, [0.8], rtol=1e-5)
    a.grad, b.grad = np.array(3.0), np.array([4])
    with pytest.raises(TypeError, match=r"^clip_grad_norm: params\[1\].grad has dtype int64; only floating-point"):
        optim.clip_grad_norm([a, b], 1.0)
    assert float(a.grad) == 3.0                                           # nothing scaled
