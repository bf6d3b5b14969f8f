"""Module (parameter discovery, state dicts, modes, devices, repr) and the containers."""

import operator
import re

import numpy as np
import pytest

import minifb as mf
from minifb import backend, nn


class Custom(nn.Module):
    """Parameters in a plain attribute, a list, a tuple and a dict; no super().__init__()."""

    def __init__(self):
        self.w = nn.Parameter(np.ones((2, 3), np.float32))
        self.blocks = [nn.Dense(3, 4), (nn.Dense(4, 4), nn.Parameter(np.zeros(4, np.float32)))]
        self.heads = {"a": nn.Dense(4, 1), "b": nn.Dense(4, 2, bias=False)}
        self.stats = nn.Buffer(np.zeros(3, np.float32))
        self._private = nn.Dense(9, 9)      # underscore attributes are not walked
        self.note = "not a tensor"

    def forward(self, x):
        return x


def test_parameters_found_through_attributes_lists_tuples_dicts():
    names = [n for n, _ in Custom().named_parameters()]
    assert names == [
        "w",
        "blocks.0.weight", "blocks.0.bias",
        "blocks.1.0.weight", "blocks.1.0.bias",
        "blocks.1.1",
        "heads.a.weight", "heads.a.bias",
        "heads.b.weight",
    ]


def test_parameter_order_is_deterministic_and_buffers_are_separate():
    a, b = Custom(), Custom()
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    assert [n for n, _ in a.named_buffers()] == ["stats"]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in a.parameters())
    assert not any(b is p for p in a.parameters() for b in a.buffers())
    assert "stats" in a.state_dict() and "w" in a.state_dict()


def test_shared_parameter_counted_once():
    dense = nn.Dense(3, 3)
    chain = nn.Chain(dense, dense)
    assert [n for n, _ in chain.named_parameters()] == ["layers.0.weight", "layers.0.bias"]
    assert chain.num_parameters() == 12


def test_parameter_conversion():
    p = nn.Parameter([1, 2, 3])
    assert p.dtype == np.float32 and p.requires_grad
    t = mf.randn(3)
    assert nn.Parameter(t).data is t.data
    assert nn.Parameter(np.zeros(2, np.float64)).dtype == np.float64
    assert "Parameter(" in repr(p)


def test_state_dict_round_trip():
    mf.manual_seed(0)
    a = nn.Chain(nn.Dense(4, 6, mf.relu), nn.BatchNorm(6), nn.Dense(6, 2))
    a(mf.randn(8, 4))                       # moves the running statistics away from their defaults
    mf.manual_seed(1)
    b = nn.Chain(nn.Dense(4, 6, mf.relu), nn.BatchNorm(6), nn.Dense(6, 2))
    sd = a.state_dict()
    assert list(sd) == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
                        "layers.1.running_mean", "layers.1.running_var", "layers.1.num_batches_tracked",
                        "layers.2.weight", "layers.2.bias"]   # PyTorch's names and order
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    x = mf.randn(5, 4)
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    # state_dict holds copies: changing it leaves the module alone
    sd["layers.0.weight"].data[:] = 7
    assert not np.any(a.layers[0].weight.numpy() == 7)


def test_load_state_dict_accepts_numpy_and_keeps_dtype():
    d = nn.Dense(2, 2)
    d.load_state_dict({"weight": np.eye(2), "bias": [1.0, 2.0]})
    assert d.weight.dtype == np.float32
    np.testing.assert_array_equal(d.weight.numpy(), np.eye(2))
    np.testing.assert_array_equal(d.bias.numpy(), [1, 2])


def test_load_state_dict_errors_list_every_problem():
    d = nn.Chain(nn.Dense(2, 3), nn.Dense(3, 1))
    sd = d.state_dict()
    before = d.layers[0].weight.numpy().copy()
    bad = dict(sd)
    del bad["layers.1.bias"]
    bad["extra.weight"] = np.zeros(1)
    with pytest.raises(KeyError) as info:
        d.load_state_dict(bad)
    message = str(info.value)
    assert "missing keys: layers.1.bias" in message and "unexpected keys: extra.weight" in message

    bad = dict(sd)
    bad["layers.0.weight"] = np.zeros((4, 2))
    bad["layers.1.weight"] = np.zeros((1, 5))
    bad["layers.0.bias"] = np.full(3, 9.0)
    with pytest.raises(ValueError) as info:
        d.load_state_dict(bad)
    message = str(info.value)
    assert "layers.0.weight: expected shape (3, 2), got (4, 2)" in message
    assert "layers.1.weight: expected shape (1, 3), got (1, 5)" in message
    # nothing was loaded
    np.testing.assert_array_equal(d.layers[0].weight.numpy(), before)
    assert not np.any(d.layers[0].bias.numpy() == 9)


def test_load_state_dict_is_atomic_when_a_value_cannot_be_converted():
    d = nn.Chain(nn.Dense(2, 2), nn.Dense(2, 1))
    before = {k: v.numpy().copy() for k, v in d.state_dict().items()}
    bad = {"layers.0.weight": np.full((2, 2), 5.0), "layers.0.bias": np.array(["a", "b"]),
           "layers.1.weight": np.full((1, 2), 5.0), "layers.1.bias": np.array([{}], dtype=object)}
    with pytest.raises(ValueError) as info:
        d.load_state_dict(bad)
    message = str(info.value)
    assert "Chain.load_state_dict" in message
    assert "layers.0.bias" in message and "layers.1.bias" in message   # every bad key, by name
    assert "layers.0.weight" not in message
    # nothing was loaded, not even the keys before the bad one
    for k, v in d.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])


def test_load_state_dict_names_a_ragged_value():
    d = nn.Dense(2, 2)
    with pytest.raises(ValueError, match="bias"):
        d.load_state_dict({"weight": np.eye(2), "bias": [[1.0], [2.0, 3.0]]})


def test_load_state_dict_non_strict_reports_and_skips():
    d = nn.Dense(2, 3)
    result = d.load_state_dict({"weight": np.ones((3, 2)), "other": np.zeros(1)}, strict=False)
    assert result.missing_keys == ["bias"] and result.unexpected_keys == ["other"]
    np.testing.assert_array_equal(d.weight.numpy(), np.ones((3, 2)))


def test_train_eval_is_recursive():
    net = nn.Chain(nn.Dense(2, 2), nn.Chain(nn.Dropout(0.5), nn.BatchNorm(2)))
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    assert len(list(net.modules())) == 5


def test_zero_grad():
    net = nn.Dense(3, 2)
    net(mf.randn(4, 3)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_to_keeps_parameter_objects(device):
    net = nn.Chain(nn.Dense(3, 2), nn.BatchNorm(2))
    params = net.parameters()
    net(mf.randn(4, 3)).sum().backward()
    assert net.to(device) is net
    assert all(a is b for a, b in zip(params, net.parameters()))
    assert all(p.device == device and p.grad is not None and backend.device_of(p.grad) == device
               for p in params)
    assert all(b.device == device for b in net.buffers())
    assert net(mf.randn(4, 3, device=device)).device == device


def test_repr_shows_sub_modules_in_lists_tuples_and_dicts():
    assert repr(Custom()) == (
        "Custom(\n"
        "  blocks=[Dense(3, 4), (Dense(4, 4),)],\n"
        "  heads={'a': Dense(4, 1), 'b': Dense(4, 2, bias=False)},\n"
        ")")

    class Wide(nn.Module):
        def __init__(self):
            self.sizes = [1, 2]                                     # no modules: not shown
            self.pair = (nn.Dense(2, 2), nn.Dense(2, 3))
            self.stages = [nn.Conv(16, 32, 3, mf.relu, padding=1), nn.Conv(32, 64, 3, mf.relu, padding=1)]

    assert repr(Wide()) == (
        "Wide(\n"
        "  pair=(Dense(2, 2), Dense(2, 3)),\n"
        "  stages=[\n"
        "    Conv(16, 32, 3, relu, padding=1),\n"
        "    Conv(32, 64, 3, relu, padding=1),\n"
        "  ],\n"
        ")")


def test_repr_is_flux_like():
    merger = nn.Merger("s1", nn.Dense(5, 10, mf.relu), operator.add)
    assert repr(merger) == 'Merger("s1", Dense(5, 10, relu), +)'
    assert repr(nn.Chain(nn.Dense(2, 3, mf.tanh), mf.relu, nn.Flatten())) == \
        "Chain(Dense(2, 3, tanh), relu, Flatten())"
    assert repr(nn.Dense(2, 3, bias=False)) == "Dense(2, 3, bias=False)"
    assert repr(nn.Conv(3, 8, 3, mf.relu, padding=1)) == "Conv(3, 8, 3, relu, padding=1)"
    assert repr(nn.ConvTranspose(8, 3, (4, 2), stride=2)) == "ConvTranspose(8, 3, (4, 2), stride=2)"
    assert repr(nn.SkipConnection(nn.Dense(2, 2), operator.add)) == "SkipConnection(Dense(2, 2), +)"
    assert repr(nn.Parallel(operator.mul, nn.Dense(2, 2), nn.Dense(2, 2))) == \
        "Parallel(*, Dense(2, 2), Dense(2, 2))"
    assert repr(nn.MaxPool(2)) == "MaxPool(2)" and repr(nn.Dropout(0.25)) == "Dropout(0.25)"
    assert repr(nn.BatchNorm(4, mf.relu)) == "BatchNorm(4, relu)"
    assert repr(nn.LRN(5)) == "LRN(5, alpha=0.0001, beta=0.75, k=1.0)"
    net = nn.FeedbackChain(nn.Merger("fork1", nn.Dense(5, 10, mf.relu), operator.add),
                           nn.Dense(10, 5, mf.relu), nn.Splitter("fork1"))
    assert repr(net) == (
        "FeedbackChain(\n"
        '  Merger("fork1", Dense(5, 10, relu), +),\n'
        "  Dense(10, 5, relu),\n"
        '  Splitter("fork1"),\n'
        ")")
    assert repr(nn.LSTM(3, 4)) == "LSTM(3, 4)" and repr(nn.RNNCell(3, 4)) == "RNNCell(3, 4, tanh)"
    assert repr(nn.Recur(nn.GRUCell(2, 3))) == "Recur(GRUCell(2, 3))"


def test_default_repr_of_a_user_module():
    class Net(nn.Module):
        def __init__(self):
            self.body = nn.Dense(2, 2)
            self.scale = 3.0

    assert repr(Net()) == "Net(body=Dense(2, 2))"


# ---- containers --------------------------------------------------------------------------
def test_chain_indexing_and_slicing():
    layers = [nn.Dense(4, 5, mf.relu), nn.Dense(5, 6), nn.Dense(6, 2)]
    chain = nn.Chain(*layers)
    assert chain[0] is layers[0] and chain[-1] is layers[2] and len(chain) == 3
    head = chain[:2]
    assert isinstance(head, nn.Chain) and head.layers == layers[:2]
    assert isinstance(chain[1:2], nn.Chain)
    x = mf.randn(3, 4)
    np.testing.assert_allclose(chain(x).numpy(), chain[2:](head(x)).numpy(), rtol=1e-6)
    assert list(chain) == layers


def test_skip_connection_and_parallel():
    inner = nn.Dense(3, 3)
    x = mf.randn(2, 3)
    skip = nn.SkipConnection(inner, operator.add)
    np.testing.assert_allclose(skip(x).numpy(), (inner(x) + x).numpy(), rtol=1e-6)
    cat = nn.SkipConnection(inner, lambda a, b: mf.concat([a, b], axis=1))
    assert cat(x).shape == (2, 6)
    a, b = nn.Dense(3, 2), nn.Dense(3, 2)
    par = nn.Parallel(operator.mul, a, b)
    np.testing.assert_allclose(par(x).numpy(), (a(x) * b(x)).numpy(), rtol=1e-6)
    assert [n for n, _ in par.named_parameters()][0] == "layers.0.weight"
    with pytest.raises(ValueError, match="Parallel"):
        nn.Parallel(operator.add)


def test_parallel_indexing_slicing_len_and_iteration_as_chain():
    a, b, c = nn.Dense(3, 2), nn.Dense(3, 2), nn.Dense(3, 2)
    par = nn.Parallel(operator.add, a, b, c)
    assert par[0] is a and par[-1] is c and len(par) == 3 and list(par) == [a, b, c]
    head = par[:2]                                  # a new Parallel sharing the layers and the connection
    assert isinstance(head, nn.Parallel) and head.layers == [a, b] and head.connection is operator.add
    x = mf.randn(4, 3)
    np.testing.assert_allclose(head(x).numpy(), (a(x) + b(x)).numpy(), rtol=1e-6)
    assert repr(par[1:2]) == "Parallel(+, Dense(3, 2))"
    with pytest.raises(ValueError, match="Parallel"):   # an empty slice is no Parallel
        par[3:]


def test_chain_with_a_plain_function_and_lambda_layer():
    chain = nn.Chain(nn.Dense(2, 2), mf.relu, nn.Lambda(lambda t: t * 2))
    x = mf.randn(3, 2)
    expected = np.maximum(chain[0](x).numpy(), 0) * 2
    np.testing.assert_allclose(chain(x).numpy(), expected, rtol=1e-6)


# ---- the docstring examples are runnable documentation ------------------------------------------------
# ---- bad input (audit) -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["no", None, 0, 1.0])
def test_train_mode_must_be_a_bool(mode):
    d = nn.Dense(3, 4).eval()
    with pytest.raises(TypeError, match=r"^Dense.train: mode must be True or False, got "):
        d.train(mode)
    assert d.training is False                      # unchanged
    assert d.train(np.bool_(True)).training is True


def test_assigning_a_non_parameter_over_a_parameter_is_refused():
    d = nn.Dense(3, 4)
    with pytest.raises(TypeError, match=r"^Dense: cannot assign 'numpy.ndarray' as parameter 'weight' "
                                        r"\(nn.Parameter or None expected\)"):
        d.weight = np.ones((4, 3), np.float32)
    with pytest.raises(TypeError, match=r"cannot assign 'minifb.tensor.Tensor' as parameter 'bias'"):
        d.bias = mf.zeros(4)
    assert [n for n, _ in d.named_parameters()] == ["weight", "bias"]
    new = nn.Parameter(np.ones((4, 3), np.float32))
    d.weight = new                                  # a Parameter replaces a Parameter
    d.bias = None                                   # None removes it, as in PyTorch
    assert d.parameters() == [new]
    with pytest.raises(TypeError, match=r"cannot assign 'minifb.tensor.Tensor' as parameter 'bias'"):
        d.bias = mf.zeros(4)                         # a name that held a Parameter stays one after None
    d.bias = nn.Parameter(np.zeros(4, np.float32))
    del d.bias                                       # deleted, the name is free again (as in PyTorch)
    d.bias = mf.zeros(4)
    assert len(d.parameters()) == 1
    bn = nn.BatchNorm(2)
    with pytest.raises(TypeError, match=r"^BatchNorm: cannot assign 'numpy.ndarray' as buffer 'running_mean' "
                                        r"\(a Tensor or None expected\)"):
        bn.running_mean = np.zeros(2, np.float32)
    d.note = 3                                       # other attributes are free
    d.note = "x"


def test_a_tensor_assigned_to_a_buffer_stays_a_buffer_and_a_parameter_may_replace_it():
    # PyTorch's rules: a plain tensor under a buffer's name is kept as a buffer; a Parameter turns it into one
    bn = nn.BatchNorm(2)
    bn.running_mean = mf.ones(2)
    assert isinstance(bn.running_mean, nn.Buffer) and "running_mean" in dict(bn.named_buffers())
    np.testing.assert_array_equal(bn.state_dict()["running_mean"].numpy(), [1.0, 1.0])
    bn.running_var = nn.Parameter(np.ones(2, np.float32))
    assert "running_var" in dict(bn.named_parameters()) and "running_var" not in dict(bn.named_buffers())


def test_state_dict_lists_a_shared_parameter_under_every_name_as_pytorch_does():
    class Tied(nn.Module):
        def __init__(self):
            self.enc, self.dec = nn.Dense(4, 4), nn.Dense(4, 4)
            self.dec.weight = self.enc.weight
    m = Tied()
    assert list(m.state_dict()) == ["enc.weight", "enc.bias", "dec.weight", "dec.bias"]
    assert len(m.parameters()) == 3                  # the optimiser still sees it once
    sd = m.state_dict()
    sd["enc.weight"] = sd["dec.weight"] = mf.full((4, 4), 2.0)
    other = Tied()
    other.load_state_dict(sd)                        # strict: every name present
    np.testing.assert_array_equal(other.dec.weight.numpy(), np.full((4, 4), 2.0))
    assert other.dec.weight is other.enc.weight      # still tied
    torch = pytest.importorskip("torch")

    class TTied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc, self.dec = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
            self.dec.weight = self.enc.weight
    assert list(TTied().state_dict()) == list(m.state_dict())
    m.load_state_dict({k: v.detach().numpy() for k, v in TTied().state_dict().items()})


def test_two_tensors_under_one_dotted_name_are_refused():
    m = nn.Chain()
    m.heads = {1: nn.Dense(2, 2), "1": nn.Dense(2, 3)}      # both are named heads.1.weight
    with pytest.raises(ValueError, match=r"two different tensors are both named 'heads\.1\.weight'"):
        m.state_dict()
    assert len(m.parameters()) == 4


def test_a_container_that_holds_itself_is_walked_once():
    m = nn.Chain(nn.Dense(2, 2))
    loop = [nn.Dense(2, 3)]
    loop.append(loop)
    m.extra = loop
    assert len(m.parameters()) == 4
    assert list(m.state_dict()) == ["layers.0.weight", "layers.0.bias", "extra.0.weight", "extra.0.bias"]
    assert len(list(m.children())) == 2
    m.train(False)
    holder = nn.Module()
    holder.extra = loop
    assert "Dense(2, 3)" in repr(holder)            # shown once, no RecursionError


def test_parameter_and_buffer_refuse_non_numeric_data():
    for cls in (nn.Parameter, nn.Buffer):
        with pytest.raises(TypeError, match=rf"^{cls.__name__}: data must be a Tensor, an array or a \(nested\) "
                                            rf"list of real numbers, got 'abc'"):
            cls("abc")
    with pytest.raises(TypeError, match=r"^Parameter: requires_grad must be True or False, got 'x'"):
        nn.Parameter(np.zeros(2, np.float32), requires_grad="x")
    assert nn.Parameter(np.zeros(2, np.float32), requires_grad=False).requires_grad is False


@pytest.mark.parametrize("bad", [None, [1, 2], "weights"])
def test_load_state_dict_refuses_a_non_mapping(bad):
    with pytest.raises(TypeError, match=rf"^Dense.load_state_dict: state_dict must be a dict "
                                        rf"\{{name: Tensor or array\}}, got {type(bad).__name__}"):
        nn.Dense(3, 4).load_state_dict(bad)
    with pytest.raises(TypeError, match=r"^Dense.load_state_dict: strict must be True or False, got 'no'"):
        nn.Dense(3, 4).load_state_dict(nn.Dense(3, 4).state_dict(), strict="no")


def test_container_indexing_errors_name_the_container():
    chain = nn.Chain(nn.Dense(2, 2), nn.Dense(2, 2))
    with pytest.raises(IndexError, match=r"^Chain: index 5 is out of range for 2 layers"):
        chain[5]
    with pytest.raises(TypeError, match=r"^Chain: index must be an int or a slice, got 'a'"):
        chain["a"]
    with pytest.raises(IndexError, match=r"^Parallel: index -4 is out of range for 3 layers"):
        nn.Parallel(operator.add, *chain, nn.Dense(2, 2))[-4]


def test_parallel_connection_that_does_not_fit_the_branches():
    par = nn.Parallel(operator.add, nn.Dense(3, 2), nn.Dense(3, 2), nn.Dense(3, 2))
    with pytest.raises(TypeError, match=r"^Parallel\(\+, .*\): connection \+ failed on the 3 branch outputs, of "
                                        r"shapes \[\(4, 2\), \(4, 2\), \(4, 2\)\]: add expected 2 arguments"):
        par(mf.randn(4, 3))
    with pytest.raises(ValueError, match=r"^Parallel\(\+, Dense\(3, 2\), Dense\(3, 4\)\): connection \+ failed on "
                                         r"the 2 branch outputs, of shapes \[\(4, 2\), \(4, 4\)\]"):
        nn.Parallel(operator.add, nn.Dense(3, 2), nn.Dense(3, 4))(mf.randn(4, 3))
    with pytest.raises(ValueError, match=r"^SkipConnection\(Dense\(3, 2\), \+\): connection \+ failed on the "
                                         r"layer's output and the input, of shapes \[\(4, 2\), \(4, 3\)\]"):
        nn.SkipConnection(nn.Dense(3, 2), operator.add)(mf.randn(4, 3))


def test_containers_refuse_what_is_not_callable():
    with pytest.raises(TypeError, match=r"^Chain: layers\[1\] must be callable, got 5"):
        nn.Chain(nn.Dense(2, 2), 5)
    with pytest.raises(TypeError, match=r"^SkipConnection: connection must be callable, got 'add'"):
        nn.SkipConnection(nn.Dense(2, 2), "add")
    with pytest.raises(TypeError, match=r"^SkipConnection: layer must be callable, got 3"):
        nn.SkipConnection(3, operator.add)
    with pytest.raises(TypeError, match=r"^Parallel: connection must be callable, got None"):
        nn.Parallel(None, nn.Dense(2, 2))
    with pytest.raises(TypeError, match=r"^Parallel: layers\[0\] must be callable, got 2"):
        nn.Parallel(operator.add, 2)


@pytest.mark.parametrize("name", ["module", "layers", "containers", "feedback", "recurrent"])
def test_docstring_examples_run(name):
    import doctest
    import importlib

    from minifb import functional as F

    module = importlib.import_module(f"minifb.nn.{name}")
    mf.manual_seed(0)
    result = doctest.testmod(module, extraglobs={"mf": mf, "nn": nn, "F": F, "np": np},
                             optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_load_state_dict_copies_into_the_existing_arrays_as_pytorch_does():
    d = nn.Dense(3, 2)
    w = d.weight.data                               # an array taken before the load follows it
    alias = nn.Parameter(d.weight)                  # a parameter sharing the weight's values stays tied
    stale = (mf.ones(1, 3) @ d.weight.T).sum()      # recorded before the load
    sd = {"weight": np.full((2, 3), 2.0), "bias": np.zeros(2)}
    d.load_state_dict(sd)
    assert d.weight.data is w
    np.testing.assert_array_equal(w, np.full((2, 3), 2.0))
    np.testing.assert_array_equal(alias.numpy(), np.full((2, 3), 2.0))
    with pytest.raises(RuntimeError, match=r"updated in place after the forward pass"):
        stale.backward()                            # the values it used are gone


def test_a_tied_weight_saved_under_one_name_still_loads(tmp_path):
    # state dicts written before shared tensors were listed under every name hold a tied weight once
    class Tied(nn.Module):
        def __init__(self):
            self.enc, self.dec = nn.Dense(4, 4), nn.Dense(4, 4)
            self.dec.weight = self.enc.weight
    old_style = {k: v for k, v in Tied().state_dict().items() if k != "dec.weight"}
    m = Tied()
    assert m.load_state_dict(old_style).missing_keys == []
    np.testing.assert_array_equal(m.dec.weight.numpy(), old_style["enc.weight"].numpy())
    np.savez(tmp_path / "old.npz", **{k: v.numpy() for k, v in old_style.items()})
    mf.load(Tied(), tmp_path / "old.npz")
    with pytest.raises(KeyError, match=r"missing keys: dec.bias"):
        m.load_state_dict({k: v for k, v in old_style.items() if k != "dec.bias"})


def test_a_buffer_cannot_replace_a_parameter_and_a_copy_keeps_its_own_rules():
    import copy

    d = nn.Dense(2, 2)
    with pytest.raises(TypeError, match=r"cannot assign 'minifb.nn.module.Buffer' as parameter 'weight'"):
        d.weight = nn.Buffer(np.ones((2, 2), np.float32))   # it would drop the weight from parameters()
    e = copy.copy(d)
    del e.weight                                         # frees the name on the copy only
    e.weight = mf.ones(2, 2)
    with pytest.raises(TypeError, match=r"as parameter 'weight'"):
        d.weight = mf.ones(2, 2)
    m = nn.Merger("s", nn.Dense(2, 2), operator.add)      # a subclass with a _refuse helper of its own
    m.gain = nn.Parameter(np.ones(2, np.float32))
    with pytest.raises(TypeError, match=r"^Merger: cannot assign 'numpy.ndarray' as parameter 'gain'"):
        m.gain = np.ones(2)


# ---------------------------------------------------------------- found by mutation testing (session 13)
def test_parallel_slice_keeps_a_connection_other_than_add():
    a, b, c = nn.Dense(3, 2), nn.Dense(3, 2), nn.Dense(3, 2)
    head = nn.Parallel(operator.mul, a, b, c)[:2]
    assert head.connection is operator.mul
    x = mf.randn(4, 3)
    np.testing.assert_allclose(head(x).numpy(), (a(x) * b(x)).numpy(), rtol=1e-6)
    assert repr(head) == "Parallel(*, Dense(3, 2), Dense(3, 2))"


def test_a_shared_module_is_listed_once_by_named_modules():
    shared = nn.Dense(2, 2)
    inner = nn.Chain(shared, nn.Dropout(0.5))
    net = nn.Chain(shared, inner, shared)
    assert [name for name, _ in net.named_modules()] == ["", "layers.0", "layers.1", "layers.1.layers.1"]
    assert len(list(net.modules())) == 4          # as PyTorch's modules(): each module once


def test_a_shared_module_is_one_child():
    shared, other = nn.Dense(2, 2), nn.Dense(2, 2)
    children = list(nn.Chain(shared, other, shared).children())
    assert len(children) == 2 and children[0] is shared and children[1] is other


# ---------------------------------------------------------------- found by the fuzz audit (session 14)
@pytest.mark.parametrize("cls", [nn.Parameter, nn.Buffer])
@pytest.mark.parametrize("data", [None, [None, 1.0], [[None]], "3", ["1", "2.5"], b"3", [1j]], ids=repr)
def test_parameter_and_buffer_refuse_what_numpy_would_parse_or_turn_into_nan(cls, data):
    # None gave tensor(nan), [None, 1.0] [nan, 1.], "3" and b"3" 3.0, ["1", "2.5"] [1., 2.5]
    with pytest.raises(TypeError, match=rf"^{cls.__name__}: data must be a Tensor, an array or a \(nested\) "
                                        rf"list of real numbers, got "):
        cls(data)


@pytest.mark.parametrize("cls", [nn.Parameter, nn.Buffer])
@pytest.mark.parametrize("data", [np.array(["a"]), np.array([None]), np.array([1.0], dtype=object),
                                  np.array(["2020-01-01"], dtype="datetime64[D]"), np.array([b"3"])],
                         ids=lambda a: str(a.dtype))
def test_parameter_and_buffer_refuse_arrays_that_hold_no_numbers(cls, data):
    # a Buffer kept them as they were (an array of strings or objects in the state dict)
    with pytest.raises(TypeError, match=rf"^{cls.__name__}: data must hold numbers \(boolean, integer, "
                                        rf"floating or complex\), got an array of dtype {re.escape(str(data.dtype))}$"):
        cls(data)


def test_parameter_and_buffer_still_take_every_kind_of_number():
    from decimal import Decimal
    from fractions import Fraction
    for cls in (nn.Parameter, nn.Buffer):
        for data in ([1, 2], [True, False], (1.5, 2), [Fraction(1, 2), Decimal("1.5"), 2], [mf.tensor(1.0), 2],
                     3, np.float16(2), [[1.0], [float("nan")]]):
            t = cls(data)
            assert t.dtype == np.float32
            np.testing.assert_array_equal(t.numpy(), np.asarray(data, np.float64).astype(np.float32))
    for data in (np.arange(3), np.array([True]), np.array([1j]), np.zeros((), np.int64)):
        assert nn.Buffer(data).dtype == data.dtype          # a Buffer keeps an array's dtype
    with pytest.raises(ValueError, match=r"^Buffer: data holds a number beyond float's range"):
        nn.Buffer([10**400])


@pytest.mark.parametrize("data", [np.array([1, 2]), np.array([True]), np.array([1j]), mf.tensor([1, 2])],
                         ids=lambda a: str(a.dtype))
def test_parameter_dtype_error_names_parameter(data):
    with pytest.raises(TypeError, match=rf"^Parameter: only floating-point tensors can require gradients, got "
                                        rf"dtype {data.dtype} \(pass requires_grad=False to keep it\)$"):
        nn.Parameter(data)
    assert nn.Parameter(data, requires_grad=False).dtype == data.dtype


@pytest.mark.parametrize("device", ["gpu", "cuda:1", "", 0])
def test_to_an_unknown_device_names_the_module(device):
    with pytest.raises(ValueError, match=rf"^Dense\.to: unknown device {re.escape(repr(device))}: expected 'cpu', "
                                         r"'cuda' or 'cuda:0'$"):
        nn.Dense(3, 4).to(device)
    with pytest.raises(ValueError, match=r"^Chain\.to: unknown device 'gpu'"):
        nn.Chain(nn.Dense(3, 4)).to("gpu")


def test_to_cuda_without_a_gpu_names_the_module():
    if backend.cuda_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match=r"^Dense\.to: device 'cuda' requested but CuPy with a GPU is not "):
        nn.Dense(3, 4).to("cuda")
