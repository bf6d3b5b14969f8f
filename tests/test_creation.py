"""Creation functions: dtypes, devices, seeding."""

import numpy as np
import pytest

import minifb as mf


def test_default_dtype_is_float32():
    assert mf.tensor([1.0, 2.0]).dtype == np.float32
    assert mf.zeros(2, 3).dtype == np.float32 and mf.zeros((2, 3)).shape == (2, 3)
    assert mf.randn(4).dtype == np.float32 and mf.rand(4).dtype == np.float32
    assert mf.tensor([1, 2]).dtype.kind == "i"
    assert mf.ones(2, dtype="float64").dtype == np.float64


def test_tensor_copies_its_input():
    a = np.zeros(3, dtype=np.float32)
    t = mf.tensor(a)
    a[0] = 1
    assert t.numpy()[0] == 0


def test_manual_seed_makes_random_reproducible():
    mf.manual_seed(7)
    a = mf.randn(5).numpy()
    mf.manual_seed(7)
    np.testing.assert_array_equal(a, mf.randn(5).numpy())
    assert not np.array_equal(a, mf.randn(5).numpy())


def test_bad_shapes_and_devices():
    with pytest.raises(ValueError, match=r"zeros: shape must be non-negative integers, got \(-1,\)"):
        mf.zeros(-1)
    with pytest.raises(ValueError, match="unknown device"):
        mf.zeros(2, device="gpu0")
    if not mf.cuda_available():
        with pytest.raises(RuntimeError, match="CuPy"):
            mf.zeros(2, device="cuda")


def test_like_and_arange():
    x = mf.randn(2, 3, dtype="float64")
    assert mf.zeros_like(x).dtype == np.float64 and mf.ones_like(x).numpy().sum() == 6
    np.testing.assert_array_equal(mf.arange(4).numpy(), [0, 1, 2, 3])
    assert mf.full((2, 2), 3.0).numpy().sum() == 12


def test_tensor_from_a_nested_list_of_tensors():
    t = mf.tensor([mf.tensor(1.0), mf.tensor(2.0)])
    assert t.dtype == np.float32 and t.shape == (2,)
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0])
    rows = [[mf.tensor([1.0, 2.0]), mf.tensor([3.0, 4.0])], [mf.ones(2), mf.zeros(2)]]
    nested = mf.tensor(rows)
    assert nested.shape == (2, 2, 2)
    np.testing.assert_array_equal(nested.numpy()[0], [[1, 2], [3, 4]])
    losses = [(mf.ones(3, requires_grad=True) * i).sum() for i in range(3)]
    stacked = mf.tensor(losses)
    assert not stacked.requires_grad and stacked.numpy().tolist() == [0.0, 3.0, 6.0]
    assert mf.tensor([mf.tensor(1), mf.tensor(2)]).dtype.kind == "i"


def test_arange_with_float_arguments_gives_float32():
    t = mf.arange(0.0, 1.0, 0.25)
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t.numpy(), [0.0, 0.25, 0.5, 0.75])
    assert mf.arange(0, 1, 0.5).dtype == np.float32 and mf.arange(2.0).dtype == np.float32
    assert mf.arange(3).dtype == np.int64 and mf.arange(np.int32(3)).dtype == np.int64
    assert mf.arange(3, dtype="float64").dtype == np.float64


@pytest.mark.parametrize("start, stop, step", [(1e6, 1e6 + 10, 0.01), (100.0, 101.0, 0.1), (0.5, -3, -0.7),
                                              (0, 2, 0.3), (-1e-3, 1e-3, 1e-5), (7, 1e8, 1234567.5)])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int64"])
def test_arange_with_a_float_step_is_start_plus_i_step_rounded_once(start, stop, step, dtype):
    # NumPy's own arange steps in the target dtype: float32 1e6 + 0.01 stays 1e6 (a run of 1000 equal values)
    n = int(np.ceil((stop - start) / step))
    exact = start + np.arange(n, dtype=np.float64) * step
    if dtype == "float16" and np.abs(exact).max() > np.finfo(np.float16).max:
        pytest.skip("outside float16's range")
    want = exact.astype(dtype)
    got = mf.arange(start, stop, step, dtype=dtype).numpy()
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, want)


def test_arange_matches_pytorch_for_float_ranges():
    torch = pytest.importorskip("torch")
    for args in [(1e6, 1e6 + 10, 0.01), (100.0, 101.0, 0.1), (0.5, -3, -0.7), (0, 2, 0.3)]:
        ours = mf.arange(*args, dtype="float64").numpy()
        np.testing.assert_allclose(ours, torch.arange(*args, dtype=torch.float64).numpy(), rtol=1e-15, atol=0)
        ours = mf.arange(*args).numpy()   # float32: one ulp apart at most (PyTorch rounds its own way)
        np.testing.assert_allclose(ours, torch.arange(*args).numpy(), rtol=2 ** -23, atol=0)


@pytest.mark.parametrize("fn", [mf.randn, mf.rand])
def test_random_tensors_in_every_floating_dtype(fn, device):
    for dtype in ("float16", "float32", "float64"):
        t = fn(3, 4, dtype=dtype, device=device, requires_grad=True)
        assert t.dtype == np.dtype(dtype) and t.shape == (3, 4) and t.device == device and t.requires_grad
    mf.manual_seed(3)
    half = fn(1000, dtype="float16", device=device).numpy()
    mf.manual_seed(3)
    single = fn(1000, dtype="float32", device=device).numpy()
    np.testing.assert_allclose(half, single, rtol=1e-3, atol=1e-3)   # drawn in float32, then rounded
    for bad in ("int64", "bool", "complex64"):
        with pytest.raises(TypeError, match=rf"{fn.__name__}: dtype must be a floating-point dtype.*{bad}"):
            fn(2, dtype=bad, device=device)


def test_rand_in_float16_stays_below_one(device):
    """Rounding a float32 draw to float16 would give 1.0 for about 1 draw in 4000: [0, 1) must hold."""
    mf.manual_seed(0)
    values = mf.rand(100_000, dtype="float16", device=device).numpy()
    assert values.min() >= 0 and values.max() < 1


# ---- bad arguments refused where they are passed (audit of silent and unclear errors) -----------------
@pytest.mark.parametrize("fn", [mf.zeros, mf.ones, mf.randn, mf.rand])
@pytest.mark.parametrize("shape", [(True, 2), (2, False), (2.0, 3), (2, 2.5), ((2, 3.0),), (None,), ("2",)])
def test_sizes_must_be_integers(fn, shape):
    with pytest.raises(ValueError, match=rf"{fn.__name__}: shape must be non-negative integers, got"):
        fn(*shape)
    assert fn(np.int64(2), 3).shape == (2, 3) and fn([2, 3]).shape == (2, 3) and fn().shape == ()


def test_full_checks_its_shape_and_value():
    with pytest.raises(ValueError, match=r"full: shape must be non-negative integers, got \(-1,\)"):
        mf.full((-1,), 1.0)
    with pytest.raises(ValueError, match=r"full: shape must be non-negative integers, got \(True,\)"):
        mf.full(True, 1.0)
    for value in (None, "a", [1.0], mf.tensor([1.0])):
        with pytest.raises(TypeError, match=r"full: value must be a number, got"):
            mf.full((2,), value)
    assert mf.full(2, mf.tensor([1.0, 4.0]).max()).numpy().tolist() == [4.0, 4.0]   # a 0-d Tensor is a number
    assert mf.full(3, 2).numpy().tolist() == [2.0, 2.0, 2.0]
    assert mf.full((2,), True, dtype="bool").numpy().tolist() == [True, True]
    assert mf.full((1,), 2 ** 60 + 1, dtype="int64").numpy().tolist() == [2 ** 60 + 1]


@pytest.mark.parametrize("data, got", [
    (None, "NoneType"), ("abc", "str"), ({"a": 1}, "dict"), (["a", "b"], r"list of str \(NumPy dtype <U1\)"),
    (np.array([1, "a"], dtype=object), "an array of dtype object"),
    ([None, 1.0], r"list of NoneType \(NumPy dtype object\)"),
    (np.array(["1.0"]), "an array of dtype <U3"), (b"x", "bytes"),
])
def test_tensor_refuses_data_that_is_not_numbers(data, got):
    with pytest.raises(TypeError, match=rf"^tensor: cannot make a tensor from {got}: the data must be numbers or "
                                        r"booleans"):
        mf.tensor(data)
    with pytest.raises(TypeError, match=r"^tensor: cannot make a tensor from"):
        mf.tensor(data, dtype="float32")   # not converted by astype either


@pytest.mark.parametrize("data", [[[1, 2], [3]], [[1.0], 2.0], [mf.ones(2), mf.ones(3)]])
def test_tensor_of_a_ragged_list_says_the_rows_differ(data):
    with pytest.raises(ValueError, match=r"tensor: the nested list is ragged \(its rows differ in length\)"):
        mf.tensor(data)


@pytest.mark.parametrize("call", [lambda: mf.zeros(2, dtype="bogus"), lambda: mf.ones(2, dtype="bogus"),
                                  lambda: mf.full(2, 1.0, dtype="bogus"), lambda: mf.tensor([1.0], dtype="bogus"),
                                  lambda: mf.randn(2, dtype="bogus"), lambda: mf.rand(2, dtype="bogus"),
                                  lambda: mf.arange(3, dtype="bogus"), lambda: mf.zeros_like(mf.ones(2), dtype="bogus"),
                                  lambda: mf.zeros(2, dtype=object), lambda: mf.tensor([1], dtype=str)])
def test_unknown_dtypes_name_the_function(call):
    with pytest.raises(TypeError, match=r"^\w+: dtype must be a numeric NumPy dtype .* got "):
        call()


@pytest.mark.parametrize("value", [np.int64(3), np.float64("nan"), np.zeros(2), mf.ones(2)],
                         ids=["int64 scalar", "float64 scalar", "array", "Tensor"])
@pytest.mark.parametrize("fn", [lambda d: mf.zeros(2, dtype=d), lambda d: mf.randn(2, dtype=d),
                                lambda d: mf.tensor([1.0], dtype=d), lambda d: mf.arange(3, dtype=d)],
                         ids=["zeros", "randn", "tensor", "arange"])
def test_a_value_is_not_taken_for_its_dtype(fn, value):
    # np.dtype(v) reads a value's own dtype; PyTorch refuses a value where a dtype goes
    with pytest.raises(TypeError, match=r"^\w+: dtype must be a numeric NumPy dtype"):
        fn(value)


@pytest.mark.parametrize("dtype, want", [("float64", np.float64), (np.float64, np.float64), (float, np.float64),
                                         (int, np.int64), (bool, np.bool_), (np.dtype("int32"), np.int32),
                                         (mf.float32, np.float32)])
def test_dtypes_are_taken_as_names_types_or_numpy_dtypes(dtype, want):
    assert mf.zeros(2, dtype=dtype).dtype == want


@pytest.mark.parametrize("fn", [mf.zeros_like, mf.ones_like])
@pytest.mark.parametrize("t, got", [(None, "NoneType"), (np.ones((2, 3)), r"ndarray \(wrap arrays with mf.tensor\)"),
                                    ([1.0], "list")])
def test_like_functions_need_a_tensor(fn, t, got):
    with pytest.raises(TypeError, match=rf"{fn.__name__}: argument 't' must be a minifb Tensor, got {got}"):
        fn(t)


@pytest.mark.parametrize("args, error, match", [
    ((0, 5, 0), ValueError, r"arange: step must not be 0"),
    ((0, 5, 0.0), ValueError, r"arange: step must not be 0"),
    (("a",), TypeError, r"arange: stop must be a number, got 'a'"),
    ((None,), TypeError, r"arange: stop must be a number, got None"),
    ((0, 5, "1"), TypeError, r"arange: step must be a number, got '1'"),
    ((True,), TypeError, r"arange: stop must be a number, got True"),
    ((float("inf"),), ValueError, r"arange: start, stop and step must be finite, got \(0, inf, 1\)"),
    ((0, 1, float("nan")), ValueError, r"arange: start, stop and step must be finite, got \(0, 1, nan\)"),
])
def test_arange_refuses_bad_bounds(args, error, match):
    with pytest.raises(error, match=match):
        mf.arange(*args)


def test_tensor_checks_an_arrays_dtype_before_copying_it_and_arange_takes_0d_values():
    # CuPy refuses an object array with its own ValueError: the check has to come before the copy
    from unittest import mock

    with mock.patch("minifb.backend.to_numpy", side_effect=AssertionError("copied before the check")):
        with pytest.raises(TypeError, match=r"^tensor: cannot make a tensor from an array of dtype <U1"):
            mf.tensor(np.array(["a", "b"]))
    assert mf.arange(np.array(3)).numpy().tolist() == [0, 1, 2]
    assert mf.arange(mf.tensor(2.0)).dtype == np.float32 and mf.arange(mf.tensor(4)).dtype == np.int64


# ---------------------------------------------------------------- found by mutation testing (session 13)
def test_like_functions_take_a_dtype():                                   # kills K2
    x = mf.zeros(2, 3)
    assert mf.ones_like(x, dtype="int64").dtype == np.int64
    assert mf.zeros_like(x, dtype="float64").dtype == np.float64
    np.testing.assert_array_equal(mf.ones_like(x, dtype="bool").numpy(), np.ones((2, 3), bool))


@pytest.mark.parametrize("fn", [mf.zeros, mf.ones, mf.randn, mf.rand])
def test_a_size_of_zero_gives_an_empty_tensor(fn):                        # kills K3
    assert fn(0, 3).shape == (0, 3) and fn((2, 0)).shape == (2, 0)
    assert mf.full(0, 1.0).shape == (0,)


@pytest.mark.parametrize("make", [lambda: mf.full((2, 2), 0.5, requires_grad=True),
                                  lambda: mf.zeros(2, 2, requires_grad=True),
                                  lambda: mf.ones(2, 2, requires_grad=True)])
def test_constant_tensors_record_gradients_when_asked(make):               # kills K6
    t = make()
    assert t.requires_grad
    (t * 3.0).sum().backward()
    np.testing.assert_array_equal(t.grad, np.full((2, 2), 3.0, np.float32))


# ---------------------------------------------------------------- audit 14
@pytest.mark.parametrize("data, number", [([2 ** 70], 2 ** 70), (2 ** 70, 2 ** 70), ([[1, 2], [3, -(2 ** 63) - 1]],
                                                                                       -(2 ** 63) - 1)])
def test_an_integer_past_64_bits_is_named_as_too_large(data, number):
    # NumPy keeps it as an object, which the message used to call "a list of NoneType"
    with pytest.raises(OverflowError, match=rf"^tensor: the integer {number} does not fit in int64 \(nor uint64\)"):
        mf.tensor(data)
    with pytest.raises(OverflowError, match=rf"^Tensor\(\): the integer {number} does not fit in int64"):
        mf.Tensor(data)
    assert mf.tensor([2 ** 64 - 1]).dtype == np.uint64     # what fits 64 bits is kept, as NumPy makes it


_WITH_DEVICE = {"zeros": lambda d: mf.zeros(2, device=d), "ones": lambda d: mf.ones(2, device=d),
                "full": lambda d: mf.full(2, 1.0, device=d), "arange": lambda d: mf.arange(2, device=d),
                "randn": lambda d: mf.randn(2, device=d), "rand": lambda d: mf.rand(2, device=d),
                "tensor": lambda d: mf.tensor([1.0, 2.0], device=d)}


@pytest.mark.parametrize("make", _WITH_DEVICE.values(), ids=_WITH_DEVICE.keys())
@pytest.mark.parametrize("device", [0, "", False])
def test_a_falsy_device_is_refused_by_every_creation_function(make, device):
    """zeros/ones/full/arange read ``device or "cpu"``, so 0, "" and False gave a CPU tensor where randn,
    rand and tensor refused them: only None means the default."""
    with pytest.raises(ValueError, match=rf"unknown device {device!r}"):
        make(device)
    assert make(None).device == "cpu"
