"""Tests for minifb.models: every factory model builds, runs over time, honours its arguments and trains."""

import re

import numpy as np
import pytest

import minifb as mf
from minifb import backend, models, nn, optim
from minifb import functional as F
from minifb.testing import gradcheck

FEEDBACK_STATE = {  # state names and shapes (without the batch axis) for 28x28 input, features=8
    "lenet5": {},
    "lenet5_fb": {"conv2": (16, 10, 10), "fc1": (120, 1, 1)},
    "spoerer-B": {},
    "spoerer-BK": {},
    "spoerer-BF": {},
    "spoerer-BL": {"l1": (8, 28, 28), "l2": (8, 14, 14)},
    "spoerer-BT": {"l2": (8, 14, 14)},
    "spoerer-BLT": {"l1": (8, 28, 28), "l2": (8, 14, 14)},
}
RECURRENT = ("lenet5_fb", "spoerer-BL", "spoerer-BT", "spoerer-BLT")


def small(name, **kw):
    """The model with few features for the Spoerer family (fast tests)."""
    if name.startswith("spoerer"):
        kw.setdefault("features", 8)
    return models.build(name, **kw)


def images(n=4, channels=1, size=(28, 28), seed=0):
    rng = np.random.default_rng(seed)
    return mf.tensor(rng.standard_normal((n, channels) + tuple(size)).astype(np.float32))


def test_model_names():
    assert set(models.MODEL_NAMES) == set(FEEDBACK_STATE)
    assert len(models.MODEL_NAMES) == 8


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_forward_four_timesteps(name):
    mf.manual_seed(0)
    net = small(name)
    x = images()
    state0 = net.initial_state(x)
    assert {k: tuple(v.shape[1:]) for k, v in state0.items()} == FEEDBACK_STATE[name]
    assert all(v.shape[0] == 4 and not np.any(v.numpy()) for v in state0.values())
    assert net.splitnames() == list(FEEDBACK_STATE[name])
    rnet = nn.Recur(net, state0)
    outs = [rnet(x).numpy() for _ in range(4)]
    for y in outs:
        assert y.shape == (4, 10) and y.dtype == np.float32 and np.all(np.isfinite(y))
    if name in RECURRENT:  # the feedback changes the answer for the same input
        assert not np.allclose(outs[0], outs[1])
    else:                  # no feedback: every step is the same function of x
        for y in outs[1:]:
            np.testing.assert_array_equal(y, outs[0])
    # the direct call is one timestep
    state, logits = net(net.initial_state(x), x)
    np.testing.assert_allclose(logits.numpy(), outs[0], rtol=1e-6)
    assert sorted(state) == sorted(FEEDBACK_STATE[name])


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_arguments_are_honoured(name):
    net = small(name, classes=7, channels=3, input_size=(32, 32))
    x = images(n=2, channels=3, size=(32, 32))
    rnet = nn.Recur(net, net.initial_state(x))
    for _ in range(2):
        y = rnet(x)
    assert y.shape == (2, 7)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, 32, 32\)"):
        net(net.initial_state(x), images(n=2, channels=1, size=(32, 32)))
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        net.initial_state(images(n=2, channels=3, size=(28, 28)))


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_odd_and_non_square_input_sizes(name):
    size = (29, 33)
    net = small(name, input_size=size)
    x = images(n=2, size=size)
    rnet = nn.Recur(net, net.initial_state(x))
    for _ in range(3):
        y = rnet(x)
    assert y.shape == (2, 10)


def weight_shapes(net):
    return [tuple(p.shape) for p in net.parameters()]


def test_spoerer_kernel_and_features():
    net = models.spoerer("BLT", kernel=5, features=6)
    conv = [p for name, p in net.named_parameters() if name.endswith("weight")]
    # bottom-up 1, lateral 1, top-down, bottom-up 2, lateral 2, readout
    assert [tuple(w.shape) for w in conv] == [(6, 1, 5, 5), (6, 6, 5, 5), (6, 6, 2, 2), (6, 6, 5, 5),
                                             (6, 6, 5, 5), (10, 6)]
    # the feedforward controls: BK widens the kernel by 2, BF doubles the feature maps
    assert weight_shapes(models.spoerer("BK", kernel=3, features=6))[0] == (6, 1, 5, 5)
    assert weight_shapes(models.spoerer("BK", kernel=5, features=6))[0] == (6, 1, 7, 7)
    assert weight_shapes(models.spoerer("BF", kernel=3, features=6))[0] == (12, 1, 3, 3)
    assert weight_shapes(models.spoerer("B", kernel=(3, 5), features=6))[0] == (6, 1, 3, 5)
    assert models.spoerer("blt").splitnames() == ["l1", "l2"]  # kind is case-insensitive


def test_default_parameter_counts_roughly_match():
    """The paper's point: BK and BF are feedforward controls of roughly the recurrent models' size."""
    count = {k: models.spoerer(k).num_parameters() for k in models.SPOERER_KINDS}
    assert count["B"] < count["BT"] < count["BL"] < count["BLT"]
    for control in ("BK", "BF"):
        assert 0.7 * count["BL"] < count[control] < 1.5 * count["BLT"]


def test_lenet5_fb_matches_feedbacknets_layout():
    net = models.lenet5_fb()
    up = [layer.op for layer in net.layers if isinstance(layer, nn.Merger)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in up] == [
        (16, 6, (10, 10), 2), (120, 16, (10, 10), 1)]
    # the docstring's layer list: "all ReLU", the two feedback ConvTransposes included
    assert [type(m) for m in up] == [nn.ConvTranspose] * 2
    assert [m.activation for m in up] == [mf.relu, mf.relu]
    assert [m.activation for m in net.layers if isinstance(m, nn.Conv)] == [mf.relu] * 3
    # conv1, conv2, conv3 (the 120 maps), Dense(120, 84), Dense(84, 10): weights and biases
    assert models.lenet5().num_parameters() == (
        (6 * 25 + 6) + (16 * 6 * 25 + 16) + (120 * 16 * 25 + 120) + (84 * 120 + 84) + (10 * 84 + 10))


@pytest.mark.parametrize("size,pad", [(16, 8), (8, 12), ((28, 27), (2, 3)), (32, 2)])
def test_lenet_pads_small_inputs_up_to_its_design_size(size, pad):
    net = models.lenet5_fb(input_size=size)
    assert net.layers[0].padding == pad
    hw = size if isinstance(size, tuple) else (size, size)
    x = images(n=2, size=hw)
    state, y = net(net.initial_state(x), x)
    state, y = net(state, x)
    assert y.shape == (2, 10)
    expected = (10, 10) if size != 32 else (12, 12)  # below 28 the layers keep their 28x28 sizes
    assert state["conv2"].shape[2:] == expected


def test_validation_errors():
    with pytest.raises(ValueError, match="input_size"):
        models.lenet5(input_size=(0, 20))
    with pytest.raises(ValueError, match="classes"):
        models.lenet5(classes=0)
    with pytest.raises(ValueError, match="channels"):
        models.lenet5_fb(channels=-1)
    with pytest.raises(ValueError, match="input_size"):
        models.lenet5(input_size=(28, 28, 28))
    with pytest.raises(ValueError, match="kind"):
        models.spoerer("BX")
    with pytest.raises(ValueError, match="odd"):
        models.spoerer("BL", kernel=4)
    with pytest.raises(ValueError, match="pooling"):
        models.spoerer("B", input_size=(1, 8))
    with pytest.raises(ValueError, match="features"):
        models.spoerer("B", features=0)
    with pytest.raises(ValueError, match="kernel"):
        models.spoerer("B", kernel=0)
    with pytest.raises(ValueError, match="unknown model"):
        models.build("resnet")
    with pytest.raises(TypeError, match="features"):
        models.build("lenet5", features=3)
    with pytest.raises(ValueError, match="expected input"):
        net = models.lenet5()
        net({}, mf.randn(1, 28, 28))  # no batch axis


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_trains_with_bptt(name):
    """A few Adam steps on a small fixed batch, loss summed over 4 timesteps: the loss falls."""
    mf.manual_seed(1)
    size = (28, 28) if name.startswith("lenet") else (16, 16)
    net = small(name, input_size=size)
    x = images(n=8, size=size, seed=2)
    labels = mf.tensor(np.arange(8) % 10)
    opt = optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        rnet = nn.Recur(net, net.initial_state(x))
        total = None
        for _ in range(4):
            step_loss = F.cross_entropy(rnet(x), labels)
            total = step_loss if total is None else total + step_loss
        opt.zero_grad()
        total.backward()
        assert all(p.grad is not None for p in net.parameters()), "every parameter gets a gradient"
        opt.step()
        losses.append(total.item() / 4)
    assert losses[-1] < losses[0] - 0.05, losses


def test_bptt_gradient_of_a_feedback_model_matches_finite_differences():
    """Float64 check of every parameter through 3 timesteps of a tiny BLT and of lenet5_fb.

    ReLU and max pooling have kinks; lenet5_fb has enough units near one that a step of
    1e-6 can straddle it, so its differences use a smaller step (float64 affords it).
    """
    mf.manual_seed(3)
    cases = [(models.spoerer("BLT", input_size=(6, 6), features=3, classes=4), images(2, size=(6, 6)), 1e-6),
             (models.lenet5_fb(classes=3), images(1, size=(28, 28)), 1e-8)]
    for net, x, eps in cases:
        for p in net.parameters():
            p.data = p.data.astype(np.float64)
        x64 = mf.tensor(x.numpy().astype(np.float64))

        def run(*_):
            rnet = nn.Recur(net, net.initial_state(x64))
            return mf.stack([rnet(x64) for _ in range(3)])

        gradcheck(run, *net.parameters(), eps=eps, atol=1e-6, rtol=1e-4, directions=1)


def test_save_load_round_trip_and_refusal(tmp_path):
    from minifb import serialization

    mf.manual_seed(4)
    net = models.spoerer("BLT", features=8)
    path = tmp_path / "blt.npz"
    serialization.save(net, path)
    mf.manual_seed(5)
    other = serialization.load(models.spoerer("BLT", features=8), path)
    x = images(2)
    np.testing.assert_array_equal(net(net.initial_state(x), x)[1].numpy(),
                                  other(other.initial_state(x), x)[1].numpy())
    with pytest.raises(ValueError, match="shape differences"):
        serialization.load(models.spoerer("BLT", features=8, classes=7), path)
    serialization.save(models.spoerer("BT", features=8), tmp_path / "bt.npz")
    with pytest.raises(ValueError, match="(?s)missing names.*unexpected names.*shape differences"):
        serialization.load(models.spoerer("BLT", features=8), tmp_path / "bt.npz")


@pytest.mark.skipif(not backend.cuda_available(), reason="needs CuPy and a GPU")
@pytest.mark.parametrize("name", ["lenet5_fb", "spoerer-BLT"])
def test_gpu_matches_cpu(name):
    mf.manual_seed(6)
    net = small(name)
    x = images(2)
    cpu = nn.Recur(net, net.initial_state(x))
    ref = [cpu(x).numpy() for _ in range(3)]
    net.to("cuda")
    xg = x.to("cuda")
    gpu = nn.Recur(net, net.initial_state(xg))
    for r in ref:
        np.testing.assert_allclose(gpu(xg).numpy(), r, rtol=1e-4, atol=1e-5)
    opt = optim.Adam(net.parameters())
    loss = F.cross_entropy(gpu(xg), mf.tensor(np.array([1, 2])).to("cuda"))
    loss.backward()
    opt.step()
    assert all(p.device == "cuda" for p in net.parameters())


def test_lenet5_fb_takes_the_combine_of_its_feedback_paths():
    calls = []

    def recording_mul(a, b):
        calls.append((a.shape, b.shape))
        return a * b

    net = models.lenet5_fb(combine=recording_mul)
    x = mf.randn(2, 1, 28, 28)
    state, logits = net(net.initial_state(x), x)
    assert logits.shape == (2, 10)
    assert calls == [((2, 6, 28, 28), (2, 6, 28, 28)), ((2, 16, 10, 10), (2, 16, 10, 10))]   # both paths
    with pytest.raises(TypeError, match=r"^lenet5_fb: combine must be a function"):
        models.lenet5_fb(combine="add")


# ---------------------------------------------------------------- found by mutation testing (session 13)
def test_spoerer_lateral_and_top_down_convolutions_have_no_bias():
    f = 8
    count = {k: small(f"spoerer-{k}").num_parameters() for k in ("B", "BL", "BT", "BLT")}
    assert count["BL"] - count["B"] == 2 * f * f * 3 * 3           # two lateral 3x3 convs, weights only
    assert count["BT"] - count["B"] == f * f * 2 * 2               # one 2x2 transposed conv, weights only
    assert count["BLT"] - count["B"] == 2 * f * f * 3 * 3 + f * f * 2 * 2


@pytest.mark.parametrize("name", ["spoerer-BL", "spoerer-BT", "spoerer-BLT"])
def test_spoerer_state_records_the_layers_after_the_relu(name):
    net = small(name)
    x = images(n=2)
    state, _ = net(net.initial_state(x), x)
    state, _ = net(state, x)
    for key, value in state.items():
        v = value.numpy()
        assert (v >= 0).all() and v.max() > 0, key


def test_spoerer_lrn_is_tensorflows_five_channel_normalisation():
    net = small("spoerer-BLT")
    lrns = [m for m in net.modules() if isinstance(m, nn.LRN)]
    assert len(lrns) == 2
    x = (images(n=2, channels=8, size=(3, 3)) * 30).numpy()
    sq = np.pad(x * x, ((0, 0), (2, 2), (0, 0), (0, 0)))
    window = sum(sq[:, j:j + 8] for j in range(5))
    expected = x / (1 + 1e-4 * window) ** 0.5                  # x / (1 + 1e-4·Σ x²)^0.5 over 5 channels
    for lrn in lrns:
        np.testing.assert_allclose(lrn(mf.tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", models.SPOERER_KINDS)
def test_spoerer_readout_is_lrn_global_max_pool_and_dense(kind):
    net = small(f"spoerer-{kind}")
    assert [type(m) for m in net.layers[-4:]] == [nn.LRN, nn.GlobalMaxPool, nn.Flatten, nn.Dense]


@pytest.mark.parametrize("factory", [models.lenet5, models.lenet5_fb])
def test_lenet_dense_layers_are_relu_then_logits(factory):
    dense = [m for m in factory().layers if isinstance(m, nn.Dense)]
    assert [(d.in_features, d.out_features, d.activation) for d in dense] == [(120, 84, mf.relu), (84, 10, None)]


def test_build_names_the_arguments_it_refuses():
    with pytest.raises(TypeError, match=r"^build\('lenet5'\): unexpected arguments \['features'\]; "
                                        r"it takes channels, input_size, classes"):
        models.build("lenet5", features=3)
    with pytest.raises(TypeError, match=r"^build\('spoerer-B'\): unexpected arguments \['kind'\]"):
        models.build("spoerer-B", kind="BL")


def test_a_model_refuses_an_input_with_too_few_axes_with_its_own_error():
    net = models.lenet5()
    with pytest.raises(ValueError, match=r"^lenet5: expected input of shape \(N, 1, 28, 28\)"):
        net({}, mf.randn(28))


# ---------------------------------------------------------------- found by the fuzz audit (session 14)
HUGE = 10**30


@pytest.mark.parametrize("factory, kwargs, fn", [
    (models.lenet5, {"channels": HUGE}, "lenet5"),
    (models.lenet5, {"classes": HUGE}, "lenet5"),
    (models.lenet5, {"input_size": HUGE}, "lenet5"),
    (models.lenet5, {"input_size": (28, HUGE)}, "lenet5"),
    (models.lenet5_fb, {"channels": HUGE}, "lenet5_fb"),
    (models.lenet5_fb, {"classes": HUGE}, "lenet5_fb"),
    (models.lenet5_fb, {"input_size": HUGE}, "lenet5_fb"),
    (lambda **kw: models.spoerer("BLT", **kw), {"channels": HUGE}, r"spoerer\('BLT'\)"),
    (lambda **kw: models.spoerer("BLT", **kw), {"classes": HUGE}, r"spoerer\('BLT'\)"),
    (lambda **kw: models.spoerer("BLT", **kw), {"features": HUGE}, r"spoerer\('BLT'\)"),
    (lambda **kw: models.spoerer("B", **kw), {"kernel": HUGE + 1}, r"spoerer\('B'\)"),
    (lambda **kw: models.spoerer("BF", **kw), {"classes": 10**9}, r"spoerer\('BF'\)"),   # no MemoryError either
    (models.lenet5, {"classes": 10**8}, "lenet5"),
], ids=lambda v: repr(v)[:40] if isinstance(v, dict) else "")
def test_absurd_sizes_are_refused_by_the_parameter_count(factory, kwargs, fn):
    # they gave NumPy's "Maximum allowed dimension exceeded" (or would allocate hundreds of GiB)
    (name, value), = kwargs.items()
    shown = repr(value if name != "input_size" or isinstance(value, tuple) else (value, value))
    with pytest.raises(ValueError, match=rf"^{fn}: .*{name}={re.escape(shown)}.* would give \d+ parameters, "
                                         rf"more than MAX_PARAMETERS = 2147483647; choose smaller sizes$"):
        factory(**kwargs)


@pytest.mark.parametrize("name", models.MODEL_NAMES)
@pytest.mark.parametrize("kwargs", [{}, {"channels": 3, "classes": 7, "input_size": (16, 30)},
                                    {"input_size": 9}], ids=repr)
def test_the_parameter_bound_counts_exactly_what_the_factory_builds(monkeypatch, name, kwargs):
    extra = {"kernel": (3, 5), "features": 6} if name.startswith("spoerer") and kwargs else {}
    n = models.build(name, **kwargs, **extra).num_parameters()
    monkeypatch.setattr(models, "MAX_PARAMETERS", n)
    assert models.build(name, **kwargs, **extra).num_parameters() == n       # at the bound: built
    if name.startswith("spoerer"):       # a Spoerer model's count does not depend on the input size
        assert models.build(name, **{**kwargs, "input_size": HUGE}, **extra).num_parameters() == n
    monkeypatch.setattr(models, "MAX_PARAMETERS", n - 1)
    with pytest.raises(ValueError, match=rf"would give {n} parameters, more than MAX_PARAMETERS = {n - 1};"):
        models.build(name, **kwargs, **extra)
