"""The public names: every one DESIGN.md's API contract lists exists, and every public name is documented."""

import inspect

import pytest

import minifb as mf
import minifb.functional as F
import minifb.models as models
import minifb.nn as nn
import minifb.optim as optim

MODULES = {"minifb": mf, "minifb.functional": F, "minifb.nn": nn, "minifb.optim": optim, "minifb.models": models}

CONTRACT = {
    "minifb": "Tensor tensor zeros ones randn rand manual_seed no_grad save load",
    "minifb.functional": ("linear conv2d conv_transpose2d max_pool2d avg_pool2d relu sigmoid tanh softmax "
                          "log_softmax cross_entropy mse_loss concat stack dropout"),
    "minifb.nn": ("Module Dense Conv ConvTranspose MaxPool MeanPool Flatten Dropout BatchNorm Lambda Chain "
                  "SkipConnection Parallel Splitter Merger FeedbackChain FeedbackTree Recur RNNCell LSTMCell "
                  "GRUCell RNN LSTM GRU unroll LRN"),
    "minifb.optim": "SGD Adam clip_grad_norm",
    "minifb.models": "lenet5 lenet5_fb spoerer",
}


def _public(module):
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    return [(n, getattr(module, n)) for n in names if not inspect.ismodule(getattr(module, n))]


@pytest.mark.parametrize("module_name", sorted(CONTRACT))
def test_the_contracts_names_exist(module_name):
    module = MODULES[module_name]
    missing = [n for n in CONTRACT[module_name].split() if not hasattr(module, n)]
    assert not missing, f"{module_name} lacks {missing}"


@pytest.mark.parametrize("module_name", sorted(MODULES))
def test_every_public_name_and_method_has_a_docstring(module_name):
    undocumented = []
    for name, obj in _public(MODULES[module_name]):
        if not (callable(obj) or inspect.isclass(obj)):
            continue
        if not (inspect.getdoc(obj) or "").strip():
            undocumented.append(name)
        if inspect.isclass(obj):
            undocumented += [f"{name}.{m}" for m, v in vars(obj).items()
                             if not m.startswith("_") and callable(v) and not (v.__doc__ or "").strip()]
    assert not undocumented, f"{module_name}: no docstring on {undocumented}"


TENSOR_CONTRACT = "backward detach to numpy sum mean max reshape transpose"


def _contract_objects():
    for module_name, names in sorted(CONTRACT.items()):
        for name in names.split():
            yield f"{module_name}.{name}", getattr(MODULES[module_name], name)
    for name in TENSOR_CONTRACT.split():
        yield f"Tensor.{name}", getattr(mf.Tensor, name)


@pytest.mark.parametrize("qualname, obj", list(_contract_objects()), ids=lambda v: v if isinstance(v, str) else "")
def test_the_contracts_names_have_google_style_docstrings(qualname, obj):
    """DESIGN.md: "one-line summary, shapes in Args/Returns, the formula, a short example"."""
    doc = inspect.getdoc(obj) or ""
    target = obj.__init__ if inspect.isclass(obj) else obj
    if inspect.isclass(obj):
        doc += "\n" + (inspect.getdoc(obj.__init__) if "__init__" in vars(obj) else "")
    try:
        takes = [p for p in inspect.signature(target).parameters if p not in ("self", "cls")]
    except (TypeError, ValueError):
        takes = []
    summary = doc.strip().split("\n\n")[0]
    problems = [what for what, ok in (
        ("a one-line summary", summary and "\n" not in summary),
        ("Args:", "Args:" in doc or not takes),
        ("Returns:", inspect.isclass(obj) or "Returns:" in doc or "Yields:" in doc),
        ("an example (>>>)", ">>>" in doc)) if not ok]
    assert not problems, f"{qualname}'s docstring lacks {problems}"


def test_submodules_are_attributes_after_a_plain_import():
    """``import minifb as mf`` is enough for ``mf.nn``, ``mf.optim``, ``mf.models`` (as ``torch.nn`` is)."""
    import subprocess
    import sys

    code = "import minifb as mf; print(mf.nn.Dense.__name__, mf.optim.SGD.__name__, mf.models.lenet5.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["Dense", "SGD", "lenet5"]


@pytest.mark.parametrize("call, exc", [
    (lambda: mf.zeros(2, 3)[5], IndexError),                      # ops/movement.GetItem
    (lambda: mf.Tensor("abc"), TypeError),                         # tensor._as_array
    (lambda: nn.Chain(nn.Dense(2, 2))[5], IndexError),             # nn.containers.LayerSequence.__getitem__
    (lambda: optim.clip_grad_norm(5, 1.0), TypeError),             # optim.clip_grad_norm
    (lambda: mf.save(nn.Dense(2, 2), 5), TypeError),               # serialization._check_path
])
def test_rewrapped_errors_do_not_chain_the_internal_one(call, exc):
    # the new message says it all: no "During handling of the above exception, another exception occurred"
    with pytest.raises(exc) as info:
        call()
    assert info.value.__cause__ is None and info.value.__suppress_context__
