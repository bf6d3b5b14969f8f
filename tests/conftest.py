"""Shared fixtures: the device parametrisation and the float64 tensor factory."""

import numpy as np
import pytest

import minifb as mf
from minifb import backend

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not backend.cuda_available(),
                                                                reason="needs CuPy and an NVIDIA GPU"))]


@pytest.fixture(params=DEVICES)
def device(request):
    """Run a test once per device; the GPU run is skipped without CuPy and a GPU."""
    return request.param


@pytest.fixture
def rand64():
    """Factory of float64 tensors that require grad: ``rand64(3, 4)``."""
    rng = np.random.default_rng(1234)

    def make(*shape, device="cpu", requires_grad=True):
        return mf.tensor(rng.standard_normal(shape), dtype="float64", requires_grad=requires_grad, device=device)

    return make


@pytest.fixture
def kernel_launches(monkeypatch):
    """Record the names of the kernels launched during the test."""
    from minifb import kernels

    names = []
    real = kernels.launch

    def recording(file, name, *args, **kw):
        names.append(name)
        return real(file, name, *args, **kw)

    monkeypatch.setattr(kernels, "launch", recording)
    return names


@pytest.fixture
def emulated_kernel_launches(kernel_launches):
    """:func:`kernel_launches` for a test that runs the CPU emulation: skipped without a C++ compiler."""
    import os
    import shutil

    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("kernel emulation needs a C++ compiler")
    return kernel_launches
