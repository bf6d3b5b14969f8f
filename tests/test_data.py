"""Tests for minifb.data: shipped digits, IDX loading, batching, corruptions."""

import gzip
import re
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minifb import data
from minifb.data import (
    Dataset,
    add_noise,
    batches,
    clutter,
    corrupt,
    debris,
    load,
    load_digits,
    load_mnist,
    resize_bilinear,
    salt_and_pepper,
)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def raw(digits):
    """Unstandardised [0, 1] train images and labels (a few hundred)."""
    return digits.unstandardise(digits.x_train[:300]), digits.y_train[:300]


# ---------------------------------------------------------------- digits


def test_load_digits_shapes_and_dtypes(digits):
    assert isinstance(digits, Dataset)
    assert digits.x_train.shape[1:] == (1, 28, 28)
    assert digits.x_test.shape[1:] == (1, 28, 28)
    assert len(digits.x_train) + len(digits.x_test) == 1797
    assert len(digits.x_train) == len(digits.y_train)
    assert len(digits.x_test) == len(digits.y_test)
    assert digits.x_train.dtype == np.float32 and digits.x_test.dtype == np.float32
    assert digits.y_train.dtype == np.int64 and digits.y_test.dtype == np.int64
    assert digits.classes == 10
    assert digits.image_shape == (1, 28, 28)
    assert abs(len(digits.x_test) / 1797 - 0.25) < 0.01
    labels = np.concatenate([digits.y_train, digits.y_test])
    for c in range(10):   # the documented stratified split: round(n_c * 0.25) of each class go to test
        assert (digits.y_test == c).sum() == round((labels == c).sum() * 0.25)
    assert (len(digits.x_train), len(digits.x_test)) == (1347, 450)   # as load_digits' docstring states


def test_load_digits_labels_all_present(digits):
    assert set(np.unique(digits.y_train)) == set(range(10))
    assert set(np.unique(digits.y_test)) == set(range(10))


def test_load_digits_stratified(digits):
    frac = np.bincount(digits.y_test, minlength=10) / (
        np.bincount(digits.y_test, minlength=10) + np.bincount(digits.y_train, minlength=10)
    )
    assert np.all(np.abs(frac - 0.25) < 0.02)


def test_load_digits_deterministic():
    a, b = load_digits(size=8, seed=3), load_digits(size=8, seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    c = load_digits(size=8, seed=4)
    assert not np.array_equal(a.y_train, c.y_train)


def test_load_digits_no_overlap_between_splits():
    ds = load_digits(size=8)
    tr = {r.tobytes() for r in ds.x_train}
    te = [r.tobytes() for r in ds.x_test]
    # The UCI data has a few exact duplicate images; the split is by index,
    # so only those may appear on both sides.
    assert sum(t in tr for t in te) <= 5


def test_standardisation(digits):
    assert abs(float(digits.x_train.mean())) < 1e-4
    assert abs(float(digits.x_train.std()) - 1.0) < 1e-4
    # Test split uses the train statistics: close to, not exactly, 0 / 1.
    assert abs(float(digits.x_test.mean())) < 0.1
    raw = digits.unstandardise(digits.x_train)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    np.testing.assert_allclose(digits.standardise(raw), digits.x_train, atol=1e-5)


def test_digits_size_8_matches_file_values():
    ds = load_digits(size=8)
    raw = ds.unstandardise(np.concatenate([ds.x_train, ds.x_test])) * 16
    # Original pixels are integers 0..16.
    np.testing.assert_allclose(raw, np.round(raw), atol=1e-4)
    assert raw.max() == pytest.approx(16, abs=1e-4)


def test_subset(digits):
    small = digits.subset(20, 10)
    assert small.x_train.shape == (20, 1, 28, 28) and small.y_test.shape == (10,)
    assert small.mean == digits.mean


def test_load_digits_bad_arguments():
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=1.5)
    with pytest.raises(ValueError, match="size"):
        load_digits(size=0)


@pytest.mark.parametrize("fraction, empty", [(0.999, "0 training images"), (0.001, "0 test images")])
def test_load_digits_refuses_an_empty_split(fraction, empty):
    with pytest.raises(ValueError) as info:
        load_digits(size=8, test_fraction=fraction)
    message = str(info.value)
    assert "test_fraction" in message and repr(fraction) in message and empty in message


# ---------------------------------------------------------------- resize


def test_resize_identity_8x8():
    rng = np.random.default_rng(0)
    x = rng.random((5, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(resize_bilinear(x, 8), x)


@pytest.mark.parametrize("size", [3, 8, 13, 28, 32])
def test_resize_preserves_constant(size):
    x = np.full((2, 1, 8, 8), 0.37, dtype=np.float32)
    out = resize_bilinear(x, size)
    assert out.shape == (2, 1, size, size) and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.37, atol=1e-6)


def test_resize_linear_ramp_and_range():
    ramp = np.tile(np.arange(8, dtype=np.float32), (8, 1))[None, None]
    out = resize_bilinear(ramp, 16)[0, 0]
    # Interior of an upsampled linear ramp is still linear (slope 0.5/pixel).
    np.testing.assert_allclose(np.diff(out[:, 1:-1], axis=1), 0.5, atol=1e-5)
    assert out.min() >= 0 and out.max() <= 7
    # Down-sampling by 2 averages neighbouring pairs.
    down = resize_bilinear(ramp, 4)[0, 0]
    np.testing.assert_allclose(down[0], [0.5, 2.5, 4.5, 6.5], atol=1e-5)


# ---------------------------------------------------------------- IDX / MNIST


def _idx_bytes(array, magic):
    array = np.asarray(array, dtype=np.uint8)
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write_mnist(directory, n_train=12, n_test=7, gz=False, side=28, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": (rng.integers(0, 256, (n_train, side, side)), 0x803),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10, 0x801),
        "t10k-images-idx3-ubyte": (rng.integers(0, 256, (n_test, side, side)), 0x803),
        "t10k-labels-idx1-ubyte": (np.arange(n_test)[::-1] % 10, 0x801),
    }
    for name, (arr, magic) in arrays.items():
        blob = _idx_bytes(arr, magic)
        if gz:
            with gzip.open(directory / (name + ".gz"), "wb") as fh:
                fh.write(blob)
        else:
            (directory / name).write_bytes(blob)
    return {k: np.asarray(v[0], dtype=np.uint8) for k, v in arrays.items()}


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_roundtrip(tmp_path, gz):
    arrays = _write_mnist(tmp_path, gz=gz)
    ds = load_mnist(str(tmp_path))
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_test.shape == (7, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    pixels = np.round(ds.unstandardise(ds.x_test)[:, 0] * 255)
    np.testing.assert_array_equal(pixels, arrays["t10k-images-idx3-ubyte"])
    assert abs(float(ds.x_train.mean())) < 1e-4


def test_mnist_resize_and_load_spec(tmp_path):
    _write_mnist(tmp_path, gz=True)
    ds = load(f"mnist:{tmp_path}", size=14)
    assert ds.x_train.shape == (12, 1, 14, 14)


def test_mnist_bad_magic_names_file(tmp_path):
    _write_mnist(tmp_path)
    bad = tmp_path / "train-labels-idx1-ubyte"
    blob = bytearray(bad.read_bytes())
    blob[2:4] = b"\x08\x03"  # an images magic in a labels file
    bad.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"^load_mnist: .*train-labels-idx1-ubyte.*magic"):
        load_mnist(str(tmp_path))


def test_mnist_truncated_and_mismatched(tmp_path):
    _write_mnist(tmp_path)
    img = tmp_path / "t10k-images-idx3-ubyte"
    img.write_bytes(img.read_bytes()[:-5])
    with pytest.raises(ValueError, match="^load_mnist: .*t10k-images-idx3-ubyte"):
        load_mnist(str(tmp_path))
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(3), 0x801))
    with pytest.raises(ValueError, match="^load_mnist: .*3 labels"):
        load_mnist(str(tmp_path))


def test_mnist_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="^load_mnist: .*train-images-idx3-ubyte"):
        load_mnist(str(tmp_path))


def test_load_spec():
    ds = load("digits", size=8, seed=1)
    assert ds.x_train.shape[1:] == (1, 8, 8)
    for spec in ["cifar", "mnist:", "", "digitz"]:
        with pytest.raises(ValueError, match="spec"):
            load(spec)


# ---------------------------------------------------------------- batches


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 60), batch_size=st.integers(1, 17), shuffle=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_batches_cover_each_index_once(n, batch_size, shuffle, seed):
    x = np.arange(n, dtype=np.float32).reshape(n, 1) * np.ones((1, 3), np.float32)
    y = np.arange(n)
    seen = []
    for xb, yb in batches(x, y, batch_size, shuffle=shuffle, rng=np.random.default_rng(seed)):
        assert 1 <= len(xb) <= batch_size and len(xb) == len(yb)
        np.testing.assert_array_equal(xb[:, 0], yb)  # x and y stay paired
        seen.extend(yb.tolist())
    assert sorted(seen) == list(range(n))
    assert len(seen) == n
    if not shuffle:
        assert seen == list(range(n))


def test_batches_shuffle_is_seeded():
    x = np.arange(100)
    a = [yb for _, yb in batches(x, x, 10, rng=np.random.default_rng(5))]
    b = [yb for _, yb in batches(x, x, 10, rng=np.random.default_rng(5))]
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
    assert not np.array_equal(np.concatenate(a), x)


def test_batches_bad_arguments():
    # the library's own messages: NumPy's or range()'s errors (range() arg 3 must not be zero) do not count
    with pytest.raises(ValueError, match=r"batches: batch_size must be a positive integer, got 0"):
        next(batches(np.zeros(3), np.zeros(3), 0))
    with pytest.raises(ValueError, match=r"batches: batch_size must be a positive integer, got -1"):
        next(batches(np.zeros(3), np.zeros(3), -1))       # unchecked, range(0, 3, -1) would yield nothing
    with pytest.raises(ValueError, match=r"batches: x has 3 examples but y has 4"):
        next(batches(np.zeros(3), np.zeros(4), 2))


# ---------------------------------------------------------------- corruptions


def test_noise_has_stated_variance(raw):
    x, _ = raw
    out = add_noise(x, 0.3, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == np.float32
    diff = out - x
    assert abs(float(diff.mean())) < 0.005
    assert float(diff.var()) == pytest.approx(0.09, rel=0.02)
    clipped = add_noise(x, 0.3, np.random.default_rng(0), clip=True)
    assert clipped.min() >= 0 and clipped.max() <= 1


@pytest.mark.parametrize("std", [-0.1, float("nan"), float("inf")])
def test_noise_rejects_a_std_that_is_negative_or_not_finite(raw, std):
    with pytest.raises(ValueError, match="add_noise: std must be a finite number >= 0"):
        add_noise(raw[0][:2], std, np.random.default_rng(0))


def test_salt_and_pepper_fraction(raw):
    x, _ = raw
    out = salt_and_pepper(x, 0.2, np.random.default_rng(0))
    assert out.shape == x.shape
    k = round(0.2 * 28 * 28)
    flat_in, flat_out = x.reshape(len(x), -1), out.reshape(len(x), -1)
    changed = flat_out != flat_in
    # Every changed pixel is 0 or 1; at most k per image, and exactly k were
    # set (a set pixel may coincide with its old value, e.g. background 0).
    assert np.all(np.isin(flat_out[changed], [0.0, 1.0]))
    assert np.all(changed.sum(axis=1) <= k)
    extreme_gain = np.isin(flat_out, [0.0, 1.0]).sum(1) - np.isin(flat_in, [0.0, 1.0]).sum(1)
    assert np.all(extreme_gain <= k)
    # Salt (1s) is about half of the k replaced pixels.
    salt = ((flat_out == 1.0) & (flat_in != 1.0)).sum(axis=1)
    assert salt.mean() == pytest.approx(k / 2, rel=0.15)
    # Replacing all pixels gives a pure 0/1 image.
    full = salt_and_pepper(x[:5], 1.0, np.random.default_rng(1))
    assert np.all(np.isin(full, [0.0, 1.0]))


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.6])
def test_debris_covers_stated_fraction(raw, fraction):
    x, _ = raw
    f = 7
    out, coverage = debris(x, x, fraction, np.random.default_rng(0), fragment_size=f,
                           return_coverage=True)
    assert out.shape == x.shape and coverage.shape == (len(x),)
    assert abs(coverage.mean() - fraction) < 0.02
    assert np.all(np.abs(coverage - fraction) <= f * f / (2 * 28 * 28) + 1e-9)
    # Debris only adds ink (pixel-wise max) and changes pixels only where covered.
    assert np.all(out >= x - 1e-7)
    changed = (out != x).reshape(len(x), -1).mean(axis=1)
    assert np.all(changed <= coverage + 1e-9)
    assert changed.mean() > 0.02


def test_debris_zero_fraction_is_identity(raw):
    x, _ = raw
    out, coverage = debris(x[:10], x, 0.0, np.random.default_rng(0), return_coverage=True)
    np.testing.assert_array_equal(out, x[:10])
    assert np.all(coverage == 0)


@pytest.mark.parametrize("n_digits", [1, 2, 4])
def test_clutter_multi_hot(raw, n_digits):
    x, y = raw
    images, labels = clutter(x, y, n_digits, np.random.default_rng(0))
    assert images.shape == x.shape and images.dtype == np.float32
    assert labels.shape == (len(x), 10) and labels.dtype == np.float32
    assert set(np.unique(labels)) <= {0.0, 1.0}
    np.testing.assert_array_equal(labels.sum(axis=1), n_digits)
    np.testing.assert_array_equal(labels[np.arange(len(y)), y], 1.0)  # own class kept
    if n_digits > 1:
        # More digits, more ink.
        assert images.mean() > 1.3 * x.mean()
    assert images.min() >= 0 and images.max() <= 1 + 1e-6


def test_clutter_with_source_pool(raw):
    x, y = raw
    few = x[:4]
    images, labels = clutter(few, y[:4], 3, np.random.default_rng(0), source_images=x,
                             source_labels=y)
    np.testing.assert_array_equal(labels.sum(axis=1), 3)
    with pytest.raises(ValueError, match="other classes"):
        clutter(x[y < 2], y[y < 2], 3, np.random.default_rng(0))


def test_corrupt_dispatcher(raw):
    x, y = raw
    x, y = x[:20], y[:20]
    rng = np.random.default_rng(0)
    out, yy = corrupt("none", x, y, rng=rng)
    np.testing.assert_array_equal(out, x)
    assert yy is y
    for name in ["noise", "saltpepper", "debris", "NOISE"]:
        out, yy = corrupt(name, x, y, rng=rng)
        assert out.shape == x.shape and not np.array_equal(out, x)
        assert yy is y
    out, yy = corrupt("clutter", x, y, rng=rng, level=2, source_images=x, source_labels=y)
    assert yy.shape == (20, 10)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt("blur", x, y, rng=rng)
    with pytest.raises(ValueError, match="labels"):
        corrupt("clutter", x, rng=rng)


@pytest.mark.parametrize("level, words", [
    (2.5, "got 2.5"),      # was silently 2 digits
    (0.5, "got 0.5"),      # was "n_digits must be in 1..10, got 0", a value never given
    (11, "got 11"),
    ("3", "got '3'"),
])
def test_corrupt_clutter_checks_the_level_in_the_callers_terms(raw, level, words):
    x, y = raw
    with pytest.raises(ValueError) as info:
        corrupt("clutter", x[:5], y[:5], rng=np.random.default_rng(0), level=level)
    message = str(info.value)
    assert "corruption 'clutter': level is the number of digits per image, an integer in 1..10" in message
    assert words in message


def test_corrupt_clutter_accepts_an_integral_float_level(raw):
    x, y = raw                                      # the command line parses --level as a float
    _, labels = corrupt("clutter", x[:5], y[:5], rng=np.random.default_rng(0), level=2.0,
                        source_images=x, source_labels=y)
    np.testing.assert_array_equal(labels.sum(axis=1), 2)


def test_clutter_refuses_a_fractional_number_of_digits(raw):
    x, y = raw
    with pytest.raises(ValueError, match="n_digits must be an integer in 1..10, got 2.5"):
        clutter(x[:5], y[:5], 2.5, np.random.default_rng(0), source_images=x, source_labels=y)


@pytest.mark.parametrize("n_digits", [10 ** 30, -(10 ** 30)])
def test_clutter_refuses_a_huge_number_of_digits_by_name(raw, n_digits):
    x, y = raw                              # np.isfinite cannot take such an int: the check must not ask it
    with pytest.raises(ValueError, match=rf"n_digits must be an integer in 1..10, got {n_digits}"):
        clutter(x[:5], y[:5], n_digits, np.random.default_rng(0), source_images=x, source_labels=y)


@pytest.mark.parametrize("flag", ["no", 2.5, None, [1, 2]])
def test_debris_return_coverage_must_be_a_bool(raw, flag):
    x, _ = raw
    with pytest.raises(TypeError, match=r"debris: return_coverage must be True or False"):
        debris(x[:3], x, 0.1, np.random.default_rng(0), return_coverage=flag)


def test_corruptions_deterministic_given_rng(raw):
    x, y = raw
    for name in data.CORRUPTIONS:
        a = corrupt(name, x[:10], y[:10], rng=np.random.default_rng(9), source_images=x,
                    source_labels=y)
        b = corrupt(name, x[:10], y[:10], rng=np.random.default_rng(9), source_images=x,
                    source_labels=y)
        np.testing.assert_array_equal(a[0], b[0])


def test_corruption_shape_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"add_noise: x must have shape \(N, 1, H, W\), got \(3, 28, 28\)"):
        add_noise(np.zeros((3, 28, 28)), 0.1, rng)
    # the library's own message: unchecked, 1.5 fails inside np.argpartition, and -0.5 silently changes nothing
    for bad in (1.5, -0.5):
        with pytest.raises(ValueError, match=rf"salt_and_pepper: fraction must be in \[0, 1\], got {bad}"):
            salt_and_pepper(np.zeros((1, 1, 4, 4)), bad, rng)


# ---------------------------------------------------------------- bad inputs: a clear error, never a silent cast


@pytest.mark.parametrize("bad", [2.5, True, 2.0, "2", None])
def test_batches_refuses_a_batch_size_that_is_not_an_integer(bad):
    """2.5 was truncated to 2 and True read as 1; '2' and None failed inside int()."""
    with pytest.raises(ValueError, match=rf"batches: batch_size must be a positive integer, got {bad!r}"):
        batches(np.zeros((5, 1)), np.zeros(5), bad)       # at the call, not at the first next()


def test_batches_refuses_inputs_without_a_batch_axis():
    with pytest.raises(TypeError, match=r"batches: x must be an array of shape \(N, ...\), got None"):
        batches(None, np.zeros(3), 2)
    with pytest.raises(ValueError, match=r"batches: y must be an array of shape \(N, ...\), got a 0-d array"):
        batches(np.zeros(3), np.float32(1.0), 2)
    with pytest.raises(ValueError, match=r"batches: x must be an array of shape \(N, ...\), got a 0-d array"):
        batches(np.array(1.0), np.zeros(3), 2)
    with pytest.raises(TypeError, match=r"batches: shuffle must be True or False, got 'no'"):
        batches(np.zeros(3), np.zeros(3), 2, shuffle="no")
    assert [len(b) for b, _ in batches([1, 2, 3], [0, 1, 2], 2, shuffle=False)] == [2, 1]  # lists: still fine


@pytest.mark.parametrize("name", ["noise", "saltpepper", "debris"])
def test_corrupt_refuses_a_level_that_is_not_a_number(raw, name):
    x, y = raw
    with pytest.raises(TypeError, match=r"corrupt: level must be a number, got 'a'"):
        corrupt(name, x[:4], y[:4], rng=np.random.default_rng(0), level="a")


@pytest.mark.parametrize("name", ["none", "noise", "saltpepper", "debris", "clutter"])
@pytest.mark.parametrize("rng", [None, 0])
def test_corrupt_refuses_an_rng_that_is_not_a_generator(raw, name, rng):
    x, y = raw
    if name == "none" and rng is None:                  # draws nothing: no generator needed
        assert corrupt(name, x[:4], y[:4], rng=None)[0].shape[0] == 4
        return
    with pytest.raises(TypeError, match=r"corrupt: rng must be a numpy.random.Generator .*got "):
        corrupt(name, x[:4], y[:4], rng=rng)


@pytest.mark.parametrize("name", ["none", "noise", "saltpepper", "debris", "clutter"])
def test_a_legacy_random_state_serves_the_corruptions_that_need_no_integers(raw, name):
    x, y = raw
    if name in ("debris", "clutter"):                   # they draw with Generator.integers
        with pytest.raises(TypeError, match=rf"{name}: rng must be a numpy.random.Generator"):
            corrupt(name, x[:4], y[:4], rng=np.random.RandomState(0))
    else:
        assert corrupt(name, x[:4], y[:4], rng=np.random.RandomState(0))[0].shape == (4,) + x.shape[1:]


def test_each_corruption_checks_its_own_arguments(raw):
    x, y = raw
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match=r"add_noise: std must be a number, got 'a'"):
        add_noise(x[:2], "a", rng)
    with pytest.raises(TypeError, match=r"salt_and_pepper: fraction must be a number, got None"):
        salt_and_pepper(x[:2], None, rng)
    with pytest.raises(TypeError, match=r"debris: fraction must be a number, got 'a'"):
        debris(x[:2], x, "a", rng)
    with pytest.raises(TypeError, match=r"add_noise: rng must be a numpy.random.Generator .*got None"):
        add_noise(x[:2], 0.1, None)
    with pytest.raises(TypeError, match=r"clutter: rng must be a numpy.random.Generator .*got 0"):
        clutter(x[:4], y[:4], 2, 0)


def test_resize_refuses_fractional_sizes_and_inputs_without_two_axes():
    with pytest.raises(ValueError, match=r"resize_bilinear: size must be a positive integer, got 2.5"):
        resize_bilinear(np.zeros((2, 8, 8)), 2.5)
    with pytest.raises(ValueError, match=r"resize_bilinear: size must be a positive integer, got True"):
        resize_bilinear(np.zeros((2, 8, 8)), (4, True))
    with pytest.raises(ValueError, match=r"resize_bilinear: size must be S or \(S_h, S_w\), got \(4, 4, 4\)"):
        resize_bilinear(np.zeros((2, 8, 8)), (4, 4, 4))
    with pytest.raises(ValueError, match=r"resize_bilinear: images must have shape \(..., H, W\), got \(5,\)"):
        resize_bilinear(np.zeros(5), 4)
    assert resize_bilinear(np.zeros((8, 8)), (4, np.int64(2))).shape == (4, 2)


def test_loaders_refuse_a_bad_directory_or_size(tmp_path):
    with pytest.raises(TypeError, match=r"load_mnist: directory must be a path .*got None"):
        load_mnist(None)
    with pytest.raises(ValueError, match=r"load_mnist: size must be a positive integer, got 2.5"):
        load_mnist(str(tmp_path), size=2.5)
    with pytest.raises(ValueError, match=r"load_digits: size must be a positive integer, got 8.5"):
        load_digits(size=8.5)                              # was truncated to 8


# ---------------------------------------------------------------- labels, sizes and counts: checked, never cast


@pytest.mark.parametrize("labels, got", [
    ([-1, 1, 2, 3], "got -1 at index 0"),           # was silently class 9 with a pool, a bincount error without
    ([0, 1, 2, 10], "got 10 at index 3"),           # was a bare IndexError
    ([0.0, 1.5, 2.0, 3.0], "got dtype float64"),    # was truncated to 1
    ([[0], [1], [2], [3]], r"got shape \(4, 1\)"),
])
@pytest.mark.parametrize("pool", [False, True])
def test_clutter_refuses_labels_that_are_not_classes(raw, labels, got, pool):
    x, y = raw
    kwargs = dict(source_images=x, source_labels=y) if pool else {}
    with pytest.raises(ValueError, match=r"clutter: y must be an integer array of shape \(N,\) with "
                                         rf"0 <= y < 10, {got}"):
        clutter(x[:4], labels, 2, np.random.default_rng(0), **kwargs)
    with pytest.raises(ValueError, match=rf"clutter: y must be .*{got}"):
        corrupt("clutter", x[:4], labels, rng=np.random.default_rng(0), level=2, **kwargs)


@pytest.mark.parametrize("bad, got", [(-1, "got -1 at index 7"), (10, "got 10 at index 7"),
                                      (0.5, "got dtype float64")])
def test_clutter_refuses_source_labels_that_are_not_classes(raw, bad, got):
    x, y = raw
    pool = y[:20].astype(type(bad))
    pool[7] = bad
    with pytest.raises(ValueError, match=r"clutter: source_labels must be an integer array of shape \(N,\) "
                                         rf"with 0 <= source_labels < 10, {got}"):
        clutter(x[:4], y[:4], 2, np.random.default_rng(0), source_images=x[:20], source_labels=pool)


def test_clutter_labels_must_be_below_classes(raw):
    x, y = raw
    keep = y < 3
    with pytest.raises(ValueError, match=r"clutter: y must be .* with 0 <= y < 3, got \d at index"):
        clutter(x[:10], y[:10], 2, np.random.default_rng(0), classes=3)
    _, labels = clutter(x[keep][:10], y[keep][:10], 2, np.random.default_rng(0), classes=3)
    assert labels.shape == (10, 3)
    np.testing.assert_array_equal(clutter(x[:0], [], 2, np.random.default_rng(0))[1], np.zeros((0, 10)))


@pytest.mark.parametrize("shape", [(3, 1, 28, 4), (3, 1, 4, 28), (3, 1, 1, 1), (3, 1, 2, 9)])
def test_debris_default_fragment_fits_small_and_non_square_images(shape):
    """The default was round(H / 4) >= 2, refused for 28x4 ("must be in 1..4, got 7") and 1x1 images."""
    x = np.random.default_rng(1).random(shape).astype(np.float32)
    out, coverage = debris(x, x, 0.3, np.random.default_rng(0), return_coverage=True)
    assert out.shape == shape and np.all(out >= x)
    images, _ = corrupt("debris", np.zeros(shape), rng=np.random.default_rng(0))
    assert images.shape == shape


def test_debris_default_fragment_is_still_7_pixels_on_28x28(raw):
    x, _ = raw
    default = debris(x[:20], x, 0.3, np.random.default_rng(0))
    np.testing.assert_array_equal(default, debris(x[:20], x, 0.3, np.random.default_rng(0), fragment_size=7))


@pytest.mark.parametrize("bad", [2.7, True, "3", 0, -1])
def test_debris_refuses_a_fragment_size_that_is_not_a_positive_integer(raw, bad):
    x, _ = raw                                       # 2.7 was 2, True was 1, "3" was 3
    message = rf"debris: fragment_size must be a positive integer, got {re.escape(repr(bad))}"
    with pytest.raises(ValueError, match=message):
        debris(x[:2], x, 0.3, np.random.default_rng(0), fragment_size=bad)


def test_debris_refuses_a_fragment_larger_than_the_image():
    x = np.zeros((2, 1, 28, 4))
    too_big = r"debris: fragment_size must be in 1..4 \(the image is 28 x 4\), got 5"
    with pytest.raises(ValueError, match=too_big):
        debris(x, x, 0.3, np.random.default_rng(0), fragment_size=5)
    with pytest.raises(ValueError, match=r"debris: fragment_size must be in 1..4 .*got 5"):
        corrupt("debris", x, rng=np.random.default_rng(0), fragment_size=5)
    assert debris(x, x, 0.3, np.random.default_rng(0), fragment_size=np.int64(4)).shape == x.shape


@pytest.mark.parametrize("bad, words", [
    (1.7, "an integer >= 0, got 1.7"),              # was truncated to 1
    (-2, "an integer >= 0, got -2"),                # was numpy's "low >= high"
    (True, "an integer >= 0, got True"),
    (28, r"in 0..27 \(a shift of min\(H, W\) = 28 pixels moves a digit entirely off the image\), got 28"),
])
def test_clutter_refuses_a_max_shift_that_is_not_a_usable_integer(raw, bad, words):
    x, y = raw
    with pytest.raises(ValueError, match=rf"clutter: max_shift must be {words}"):
        clutter(x[:4], y[:4], 2, np.random.default_rng(0), max_shift=bad)


def test_clutter_max_shift_zero_keeps_the_digit_and_the_default_fits_non_square_images(raw):
    x, y = raw
    images, _ = clutter(x[:4], y[:4], 1, np.random.default_rng(0), max_shift=0)
    np.testing.assert_array_equal(images, x[:4])
    assert clutter(x[:4], y[:4], 2, np.random.default_rng(0), max_shift=27)[0].shape == x[:4].shape
    thin = x[:8, :, :, 12:16]                       # 28 x 4: the default shift is 4 // 4 = 1, not 28 // 4 = 7
    np.testing.assert_array_equal(clutter(thin, y[:8], 2, np.random.default_rng(0))[0],
                                  clutter(thin, y[:8], 2, np.random.default_rng(0), max_shift=1)[0])


@pytest.mark.parametrize("bad", ["no", 1, None])
def test_add_noise_refuses_a_clip_that_is_not_a_bool(raw, bad):
    with pytest.raises(TypeError, match=rf"add_noise: clip must be True or False, got {bad!r}"):
        add_noise(raw[0][:2], 0.1, np.random.default_rng(0), clip=bad)   # "no" clipped, as truthy


@pytest.mark.parametrize("args, name, got", [
    ((-5,), "n_train", "-5"),                       # silently dropped the last 5 images
    ((None, True), "n_test", "True"),               # kept 1
    ((2.5,), "n_train", "2.5"),                     # a bare TypeError from slicing
    (("3",), "n_train", "'3'"),
])
def test_subset_refuses_a_count_that_is_not_an_integer(digits, args, name, got):
    with pytest.raises(ValueError, match=rf"Dataset.subset: {name} must be an integer >= 0, got {got}"):
        digits.subset(*args)


def test_subset_counts_zero_none_and_more_than_the_split(digits):
    small = digits.subset(0, np.int64(3))
    assert small.x_train.shape[0] == 0 and small.y_test.shape == (3,)
    assert digits.subset(None, 10**9).x_test.shape == digits.x_test.shape


@pytest.mark.parametrize("seed", [None, -1, 1.5, True])
def test_load_digits_refuses_a_seed_that_is_not_an_integer(seed):
    """None gave a different split every call; -1 and 1.5 raw NumPy errors."""
    with pytest.raises(ValueError, match=rf"load_digits: seed must be an integer >= 0, got {seed!r}"):
        load_digits(size=8, seed=seed)


def test_load_digits_checks_test_fraction_in_its_own_name():
    with pytest.raises(TypeError, match=r"load_digits: test_fraction must be a number, got '0.3'"):
        load_digits(size=8, test_fraction="0.3")
    for bad in (0, 1, 1.5, float("nan")):
        outside = rf"load_digits: test_fraction must be a number > 0 and < 1, got {float(bad)!r}"
        with pytest.raises(ValueError, match=outside):
            load_digits(size=8, test_fraction=bad)
    with pytest.raises(ValueError, match=r"load_digits: test_fraction=0.999 leaves 0 training images"):
        load_digits(size=8, test_fraction=0.999)
    a, b = load_digits(size=8, seed=np.int64(2)), load_digits(size=8, seed=2)
    np.testing.assert_array_equal(a.y_train, b.y_train)


@pytest.mark.parametrize("counts, empty", [((0, 7), "train-images-idx3-ubyte"),
                                           ((12, 0), "t10k-images-idx3-ubyte")])
def test_load_mnist_refuses_an_empty_split(tmp_path, counts, empty):
    """An empty training file gave mean=nan and NaN images, with only RuntimeWarnings."""
    _write_mnist(tmp_path, n_train=counts[0], n_test=counts[1])
    with pytest.raises(ValueError, match=rf"load_mnist: .*{empty} holds no images: both splits need"):
        load_mnist(str(tmp_path))


def test_load_spec_prefix_is_case_insensitive_and_stripped(tmp_path):
    directory = tmp_path / "MixedCase"               # the directory part keeps its case
    directory.mkdir()
    _write_mnist(directory)
    for spec in (f"MNIST:{directory}", f"  mnist:{directory}  ", f"Mnist:{directory}\n"):
        assert load(spec, size=8).x_train.shape == (12, 1, 8, 8)
    with pytest.raises(FileNotFoundError, match="mixedcase"):
        load(f"mnist:{str(directory).lower()}")
    with pytest.raises(ValueError, match=r"load: data spec 'mnist:' needs a directory"):
        load("  MNIST:  ")
    assert load(" Digits ", size=8).x_train.shape[1:] == (1, 8, 8)


@pytest.mark.parametrize("spec", [5, None, b"digits"])
def test_load_refuses_a_spec_that_is_not_a_string_with_a_type_error(spec):
    with pytest.raises(TypeError, match=rf"load: data spec must be a string, got {re.escape(repr(spec))}"):
        load(spec)


def test_batches_checks_rng_even_without_shuffling():
    with pytest.raises(TypeError, match=r"batches: rng must be a numpy.random.Generator .*got 5"):
        batches(np.zeros(3), np.zeros(3), 2, shuffle=False, rng=5)
    unshuffled = batches(np.arange(3), np.arange(3), 2, shuffle=False, rng=np.random.default_rng(0))
    assert [yb.tolist() for _, yb in unshuffled] == [[0, 1], [2]]


def _bad_shape():
    return np.zeros((2, 28, 28))


@pytest.mark.parametrize("call, message", [
    (lambda x, y: add_noise(_bad_shape(), 0.1, np.random.default_rng(0)), r"add_noise: x must have shape"),
    (lambda x, y: salt_and_pepper(_bad_shape(), 0.1, np.random.default_rng(0)),
     r"salt_and_pepper: x must have shape"),
    (lambda x, y: debris(_bad_shape(), x, 0.1, np.random.default_rng(0)), r"debris: x must have shape"),
    (lambda x, y: debris(x[:2], _bad_shape(), 0.1, np.random.default_rng(0)),
     r"debris: source_images must have shape"),
    (lambda x, y: clutter(_bad_shape(), y[:2], 2, np.random.default_rng(0)), r"clutter: x must have shape"),
    (lambda x, y: corrupt("none", _bad_shape(), rng=None), r"corrupt: x must have shape"),
    (lambda x, y: debris(x[:2], x[:0], 0.1, np.random.default_rng(0)), r"debris: source_images is empty"),
    (lambda x, y: debris(x[:2], x[:, :, :14], 0.1, np.random.default_rng(0)),
     r"debris: source_images are \(14, 28\) but x is \(28, 28\)"),
    (lambda x, y: debris(x[:2], x, 1.5, np.random.default_rng(0)),
     r"debris: fraction must be in \[0, 1\], got 1.5"),
    (lambda x, y: corrupt("debris", x[:2], rng=np.random.default_rng(0), level=-0.5),
     r"debris: fraction must be in \[0, 1\], got -0.5"),
    (lambda x, y: clutter(x[:4], y[:3], 2, np.random.default_rng(0)),
     r"clutter: x has 4 images but y has 3 labels"),
    (lambda x, y: clutter(x[:4], y[:4], 2, np.random.default_rng(0), source_images=x),
     r"clutter: give both source_images and source_labels, or neither"),
    (lambda x, y: clutter(x[:4], y[:4], 2, np.random.default_rng(0), source_images=x, source_labels=y[:5]),
     r"clutter: source_images has 300 images but source_labels 5"),
    (lambda x, y: clutter(x[:4], y[:4], 2, np.random.default_rng(0), source_images=x[:, :, :14],
                          source_labels=y), r"clutter: source_images are \(14, 28\) but x is \(28, 28\)"),
    (lambda x, y: clutter(x[:4], y[:4], 11, np.random.default_rng(0)), r"clutter: n_digits must be an integer"),
    (lambda x, y: clutter(x[y < 2], y[y < 2], 3, np.random.default_rng(0)),
     r"clutter: 3 digits per image need 2 other classes in the pool, which has only classes \[0, 1\]"),
])
def test_corruption_messages_name_their_function(raw, call, message):
    x, y = raw
    with pytest.raises(ValueError, match=message) as info:
        call(x, y)
    assert str(info.value).split(":")[0] in ("add_noise", "salt_and_pepper", "debris", "clutter", "corrupt")


def test_resize_matches_torch_bilinear_without_antialiasing_up_and_down():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for h, w, sh, sw in [(8, 8, 28, 28), (28, 28, 8, 8), (7, 13, 5, 20), (28, 28, 3, 11)]:
        x = rng.random((2, 1, h, w)).astype(np.float32)
        want = torch.nn.functional.interpolate(torch.from_numpy(x), size=(sh, sw), mode="bilinear",
                                               align_corners=False, antialias=False).numpy()
        np.testing.assert_allclose(resize_bilinear(x, (sh, sw)), want, atol=1e-5)


# ---------------------------------------------------------------- found by mutation testing (session 13)
def test_subset_keeps_each_split_paired_with_its_labels(digits):          # kills D2
    small = digits.subset(20, 10)
    assert len(small.x_train) == len(small.y_train) == 20
    assert len(small.x_test) == len(small.y_test) == 10
    np.testing.assert_array_equal(small.x_test, digits.x_test[:10])
    np.testing.assert_array_equal(small.x_train, digits.x_train[:20])


def test_load_passes_the_seed_to_the_digits_split():                      # kills D3
    a, b = load("digits", size=8, seed=1), load_digits(size=8, seed=1)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    np.testing.assert_array_equal(a.x_test, b.x_test)


def test_mnist_file_longer_than_its_header_says_is_refused(tmp_path):     # kills D4
    _write_mnist(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes() + b"\x00\x01")
    with pytest.raises(ValueError, match=r"^load_mnist: .*train-labels-idx1-ubyte: header says \(12,\) "
                                         r"\(12 bytes of data\) but the file holds 14"):
        load_mnist(str(tmp_path))


def test_mnist_refuses_a_label_outside_0_to_9(tmp_path):                  # kills D5
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.full(7, 10), 0x801))
    with pytest.raises(ValueError, match=r"^load_mnist: .*t10k-labels-idx1-ubyte: label 10 is outside 0..9"):
        load_mnist(str(tmp_path))


@pytest.mark.parametrize("fraction", [0.2, 0.3])   # 156.8 pixels of 784 -> 157 (floor: 156); 235.2 -> 235
def test_salt_and_pepper_replaces_exactly_round_fraction_hw_pixels(fraction):   # kills D6
    x = np.full((50, 1, 28, 28), 0.5, np.float32)   # mid-grey: every replaced pixel changes value
    out = salt_and_pepper(x, fraction, np.random.default_rng(0))
    changed = (out != x).reshape(50, -1).sum(axis=1)
    np.testing.assert_array_equal(changed, round(fraction * 784))


def test_corrupt_debris_cuts_its_fragments_from_source_images(raw):       # kills D7
    x, _ = raw
    blank = np.zeros_like(x[:5])
    out, _ = corrupt("debris", blank, rng=np.random.default_rng(0), level=0.3, source_images=x)
    assert out.max() > 0.5                       # strokes cut from the pool
    own, _ = corrupt("debris", blank, rng=np.random.default_rng(0), level=0.3)
    assert own.max() == 0                        # without a pool, fragments of blank images are blank
