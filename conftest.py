"""Root pytest configuration: the names every docstring example in ``minifb/`` may assume.

The examples in the library's docstrings run as doctests (``pyproject.toml`` adds
``--doctest-modules`` and collects ``minifb/``). They are written as a reader would
type them after ``import minifb as mf`` and ``from minifb import nn, functional as F, ...``;
this fixture provides those names and only those (an example needing another
imports it, as a reader would), seeds the generators so printed values are
stable, and runs each example in a temporary directory so none writes into the checkout.
"""

import numpy as np
import pytest

import minifb as mf
from minifb import functional as F
from minifb import models, nn, optim


@pytest.fixture(autouse=True)
def _doctest_names(request, doctest_namespace):
    """Inject ``mf, nn, F, optim, models, np`` and, for doctests only, seed and change into a temp dir."""
    doctest_namespace.update(mf=mf, nn=nn, F=F, optim=optim, models=models, np=np)
    if isinstance(request.node, pytest.DoctestItem):
        # Only those names: not the defining module's globals, which doctest would otherwise lend the example
        # (a bare ``SGD(...)`` would pass here and fail for a reader who copies it).
        globs = request.node.dtest.globs
        kept = {k: globs[k] for k in ("__name__", "__builtins__") if k in globs}
        globs.clear()
        globs.update(kept)
        mf.manual_seed(0)
        np.random.seed(0)
        request.getfixturevalue("monkeypatch").chdir(request.getfixturevalue("tmp_path"))
    yield
