"""Layers: shapes, values (against NumPy and PyTorch), float64 gradients, init and errors."""

import operator
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minifb as mf
from minifb import functional as F
from minifb import nn
from minifb.testing import gradcheck

from strategies import to64
from strategies import t64 as _t64


def t64(array, requires_grad=True):
    return _t64(array, requires_grad)


def rng(seed=0):
    return np.random.default_rng(seed)


# ---- Dense ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5,), (3, 5), (2, 3, 5)])
def test_dense_any_leading_axes(shape):
    layer = nn.Dense(5, 4, mf.relu)
    x = mf.tensor(rng().standard_normal(shape).astype(np.float32))
    y = layer(x)
    assert y.shape == shape[:-1] + (4,)
    expected = np.maximum(x.numpy() @ layer.weight.numpy().T + layer.bias.numpy(), 0)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_dense_fused_and_plain_paths_agree():
    fused = to64(nn.Dense(4, 3, mf.tanh))
    plain = to64(nn.Dense(4, 3, lambda t: mf.tanh(t)))       # not recognised: plain path
    plain.load_state_dict(fused.state_dict())
    x = t64(rng().standard_normal((6, 4)))
    np.testing.assert_allclose(fused(x).numpy(), plain(x).numpy(), rtol=1e-12)
    for act in (None, mf.relu, mf.sigmoid, mf.tanh, mf.leaky_relu):
        layer = to64(nn.Dense(4, 3, act))
        gradcheck(lambda x, w, b: layer(x), x, layer.weight, layer.bias)


def test_dense_without_bias_and_gradcheck_3d():
    layer = to64(nn.Dense(3, 2, mf.sigmoid, bias=False))
    assert layer.bias is None and len(layer.parameters()) == 1
    x = t64(rng(1).standard_normal((2, 4, 3)))
    gradcheck(lambda x, w: layer(x), x, layer.weight)


def test_dense_init_like_pytorch():
    mf.manual_seed(3)
    layer = nn.Dense(50, 40)
    bound = 1 / np.sqrt(50)
    w, b = layer.weight.numpy(), layer.bias.numpy()
    assert w.dtype == np.float32 and np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert np.abs(b).max() <= bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.01        # uniform(-a, a) has std a/sqrt(3)
    mf.manual_seed(3)
    np.testing.assert_array_equal(nn.Dense(50, 40).weight.numpy(), w)   # reproducible


def test_dense_errors():
    layer = nn.Dense(5, 4)
    with pytest.raises(ValueError, match=r"Dense\(5, 4\): expected input of shape \(\.\.\., 5\), got \(2, 3\)"):
        layer(mf.randn(2, 3))
    with pytest.raises(TypeError, match="Dense"):
        layer(np.zeros(5))
    with pytest.raises(ValueError, match="Dense"):
        nn.Dense(0, 3)


# ---- Conv / ConvTranspose -----------------------------------------------------------------
CONV_CASES = [
    dict(kernel_size=3),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(3, 2), padding="same"),
    dict(kernel_size=3, dilation=2, padding=2, groups=2),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_matches_pytorch(case):
    torch = pytest.importorskip("torch")
    case = dict(case)
    k = case.pop("kernel_size")
    layer = nn.Conv(4, 6, k, mf.relu, **case)
    x = rng().standard_normal((2, 4, 9, 8)).astype(np.float32)
    ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(layer.weight.numpy()),
                                     torch.tensor(layer.bias.numpy()), **case).relu()
    np.testing.assert_allclose(layer(mf.tensor(x)).numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", [dict(stride=1, padding=0), dict(stride=2, padding=1, output_padding=1),
                                  dict(stride=2, dilation=2, groups=2)])
def test_conv_transpose_matches_pytorch(case):
    torch = pytest.importorskip("torch")
    layer = nn.ConvTranspose(4, 6, 3, mf.sigmoid, **case)
    assert layer.weight.shape == (4, 6 // case.get("groups", 1), 3, 3)
    x = rng().standard_normal((2, 4, 5, 6)).astype(np.float32)
    ref = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(layer.weight.numpy()),
                                               torch.tensor(layer.bias.numpy()), **case).sigmoid()
    np.testing.assert_allclose(layer(mf.tensor(x)).numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)


def test_conv_init_like_pytorch():
    conv = nn.Conv(6, 8, 3, groups=2)
    assert np.abs(conv.weight.numpy()).max() <= 1 / np.sqrt(3 * 9)
    up = nn.ConvTranspose(6, 4, 2)
    assert np.abs(up.weight.numpy()).max() <= 1 / np.sqrt(4 * 4)   # fan-in from weight.shape[1]


def test_conv_gradients_float64():
    conv = to64(nn.Conv(2, 3, 3, mf.tanh, stride=2, padding=1))
    x = t64(rng().standard_normal((2, 2, 5, 5)))
    gradcheck(lambda x, w, b: conv(x), x, conv.weight, conv.bias)
    up = to64(nn.ConvTranspose(3, 2, 3, mf.relu, stride=2, padding=1, output_padding=1))
    z = t64(rng(1).standard_normal((2, 3, 3, 3)))
    gradcheck(lambda z, w, b: up(z), z, up.weight, up.bias)
    plain = to64(nn.Conv(2, 3, 3, lambda t: t * t, bias=False))
    gradcheck(lambda x, w: plain(x), x, plain.weight)


def test_conv_unbatched_input():
    conv = nn.Conv(3, 5, 3, mf.relu, padding=1)
    x = mf.randn(3, 6, 6)
    y = conv(x)
    assert y.shape == (5, 6, 6)
    np.testing.assert_allclose(y.numpy(), conv(mf.tensor(x.numpy()[None]))[0].numpy(), rtol=1e-6)


def test_conv_errors():
    conv = nn.Conv(3, 4, 3)
    with pytest.raises(ValueError, match=r"Conv\(3, 4, 3\): expected input of shape \(N, 3, H, W\)"):
        conv(mf.randn(2, 2, 8, 8))
    with pytest.raises(ValueError, match="groups"):
        nn.Conv(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="kernel_size"):
        nn.ConvTranspose(3, 4, 0)
    with pytest.raises(ValueError, match="ConvTranspose"):
        nn.ConvTranspose(3, 4, 3)(mf.randn(1, 4, 5, 5))


def test_conv_errors_from_the_convolution_name_the_layer():
    with pytest.raises(ValueError, match=r"^Conv\(4, 6, 5\): conv2d: kernel of dilated size \(5, 5\)"):
        nn.Conv(4, 6, 5)(mf.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match=r"^Conv\(4, 6, 5\): conv2d: .*input shape \(1, 4, 3, 3\)"):
        nn.Conv(4, 6, 5)(mf.randn(4, 3, 3))                       # unbatched: the same error
    with pytest.raises(ValueError, match=r"^ConvTranspose\(4, 6, 3, padding=3\): conv_transpose2d: output size"):
        nn.ConvTranspose(4, 6, 3, padding=3)(mf.randn(2, 4, 2, 2))
    with pytest.raises(ValueError, match=r"^MaxPool\(4\): max_pool2d: kernel \(4, 4\) is larger"):
        nn.MaxPool(4)(mf.randn(1, 1, 2, 2))


@pytest.mark.parametrize("layer, fn", [(nn.Conv(2, 3, 3), "conv2d"), (nn.ConvTranspose(2, 3, 3), "conv_transpose2d")],
                         ids=["Conv", "ConvTranspose"])
@pytest.mark.parametrize("shape", [(1, 2, 4, 4), (2, 4, 4)], ids=["batched", "unbatched"])
def test_conv_type_errors_from_the_convolution_name_the_layer(layer, fn, shape):
    x = mf.tensor(np.ones(shape, np.int64))
    with pytest.raises(TypeError, match=rf"^{re.escape(repr(layer))}: {fn}: input must be floating point, "
                                        r"got dtype int64"):
        layer(x)


@pytest.mark.parametrize("layer, fn", [(nn.MaxPool(2), "max_pool2d"), (nn.MeanPool(2), "avg_pool2d")],
                         ids=["MaxPool", "MeanPool"])
def test_pool_type_errors_from_the_pooling_name_the_layer(layer, fn):
    with pytest.raises(TypeError, match=rf"^{re.escape(repr(layer))}: {fn}: input must be floating point"):
        layer(mf.tensor(np.ones((1, 2, 4, 4), np.int64)))


@pytest.mark.parametrize("make,match", [
    (lambda: nn.Conv(4, 6, 3, stride=0), r"Conv: stride must be a positive int"),
    (lambda: nn.Conv(4, 6, 3, stride=(1, 2, 3)), r"Conv: stride"),
    (lambda: nn.Conv(4, 6, 3, stride=1.5), r"Conv: stride"),
    (lambda: nn.Conv(4, 6, 3, dilation=0), r"Conv: dilation"),
    (lambda: nn.Conv(4, 6, 3, padding=-1), r"Conv: padding must be an int >= 0"),
    (lambda: nn.Conv(4, 6, 3, padding="full"), r"Conv: padding must be an int, a pair of ints, 'same' or 'valid'"),
    (lambda: nn.Conv(4, 6, 3, padding="same", stride=2), r"Conv: padding='same' needs stride 1"),
    (lambda: nn.ConvTranspose(4, 6, 3, stride=0), r"ConvTranspose: stride"),
    (lambda: nn.ConvTranspose(4, 6, 3, padding="same"), r"ConvTranspose: padding"),
    (lambda: nn.ConvTranspose(4, 6, 3, padding=(1, -1)), r"ConvTranspose: padding"),
    (lambda: nn.ConvTranspose(4, 6, 3, dilation=(1, 0)), r"ConvTranspose: dilation"),
    (lambda: nn.ConvTranspose(4, 6, 3, output_padding=-1), r"ConvTranspose: output_padding"),
    (lambda: nn.ConvTranspose(4, 6, 3, stride=2, output_padding=2), r"ConvTranspose: output_padding=2 must be"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_conv_geometry_is_checked_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_conv_geometry_accepts_what_the_functions_accept():
    assert nn.Conv(4, 6, 3, stride=(1, 2), padding=(0, 1), dilation=(2, 1))(mf.randn(1, 4, 9, 9)).shape == (1, 6, 5, 5)
    assert nn.Conv(4, 6, 3, padding="valid")(mf.randn(1, 4, 5, 5)).shape == (1, 6, 3, 3)
    assert nn.Conv(4, 6, 3, padding=np.int64(1)).padding == 1
    assert nn.ConvTranspose(4, 6, 3, stride=1, dilation=2, output_padding=1)(mf.randn(1, 4, 3, 3)).shape \
        == (1, 6, 8, 8)


# ---- pooling, flatten, dropout, lambda --------------------------------------------------------
def test_pooling_layers():
    x = mf.tensor(rng().standard_normal((2, 3, 6, 6)).astype(np.float32))
    a = x.numpy()
    np.testing.assert_allclose(nn.MaxPool(2)(x).numpy(), a.reshape(2, 3, 3, 2, 3, 2).max(axis=(3, 5)))
    np.testing.assert_allclose(nn.MeanPool(3)(x).numpy(), a.reshape(2, 3, 2, 3, 2, 3).mean(axis=(3, 5)),
                               rtol=1e-5)
    assert nn.MaxPool(3, stride=1, padding=1)(x).shape == (2, 3, 6, 6)
    np.testing.assert_allclose(nn.GlobalMaxPool()(x).numpy(), a.max(axis=(2, 3), keepdims=True))
    np.testing.assert_allclose(nn.GlobalMeanPool()(x).numpy(), a.mean(axis=(2, 3), keepdims=True), rtol=1e-5)
    assert nn.Flatten()(x).shape == (2, 108)
    with pytest.raises(ValueError, match="GlobalMaxPool"):
        nn.GlobalMaxPool()(mf.randn(3, 4))
    with pytest.raises(ValueError, match="MaxPool"):
        nn.MaxPool(2)(mf.randn(3, 4, 4))
    with pytest.raises(ValueError, match="Flatten"):
        nn.Flatten()(mf.randn(3))


@pytest.mark.parametrize("layer", [nn.GlobalMaxPool(), nn.GlobalMeanPool(), nn.MaxPool(2), nn.MeanPool(2),
                                   nn.BatchNorm(3)], ids=repr)
def test_pool_layers_refuse_a_non_tensor_with_a_type_error_as_conv_does(layer):
    with pytest.raises(TypeError, match=rf"^{re.escape(repr(layer))}: input must be a Tensor, got ndarray$"):
        layer(np.zeros((1, 3, 4, 4), np.float32))


def test_global_max_pool_names_itself_on_an_empty_image():
    with pytest.raises(ValueError, match=r"^GlobalMaxPool\(\): max: cannot reduce over axis 2 of length 0"):
        nn.GlobalMaxPool()(mf.zeros(1, 3, 0, 2))


def test_global_max_pool_splits_the_gradient_evenly_among_tied_maxima():
    # the documented rule (torch.amax's), unlike AdaptiveMaxPool2d(1) and MaxPool((H, W)): all to the first
    x = t64(np.array([[[[1.0, 3.0], [3.0, 0.0]], [[2.0, 2.0], [2.0, 2.0]], [[5.0, 1.0], [0.0, 1.0]]]]))
    (nn.GlobalMaxPool()(x) * t64(np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1), False)).sum().backward()
    np.testing.assert_array_equal(x.grad, [[[[0, 0.5], [0.5, 0]], [[0.5, 0.5], [0.5, 0.5]], [[3, 0], [0, 0]]]])


def test_global_pools_gradient():
    x = t64(rng().standard_normal((2, 3, 4, 4)))
    gradcheck(lambda x: nn.GlobalMeanPool()(x), x)
    gradcheck(lambda x: nn.GlobalMaxPool()(x), x)


def test_dropout_train_and_eval():
    mf.manual_seed(0)
    drop = nn.Dropout(0.5)
    y = drop(mf.ones(1000)).numpy()
    assert set(np.unique(y)) <= {0.0, 2.0} and 300 < (y == 0).sum() < 700
    drop.eval()
    np.testing.assert_array_equal(drop(mf.ones(10)).numpy(), np.ones(10))
    with pytest.raises(ValueError, match="Dropout"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="Dropout"):
        nn.Dropout(-0.1)


def test_dropout_p_one_matches_pytorch():
    torch = pytest.importorskip("torch")
    x = rng().standard_normal((3, 4)).astype(np.float32)
    drop = nn.Dropout(1.0)
    xt, tt = mf.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = drop(xt), torch.nn.Dropout(1.0)(tt)
    np.testing.assert_array_equal(y.numpy(), yt.detach().numpy())      # all zeros
    assert y.dtype == np.float32 and y.shape == (3, 4)
    y.sum().backward()
    yt.sum().backward()
    np.testing.assert_array_equal(xt.grad, tt.grad.numpy())            # zero gradient, not None
    drop.eval()
    np.testing.assert_array_equal(drop(mf.tensor(x)).numpy(), x)
    assert repr(drop) == "Dropout(1.0)"


def test_lambda_layer():
    layer = nn.Lambda(lambda t: t * 3)
    assert layer(mf.ones(2)).tolist() == [3.0, 3.0] and layer.parameters() == []
    with pytest.raises(TypeError, match="Lambda"):
        nn.Lambda(3)


# ---- containers: Chain, SkipConnection, Parallel ------------------------------------------------
def _dense64(n_in, n_out, act=None, seed=0):
    mf.manual_seed(seed)
    return to64(nn.Dense(n_in, n_out, act))


def test_skip_connection_passes_layer_output_first():
    """connection(layer(x), x), in that order: checked with order-sensitive connections."""
    layer = _dense64(3, 3, mf.tanh, seed=1)
    x = t64(rng(1).standard_normal((2, 3)))
    fx, xv = layer(x).numpy(), x.numpy()
    np.testing.assert_allclose(nn.SkipConnection(layer, operator.sub)(x).numpy(), fx - xv, rtol=1e-12)
    cat = nn.SkipConnection(layer, lambda a, b: mf.concat([a, b], axis=1))
    np.testing.assert_allclose(cat(x).numpy(), np.concatenate([fx, xv], axis=1), rtol=1e-12)
    first = nn.SkipConnection(layer, lambda a, b: a)
    np.testing.assert_allclose(first(x).numpy(), fx, rtol=1e-12)


def test_parallel_passes_branch_outputs_in_order():
    branches = [_dense64(3, 2, seed=s) for s in (2, 3, 4)]
    x = t64(rng(2).standard_normal((2, 3)))
    outs = [b(x).numpy() for b in branches]
    np.testing.assert_allclose(nn.Parallel(operator.sub, *branches[:2])(x).numpy(), outs[0] - outs[1], rtol=1e-12)
    cat = nn.Parallel(lambda *ys: mf.concat(list(ys), axis=1), *branches)
    np.testing.assert_allclose(cat(x).numpy(), np.concatenate(outs, axis=1), rtol=1e-12)
    div = nn.Parallel(lambda a, b, c: (a - b) / (c * c + 1.0), *branches)
    np.testing.assert_allclose(div(x).numpy(), (outs[0] - outs[1]) / (outs[2] ** 2 + 1), rtol=1e-12)


def test_containers_gradients_float64():
    """Chain, SkipConnection and Parallel (nested) against finite differences, input and parameters."""
    inner = nn.Chain(_dense64(3, 4, mf.tanh, seed=5), _dense64(4, 3, seed=6))
    skip = nn.SkipConnection(inner, operator.sub)
    par = nn.Parallel(lambda a, b: mf.concat([a, b * a], axis=1), skip, nn.Chain(_dense64(3, 3, mf.sigmoid, seed=7)))
    net = nn.Chain(par, mf.relu, _dense64(6, 2, seed=8))
    x = t64(rng(3).standard_normal((4, 3)))
    assert len(net.parameters()) == 8
    gradcheck(lambda x, *ps: net(x), x, *net.parameters())
    gradcheck(lambda x, *ps: skip(x), x, *skip.parameters())


# ---- BatchNorm -------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5, 5)])
def test_batchnorm_matches_pytorch(shape):
    torch = pytest.importorskip("torch")
    x = rng().standard_normal(shape).astype(np.float32) * 2 + 1
    g = rng(1).standard_normal(shape).astype(np.float32)
    bn = nn.BatchNorm(3)
    bn.weight.data = rng(2).standard_normal(3).astype(np.float32)
    bn.bias.data = rng(3).standard_normal(3).astype(np.float32)
    ref = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(3, momentum=0.1)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(bn.weight.numpy()))
        ref.bias.copy_(torch.tensor(bn.bias.numpy()))
    for step in range(2):                      # training steps update the running statistics
        xt = mf.tensor(x + step, requires_grad=True)
        tt = torch.tensor(x + step, requires_grad=True)
        y, yt = bn(xt), ref(tt)
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-4, atol=1e-5)
        y.backward(g)
        yt.backward(torch.tensor(g))
        np.testing.assert_allclose(xt.grad, tt.grad.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(bn.weight.grad, ref.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.bias.grad, ref.bias.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.running_mean.numpy(), ref.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), ref.running_var.numpy(), rtol=1e-5, atol=1e-6)
    bn.eval(), ref.eval()
    np.testing.assert_allclose(bn(mf.tensor(x)).numpy(), ref(torch.tensor(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


def test_batchnorm_running_stats_by_hand():
    bn = nn.BatchNorm(2, momentum=0.5)
    x = np.array([[1.0, 10.0], [3.0, 14.0]], np.float32)
    y = bn(mf.tensor(x)).numpy()
    np.testing.assert_allclose(y, [[-1, -1], [1, 1]], atol=1e-4)
    np.testing.assert_allclose(bn.running_mean.numpy(), [1.0, 6.0])          # 0.5·0 + 0.5·mean
    np.testing.assert_allclose(bn.running_var.numpy(), [1.5, 4.5])           # 0.5·1 + 0.5·unbiased var


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 3, 4, 4)])
def test_batchnorm_cumulative_moving_average_matches_pytorch(shape):
    torch = pytest.importorskip("torch")
    bn = nn.BatchNorm(3, momentum=None)
    ref = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d}[len(shape)](3, momentum=None)
    for step in range(4):
        x = rng(step).standard_normal(shape).astype(np.float32) * (step + 1) + step
        y, yt = bn(mf.tensor(x)), ref(torch.tensor(x))
        np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bn.running_mean.numpy(), ref.running_mean.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bn.running_var.numpy(), ref.running_var.numpy(), rtol=1e-5, atol=1e-6)
        assert int(bn.num_batches_tracked.numpy()) == int(ref.num_batches_tracked) == step + 1
    bn.eval(), ref.eval()
    x = rng(9).standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(bn(mf.tensor(x)).numpy(), ref(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    assert int(bn.num_batches_tracked.numpy()) == 4                  # evaluation does not count
    assert sorted(bn.state_dict()) == ["bias", "num_batches_tracked", "running_mean", "running_var", "weight"]
    assert repr(bn) == "BatchNorm(3, momentum=None)"


def test_batchnorm_momentum_may_change_between_steps_and_the_stats_update_in_place():
    torch = pytest.importorskip("torch")
    bn, ref = nn.BatchNorm(3), torch.nn.BatchNorm2d(3)
    held = bn.running_mean.data   # the Buffer's promise: updates land in this array
    for step in range(6):
        if step == 2:
            bn.momentum, ref.momentum = None, None      # from an exponential to the cumulative average
        if step == 4:
            bn.momentum, ref.momentum = 0.3, 0.3
        x = rng(step).standard_normal((4, 3, 2, 2)).astype(np.float32) * (step + 1) + step
        np.testing.assert_allclose(bn(mf.tensor(x)).numpy(), ref(torch.tensor(x)).detach().numpy(),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bn.running_mean.numpy(), ref.running_mean.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bn.running_var.numpy(), ref.running_var.numpy(), rtol=1e-5, atol=1e-6)
        assert int(bn.num_batches_tracked.numpy()) == int(ref.num_batches_tracked) == step + 1
    assert bn.running_mean.data is held
    assert sorted(bn.state_dict()) == sorted(ref.state_dict())


def test_batchnorm_cumulative_average_by_hand_and_state_dict():
    bn = nn.BatchNorm(1, momentum=None)
    batches = [np.array([[1.0], [3.0]], np.float32), np.array([[5.0], [9.0]], np.float32)]
    for x in batches:
        bn(mf.tensor(x))
    np.testing.assert_allclose(bn.running_mean.numpy(), [(2.0 + 7.0) / 2])   # mean of the batch means
    np.testing.assert_allclose(bn.running_var.numpy(), [(2.0 + 8.0) / 2])    # mean of the unbiased variances
    copy = nn.BatchNorm(1, momentum=None)
    copy.load_state_dict(bn.state_dict())
    assert int(copy.num_batches_tracked.numpy()) == 2
    copy(mf.tensor(np.array([[0.0], [2.0]], np.float32)))                    # the third batch weighs 1/3
    np.testing.assert_allclose(copy.running_mean.numpy(), [(2.0 + 7.0 + 1.0) / 3], rtol=1e-6)
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm(3, momentum=1.5)


def test_batchnorm_gradients_float64_and_activation():
    bn = to64(nn.BatchNorm(3, mf.relu))
    bn.weight.data = rng(2).standard_normal(3)
    x = t64(rng().standard_normal((4, 3, 2, 2)))
    gradcheck(lambda x, w, b: bn(x), x, bn.weight, bn.bias)
    bn.eval()
    gradcheck(lambda x, w, b: bn(x), x, bn.weight, bn.bias)
    y = bn(x).numpy()
    assert (y >= 0).all()


def test_batchnorm_errors():
    with pytest.raises(ValueError, match=r"BatchNorm\(3\): expected input of shape \(N, 3, \.\.\.\)"):
        nn.BatchNorm(3)(mf.randn(4, 2))
    with pytest.raises(ValueError, match="more than one value per channel"):
        nn.BatchNorm(3)(mf.randn(1, 3))


# ---- LRN ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("size,alpha,beta,k", [(5, 1e-4, 0.75, 1.0), (2, 0.5, 0.9, 2.0), (3, 1.0, 0.5, 1.0)])
def test_lrn_matches_pytorch(size, alpha, beta, k):
    torch = pytest.importorskip("torch")
    x = rng().standard_normal((2, 7, 3, 4)).astype(np.float32) * 3
    g = rng(1).standard_normal(x.shape).astype(np.float32)
    layer = nn.LRN(size, alpha, beta, k)
    xt = mf.tensor(x, requires_grad=True)
    tt = torch.tensor(x, requires_grad=True)
    y = layer(xt)
    yt = torch.nn.LocalResponseNorm(size, alpha, beta, k)(tt)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    y.backward(g)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(xt.grad, tt.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_lrn_by_hand_and_gradients():
    x = np.arange(1.0, 4.0).reshape(1, 3)           # (N, C) input, window of 3 channels
    y = nn.LRN(3, alpha=3.0, beta=1.0, k=1.0)(t64(x, requires_grad=False)).numpy()
    sums = np.array([1 + 4, 1 + 4 + 9, 4 + 9])
    np.testing.assert_allclose(y, x / (1 + sums)[None])
    z = t64(rng().standard_normal((2, 6, 3, 3)))
    gradcheck(lambda z: nn.LRN(4, alpha=0.7, beta=0.8, k=1.5)(z), z)
    with pytest.raises(ValueError, match="LRN"):
        nn.LRN(3)(mf.randn(4))


# ---- shapes over random configurations (hypothesis) ------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(lead=st.lists(st.integers(1, 3), max_size=3), n_in=st.integers(1, 4), n_out=st.integers(1, 4))
def test_dense_shapes_and_values_for_any_leading_axes(lead, n_in, n_out):
    layer = nn.Dense(n_in, n_out)
    x = rng().standard_normal(tuple(lead) + (n_in,)).astype(np.float32)
    y = layer(mf.tensor(x))
    assert y.shape == tuple(lead) + (n_out,)
    np.testing.assert_allclose(y.numpy(), x @ layer.weight.numpy().T + layer.bias.numpy(), rtol=1e-5, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 3), s=st.integers(1, 3), p=st.integers(0, 2), d=st.integers(1, 2),
       hw=st.tuples(st.integers(5, 8), st.integers(5, 8)))
def test_conv_and_conv_transpose_output_size_formulas(k, s, p, d, hw):
    x = mf.randn(1, 2, *hw)
    y = nn.Conv(2, 3, k, stride=s, padding=p, dilation=d)(x)
    expected = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n in hw)
    assert y.shape == (1, 3) + expected
    op = min(s, d) - 1                               # the largest output_padding allowed
    z = nn.ConvTranspose(3, 2, k, stride=s, padding=min(p, (d * (k - 1)) // 2), dilation=d, output_padding=op)(y)
    pt = min(p, (d * (k - 1)) // 2)
    assert z.shape[2:] == tuple((n - 1) * s - 2 * pt + d * (k - 1) + op + 1 for n in expected)


# ---- activation arguments ------------------------------------------------------------------------------
@pytest.mark.parametrize("name,make", [
    ("Dense", lambda act: nn.Dense(2, 4, act)),
    ("Conv", lambda act: nn.Conv(2, 4, 3, act)),
    ("ConvTranspose", lambda act: nn.ConvTranspose(2, 4, 3, act)),
    ("BatchNorm", lambda act: nn.BatchNorm(4, act)),
])
@pytest.mark.parametrize("bad", ["relu", 1, mf.ones(2)])
def test_a_non_callable_activation_is_refused_at_construction(name, make, bad):
    with pytest.raises(TypeError, match=rf"^{name}: activation must be a callable such as mf\.relu or None, "
                                        rf"got {re.escape(repr(bad))}$"):
        make(bad)
    for ok in (None, mf.relu, mf.tanh, lambda t: t * 2, nn.Lambda(mf.sigmoid)):   # callables are accepted
        assert make(ok).activation is ok


# ---- dtypes: the fused bias + activation and Merger follow the unfused ops' promotion ---------------------
@pytest.mark.parametrize("mode", ["off", "emulate"])
def test_layers_with_float64_bias_or_state_promote_with_kernels_on_or_off(mode):
    from minifb import kernels

    with kernels.use(mode):
        d = nn.Dense(2, 3, mf.relu)
        d.bias = nn.Parameter(np.zeros(3))                                   # float64 (NumPy's default)
        x = mf.randn(4, 2, requires_grad=True)
        y = d(x)
        assert y.dtype == np.float64
        y.sum().backward()
        assert x.grad.dtype == d.weight.grad.dtype == np.float32 and d.bias.grad.dtype == np.float64
        net = nn.FeedbackChain(nn.Merger("s", nn.Dense(3, 3, mf.relu), operator.add), nn.Dense(3, 3),
                               nn.Splitter("s"))
        state, out = net({"s": mf.zeros(2, 3, dtype="float64")}, mf.randn(2, 3))
        assert out.dtype == state["s"].dtype == np.float64
        _, out = net({"s": mf.zeros(2, 3)}, mf.tensor([[1, 2, 3], [4, 5, 6]]))
        assert out.dtype == (mf.tensor([1]) + mf.ones(1)).dtype == np.float32


# ---- bad arguments (audit): refused at construction, naming the layer and the argument -------------
@pytest.mark.parametrize("make,match", [
    (lambda v: nn.Dense(v, 4), r"^Dense: in_features must be a positive integer, got "),
    (lambda v: nn.Dense(3, v), r"^Dense: out_features must be a positive integer, got "),
    (lambda v: nn.Conv(v, 4, 3), r"^Conv: in_channels must be a positive integer, got "),
    (lambda v: nn.Conv(3, v, 3), r"^Conv: out_channels must be a positive integer, got "),
    (lambda v: nn.Conv(3, 4, 3, groups=v), r"^Conv: groups must be a positive integer, got "),
    (lambda v: nn.ConvTranspose(v, 4, 3), r"^ConvTranspose: in_channels must be a positive integer, got "),
    (lambda v: nn.ConvTranspose(3, v, 3), r"^ConvTranspose: out_channels must be a positive integer, got "),
    (lambda v: nn.BatchNorm(v), r"^BatchNorm: num_features must be a positive integer, got "),
    (lambda v: nn.LRN(v), r"^LRN: size must be a positive integer, got "),
])
@pytest.mark.parametrize("bad", [2.5, 2.0, True, "3", None, 0, -1])
def test_layer_sizes_must_be_integers(make, match, bad):
    with pytest.raises(ValueError, match=match + re.escape(repr(bad))):
        make(bad)


def test_layer_sizes_accept_numpy_integers():
    assert nn.Dense(np.int64(3), np.int32(4)).weight.shape == (4, 3)
    assert nn.LRN(np.int64(3)).size == 3 and type(nn.LRN(np.int64(3)).size) is int


@pytest.mark.parametrize("eps", [-1.0, -1e-9, float("nan"), float("inf")])
def test_batchnorm_eps_must_be_finite_and_not_negative(eps):
    with pytest.raises(ValueError, match=r"^BatchNorm: eps must be a finite number >= 0, got "):
        nn.BatchNorm(3, eps=eps)
    assert nn.BatchNorm(3, eps=0).eps == 0.0          # PyTorch takes 0 too


def test_batchnorm_and_lrn_constants_must_be_numbers():
    with pytest.raises(TypeError, match=r"^BatchNorm: eps must be a number, got 'a'"):
        nn.BatchNorm(3, eps="a")
    with pytest.raises(TypeError, match=r"^BatchNorm: momentum must be a number, got 'a'"):
        nn.BatchNorm(3, momentum="a")
    for momentum in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"^BatchNorm: momentum must be a number >= 0 and <= 1"):
            nn.BatchNorm(3, momentum=momentum)
    for name in ("alpha", "beta", "k"):
        with pytest.raises(TypeError, match=rf"^LRN: {name} must be a number, got 'a'"):
            nn.LRN(3, **{name: "a"})
    assert nn.BatchNorm(3, momentum=None).momentum is None and nn.BatchNorm(3, momentum=1).momentum == 1.0


@pytest.mark.parametrize("make", [lambda b: nn.Dense(3, 4, bias=b), lambda b: nn.Conv(3, 4, 3, bias=b),
                                  lambda b: nn.ConvTranspose(3, 4, 3, bias=b),
                                  lambda b: nn.BatchNorm(3, affine=b)])
def test_layer_flags_must_be_bools(make):
    with pytest.raises(TypeError, match=r"must be True or False, got 'no'"):
        make("no")
    assert make(np.bool_(False)).bias is None


def test_flatten_of_a_non_tensor():
    with pytest.raises(TypeError, match=r"^Flatten\(\): input must be a Tensor, got NoneType"):
        nn.Flatten()(None)


# ---------------------------------------------------------------- found by mutation testing (session 13)
def test_batchnorm_eps_is_added_to_the_variance_inside_the_square_root():
    bn = nn.BatchNorm(1, eps=3.0, momentum=None)
    x = np.array([[1.0], [3.0]], np.float32)           # mean 2, biased variance 1, unbiased 2
    np.testing.assert_allclose(bn(mf.tensor(x)).numpy(), [[-0.5], [0.5]], rtol=1e-6)     # (x - 2) / sqrt(1 + 3)
    bn.eval()                                          # running mean 2, running var 2 (one batch, cumulative)
    np.testing.assert_allclose(bn(mf.tensor(x)).numpy(), [[-1 / np.sqrt(5)], [1 / np.sqrt(5)]], rtol=1e-6)


def test_batchnorm_without_affine_has_no_parameters():
    bn = nn.BatchNorm(3, affine=False)
    assert bn.weight is None and bn.bias is None and bn.parameters() == []
    assert sorted(bn.state_dict()) == ["num_batches_tracked", "running_mean", "running_var"]
    assert repr(bn) == "BatchNorm(3, affine=False)"
    x = rng().standard_normal((6, 3)).astype(np.float32)
    y = bn(mf.tensor(x)).numpy()
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), rtol=1e-4, atol=1e-5)


def _assert_uniform_in(values, bound):
    """Drawn from uniform(-bound, bound): within the bound, reaching close to it, with std bound/sqrt(3)."""
    a = np.abs(values)
    assert a.max() <= bound and a.max() > 0.9 * bound
    assert abs(values.std() - bound / np.sqrt(3)) < 0.1 * bound


def test_bias_init_like_pytorch():
    mf.manual_seed(3)
    _assert_uniform_in(nn.Dense(50, 400).bias.numpy(), 1 / np.sqrt(50))
    _assert_uniform_in(nn.Conv(4, 400, 3).bias.numpy(), 1 / np.sqrt(4 * 9))
    _assert_uniform_in(nn.ConvTranspose(4, 400, 3).bias.numpy(), 1 / np.sqrt(400 * 9))


def test_conv_init_bounds_are_reached_with_groups_and_transposed():
    mf.manual_seed(0)
    _assert_uniform_in(nn.Conv(6, 64, 3, groups=2).weight.numpy(), 1 / np.sqrt(3 * 9))        # fan-in (6/2)·3·3
    _assert_uniform_in(nn.ConvTranspose(6, 8, 3).weight.numpy(), 1 / np.sqrt(8 * 9))          # weight.shape[1]·3·3
    _assert_uniform_in(nn.ConvTranspose(8, 6, 3, groups=2).weight.numpy(), 1 / np.sqrt(3 * 9))


# ---------------------------------------------------------------- found by the fuzz audit (session 14)
def test_batchnorm_eval_normalises_integer_and_boolean_input_as_float_like_training():
    # the running statistics were cast to the input's dtype: 0.7 and 0.5 truncated to 0, so int64 input
    # gave (x - 0) / sqrt(0 + eps), and bool input crashed
    bn = nn.BatchNorm(1).eval()
    bn.running_mean.data[...] = 0.7
    bn.running_var.data[...] = 0.5
    expected = (np.array([[1.0], [2.0]]) - 0.7) / np.sqrt(0.5 + 1e-5)          # [0.424, 1.838]
    for x in (mf.tensor([[1], [2]]), mf.tensor(np.array([[1], [2]], np.int8))):
        y = bn(x)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(bn(mf.tensor([[True], [False]])).numpy(), (np.array([[1.0], [0.0]]) - 0.7)
                               / np.sqrt(0.5 + 1e-5), rtol=1e-5)
    # training mode promotes them the same way: the same output as the float input
    x = np.array([[1, 2], [3, 5], [4, 4]])
    for mode in (True, False):
        a, b = nn.BatchNorm(2).train(mode), nn.BatchNorm(2).train(mode)
        np.testing.assert_allclose(a(mf.tensor(x)).numpy(), b(mf.tensor(x.astype(np.float32))).numpy())
        np.testing.assert_allclose(a.running_mean.numpy(), b.running_mean.numpy())


def test_batchnorm_refuses_complex_input_naming_itself():
    with pytest.raises(TypeError, match=r"^BatchNorm\(2\): input must be real \(floating point, integer or "
                                        r"boolean\), got dtype complex128$"):
        nn.BatchNorm(2)(mf.tensor(np.array([[1j, 2], [2, 3]])))


@pytest.mark.parametrize("make, shown", [
    (lambda: nn.Conv(3, 4, 3, stride=np.array([1, 2])), "Conv(3, 4, 3, stride=(1, 2))"),
    (lambda: nn.Conv(3, 4, 3, padding=np.array([1, 0]), dilation=mf.tensor([2, 1])),
     "Conv(3, 4, 3, padding=(1, 0), dilation=(2, 1))"),
    (lambda: nn.Conv(3, 4, 3, stride=np.int64(2), padding=np.array(1)), "Conv(3, 4, 3, stride=2, padding=1)"),
    (lambda: nn.Conv(3, 4, 3, padding=[1, 1]), "Conv(3, 4, 3, padding=(1, 1))"),
    (lambda: nn.ConvTranspose(3, 4, 3, stride=np.array([2, 2]), output_padding=np.array([1, 0])),
     "ConvTranspose(3, 4, 3, stride=(2, 2), output_padding=(1, 0))"),
    (lambda: nn.MaxPool(np.array([2, 3]), stride=np.int64(1), padding=np.array([1, 1])),
     "MaxPool((2, 3), stride=1, padding=(1, 1))"),
    (lambda: nn.MeanPool(np.int64(2), padding=mf.tensor([0, 1])), "MeanPool(2, padding=(0, 1))"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_array_valued_geometry_is_kept_as_python_ints_and_prints(make, shown):
    # an ndarray stride made repr raise "truth value of an array is ambiguous"
    layer = make()
    assert repr(layer) == shown
    for key in ("kernel_size", "stride", "padding", "dilation", "output_padding"):
        value = getattr(layer, key, None)
        assert value is None or type(value) is int or (type(value) is tuple and all(type(v) is int for v in value))


def test_array_valued_geometry_computes_as_the_plain_one():
    x = mf.randn(1, 3, 8, 8)
    a, b = nn.Conv(3, 4, 3, stride=np.array([1, 2]), padding=np.array([1, 0])), nn.Conv(3, 4, 3, stride=(1, 2),
                                                                                         padding=(1, 0))
    assert (a.stride, a.padding) == (b.stride, b.padding) == ((1, 2), (1, 0))
    b.weight, b.bias = a.weight, a.bias
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    assert nn.MaxPool(np.array([2, 2]))(x).shape == nn.MaxPool(2)(x).shape == (1, 3, 4, 4)
    assert nn.MaxPool(np.array([2, 2])).kernel_size == (2, 2)


@pytest.mark.parametrize("cls", [nn.MaxPool, nn.MeanPool])
@pytest.mark.parametrize("args, kwargs, match", [
    ((2.5,), {}, r"kernel_size must be a positive int or a pair of them, got 2\.5$"),
    ((None,), {}, r"kernel_size must be a positive int or a pair of them, got None$"),
    ((float("nan"),), {}, r"kernel_size must be a positive int or a pair of them, got nan$"),
    ((True,), {}, r"kernel_size must be a positive int or a pair of them, got True$"),
    ((-1,), {"stride": "x"}, r"kernel_size must be a positive int or a pair of them, got -1$"),
    ((2,), {"stride": "x"}, r"stride must be a positive int or a pair of them, got 'x'$"),
    ((2,), {"stride": 0}, r"stride must be a positive int or a pair of them, got 0$"),
    ((2,), {"stride": (1, 2, 3)}, r"stride must be a positive int or a pair of them, got \(1, 2, 3\)$"),
    ((2,), {"padding": -1}, r"padding must be an int >= 0 or a pair of them, got -1$"),
    ((2,), {"padding": 0.5}, r"padding must be an int >= 0 or a pair of them, got 0\.5$"),
    ((2,), {"padding": np.array([1, 2])}, r"padding=\(1, 2\) must be at most half the kernel size \(2, 2\)$"),
    ((3,), {"padding": 2}, r"padding=2 must be at most half the kernel size \(3, 3\)$"),
], ids=lambda v: repr(v)[:30])
def test_pool_geometry_is_checked_at_construction(cls, args, kwargs, match):
    # these constructed and failed only on the first call (a bad padding array even with the repr's crash)
    with pytest.raises(ValueError, match=rf"^{cls.__name__}: {match}"):
        cls(*args, **kwargs)


@pytest.mark.parametrize("name, value, match", [
    ("alpha", float("nan"), r"alpha must be a finite number >= 0, got nan"),
    ("alpha", float("inf"), r"alpha must be a finite number >= 0, got inf"),
    ("alpha", -1e-4, r"alpha must be a finite number >= 0, got -0\.0001"),
    ("beta", float("nan"), r"beta must be a finite number >= 0, got nan"),
    ("beta", float("-inf"), r"beta must be a finite number >= 0, got -inf"),
    ("beta", -0.5, r"beta must be a finite number >= 0, got -0\.5"),
    ("k", float("nan"), r"k must be a finite number > 0, got nan"),
    ("k", float("inf"), r"k must be a finite number > 0, got inf"),
    ("k", -1.0, r"k must be a finite number > 0, got -1\.0"),
    ("k", 0, r"k must be a finite number > 0, got 0\.0"),
    ("size", 10**400, r"size must be a number within float's range"),
])
def test_lrn_constants_must_be_finite_and_keep_the_base_positive(name, value, match):
    # NaN gave all-NaN output, k=-1 NaNs, alpha=inf zeros
    kwargs = {"size": 5, name: value}
    with pytest.raises(ValueError, match=rf"^LRN: {match}"):
        nn.LRN(**kwargs)
    x = mf.randn(2, 3, 2, 2)                 # the bounds themselves are accepted: alpha = 0, beta = 0
    np.testing.assert_allclose(nn.LRN(3, alpha=0.0, beta=0.75, k=2.0)(x).numpy(), x.numpy() / 2.0 ** 0.75,
                               rtol=1e-6)
    np.testing.assert_allclose(nn.LRN(3, alpha=1.0, beta=0.0, k=1.0)(x).numpy(), x.numpy(), rtol=1e-6)


def test_lrn_window_wider_than_the_input_sums_every_channel():
    # LRN(10**30) constructed (as PyTorch's does) and then failed inside np.pad; it is now computed, in
    # at most 2 C - 1 slices: the channels outside the input are zeros
    x = rng().standard_normal((2, 3, 2, 2))
    for size in (10**30, 10**6, 13, 8, 7, 4):
        y = nn.LRN(size, alpha=0.5, beta=0.75, k=1.0)(t64(x, requires_grad=False)).numpy()
        before, after = size // 2, (size - 1) // 2
        total = np.stack([(x[:, max(c - before, 0):c + after + 1] ** 2).sum(axis=1) for c in range(3)], axis=1)
        np.testing.assert_allclose(y, x / (1.0 + 0.5 / size * total) ** 0.75, rtol=1e-12)


def test_a_layer_takes_an_unhashable_callable_as_its_activation():
    # the fused-kernel lookup compared by dict key, so a dataclass callable (unhashable) failed in forward
    import dataclasses

    @dataclasses.dataclass
    class Leaky:
        slope: float

        def __call__(self, t):
            return F.leaky_relu(t, self.slope)

    layer = nn.Dense(3, 2, Leaky(0.1))
    x = mf.randn(4, 3)
    np.testing.assert_allclose(layer(x).numpy(), F.leaky_relu(x @ layer.weight.T + layer.bias, 0.1).numpy(),
                               rtol=1e-6)
    assert F.activation_name(Leaky(0.1)) is None and F.activation_name(F.tanh) == "tanh"
