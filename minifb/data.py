"""Datasets, batching and image corruptions, in pure NumPy.

Two sources of images:

* :func:`load_digits` -- the UCI optical handwritten digits (1,797 8x8 images,
  10 classes) that ship with minifb as package data (``minifb/data_files``;
  see ``DIGITS_LICENSE.txt`` there for attribution and licence), resized to
  ``size x size``. Needs no network.
* :func:`load_mnist` -- real MNIST-format IDX files in a directory, for users
  who have them.

Both return a :class:`Dataset` with standardised images of shape
``(N, 1, S, S)``. :func:`load` picks one from a spec string such as
``"digits"`` or ``"mnist:/path/to/dir"``.

Corruptions (:func:`add_noise`, :func:`salt_and_pepper`, :func:`debris`,
:func:`clutter`, and the dispatcher :func:`corrupt`) all work in the
*unstandardised* pixel space, where ink is near 1 and background is 0. To
corrupt a dataset's standardised images, go through
:meth:`Dataset.unstandardise` and back::

    ds = load_digits()
    rng = np.random.default_rng(0)
    raw = ds.unstandardise(ds.x_test)          # back to [0, 1]
    noisy = add_noise(raw, 0.3, rng)
    x = ds.standardise(noisy)                  # what the network sees
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Iterator

import numpy as np

from . import checks

__all__ = [
    "Dataset",
    "load_digits",
    "load_mnist",
    "load",
    "resize_bilinear",
    "batches",
    "add_noise",
    "salt_and_pepper",
    "debris",
    "clutter",
    "corrupt",
    "CORRUPTIONS",
    "DEFAULT_LEVELS",
]

_EPS = 1e-8


# --------------------------------------------------------------------------
# Dataset container
# --------------------------------------------------------------------------


@dataclass
class Dataset:
    """A train/test split of standardised single-channel images.

    Attributes:
        x_train: Training images, shape ``(N_train, 1, S, S)``, float32,
            standardised as ``(pixel - mean) / std``.
        y_train: Training labels, shape ``(N_train,)``, int64 in ``0..classes-1``.
        x_test: Test images, shape ``(N_test, 1, S, S)``, float32, standardised
            with the *training* mean and std.
        y_test: Test labels, shape ``(N_test,)``, int64.
        classes: Number of classes (10 for digits and MNIST).
        mean: Mean pixel value of the unstandardised training images (a
            scalar, pixels in ``[0, 1]``).
        std: Standard deviation of the unstandardised training pixels (scalar).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int = 10
    mean: float = 0.0
    std: float = 1.0

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The shape of one image, ``(1, S, S)``."""
        return tuple(self.x_train.shape[1:])

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """Map raw ``[0, 1]`` pixels to the network's input space.

        Args:
            x: Images of any shape, unstandardised (e.g. corrupted copies).

        Returns:
            ``(x - mean) / std`` as float32, same shape as ``x``.
        """
        return ((np.asarray(x, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def unstandardise(self, x: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`standardise`: back to raw ``[0, 1]`` pixel space.

        Args:
            x: Standardised images of any shape.

        Returns:
            ``x * std + mean`` as float32, same shape as ``x``.
        """
        return (np.asarray(x, dtype=np.float32) * self.std + self.mean).astype(np.float32)

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> "Dataset":
        """Return a smaller dataset made of the first examples of each split.

        The splits are already shuffled, so a prefix is a random sample. The
        mean and std are kept (they are not recomputed).

        Args:
            n_train: Number of training examples to keep, an integer >= 0
                (``None``, or more than the split holds, keeps all).
            n_test: Number of test examples to keep, likewise.

        Returns:
            A new :class:`Dataset` sharing no arrays with this one.

        Raises:
            ValueError: A count is neither ``None`` nor an integer >= 0 (``2.5``
                and ``True`` are refused, not truncated).
        """
        n_train, n_test = (None if n is None else checks.integer("Dataset.subset", name, n, minimum=0)
                           for name, n in (("n_train", n_train), ("n_test", n_test)))
        return Dataset(
            x_train=self.x_train[:n_train].copy(),
            y_train=self.y_train[:n_train].copy(),
            x_test=self.x_test[:n_test].copy(),
            y_test=self.y_test[:n_test].copy(),
            classes=self.classes,
            mean=self.mean,
            std=self.std,
        )


def _standardised(x_train, y_train, x_test, y_test, classes=10) -> Dataset:
    """Build a Dataset from raw [0, 1] images, standardising on the train split."""
    mean = float(x_train.mean(dtype=np.float64))
    std = float(x_train.std(dtype=np.float64))
    std = std if std > _EPS else 1.0
    ds = Dataset(
        x_train=np.empty(0), y_train=np.asarray(y_train, dtype=np.int64),
        x_test=np.empty(0), y_test=np.asarray(y_test, dtype=np.int64),
        classes=classes, mean=mean, std=std,
    )
    ds.x_train = ds.standardise(x_train)
    ds.x_test = ds.standardise(x_test)
    return ds


# --------------------------------------------------------------------------
# Resizing
# --------------------------------------------------------------------------


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Linear-interpolation weights mapping ``n_in`` samples to ``n_out``.

    Uses the half-pixel-centre convention: output pixel ``i`` samples the
    input at ``(i + 0.5) * n_in / n_out - 0.5``, clamped to the edges, with no
    antialiasing (see :func:`resize_bilinear`). Each row sums to 1, and
    ``n_in == n_out`` gives the identity.

    Returns:
        Array of shape ``(n_out, n_in)``, float64.
    """
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    w = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    # Each (row, column) pair appears at most once per assignment (rows are distinct), so plain fancy
    # indexing is exact; the second adds because lo == hi at the clamped edge.
    w[rows, lo] = 1.0 - frac
    w[rows, hi] += frac
    return w


def resize_bilinear(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a batch of images with bilinear interpolation (no loops).

    Bilinear interpolation is separable, so the resize is two matrix products,
    ``Wy @ image @ Wx.T``, applied to every image at once. Constant images
    stay constant and resizing to the same size is exact.

    The result is that of ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False, antialias=False)``: half-pixel centres and no
    antialiasing. PIL agrees when upsampling only; when downsampling it
    antialiases (averages over the whole footprint) and this does not.

    Args:
        images: Array of shape ``(..., H, W)``.
        size: Output size ``S`` (square) or ``(S_h, S_w)``.

    Returns:
        Array of shape ``(..., S_h, S_w)``, float32.

    Raises:
        ValueError: ``images`` has fewer than 2 axes, or ``size`` is not a
            positive integer or a pair of them.
    """
    images = np.asarray(images)
    if images.ndim < 2:
        raise ValueError(f"resize_bilinear: images must have shape (..., H, W), got {images.shape}")
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ValueError(f"resize_bilinear: size must be S or (S_h, S_w), got {tuple(size)!r}")
        sh, sw = (checks.integer("resize_bilinear", "size", s) for s in size)
    else:
        sh = sw = checks.integer("resize_bilinear", "size", size)
    h, w = images.shape[-2:]
    if (h, w) == (sh, sw):
        return images.astype(np.float32, copy=True)
    wy = _interp_matrix(h, sh).astype(np.float32)
    wx = _interp_matrix(w, sw).astype(np.float32)
    out = np.einsum("ih,...hw,jw->...ij", wy, images.astype(np.float32), wx, optimize=True)
    return np.ascontiguousarray(out, dtype=np.float32)


# --------------------------------------------------------------------------
# The shipped digits
# --------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """Read the shipped ``digits.csv.gz``: (images (1797, 8, 8) uint8, labels (1797,) int64)."""
    ref = resources.files("minifb.data_files").joinpath("digits.csv.gz")
    with ref.open("rb") as fh, gzip.open(fh, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 65:
        raise ValueError(f"digits.csv.gz: expected 65 columns, got shape {table.shape}")
    images = table[:, :64].reshape(-1, 8, 8).astype(np.uint8)
    labels = table[:, 64].astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int):
    """Seeded stratified split: per class, ``round(n_c * test_fraction)`` go to test.

    Returns:
        ``(train_idx, test_idx)``, each shuffled with the same seed.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * test_fraction))
        test.append(idx[:k])
        train.append(idx[k:])
    train_idx = rng.permutation(np.concatenate(train))
    test_idx = rng.permutation(np.concatenate(test))
    return train_idx, test_idx


def load_digits(size: int = 28, seed: int = 0, test_fraction: float = 0.25) -> Dataset:
    """Load the shipped UCI handwritten digits, resized and standardised.

    The 1,797 8x8 images (pixel values 0..16) are resized to ``size x size``
    with bilinear interpolation, scaled to ``[0, 1]`` by dividing by 16, split
    into train and test sets stratified by class (the split depends only on
    ``seed`` and ``test_fraction``), and standardised with the scalar mean and
    std of the training pixels.

    Args:
        size: Side length ``S`` of the output images (8 keeps the originals).
        seed: Seed of the train/test split and of the order within each split,
            an integer >= 0.
        test_fraction: Fraction of each class held out for testing, in (0, 1).

    Returns:
        A :class:`Dataset` with ``x_train (N_train, 1, S, S)`` and
        ``x_test (N_test, 1, S, S)`` float32, ``y_* (N,)`` int64, 10 classes.
        With the default ``test_fraction`` it holds 1,347 train and 450 test
        images.

    Raises:
        ValueError: If ``size`` is not a positive integer, ``seed`` is not an
            integer >= 0 (``None`` too: it would give a different split each
            call), ``test_fraction`` is not in (0, 1), or ``test_fraction`` is
            so close to 0 or 1 that the test or the training split would be
            empty.
        TypeError: If ``test_fraction`` is not a number.
    """
    size = checks.integer("load_digits", "size", size)
    seed = checks.integer("load_digits", "seed", seed, minimum=0)
    test_fraction = checks.number("load_digits", "test_fraction", test_fraction, above=0, below=1)
    images, labels = _raw_digits()
    x = resize_bilinear(images.astype(np.float32) / 16.0, size)[:, None]
    np.clip(x, 0.0, 1.0, out=x)
    train_idx, test_idx = _stratified_split(labels, test_fraction, seed)
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise ValueError(
            f"load_digits: test_fraction={test_fraction!r} leaves {len(train_idx)} training images and "
            f"{len(test_idx)} test images of {len(labels)}: both splits need at least one image"
        )
    return _standardised(x[train_idx], labels[train_idx], x[test_idx], labels[test_idx])


# --------------------------------------------------------------------------
# MNIST IDX files
# --------------------------------------------------------------------------

_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


def _find_idx(directory: str, stem: str) -> str:
    """Find ``stem`` (or its ``.gz`` / dotted variants) in ``directory``."""
    dotted = stem.replace("-idx", ".idx")  # e.g. train-images.idx3-ubyte
    candidates = [stem, stem + ".gz", dotted, dotted + ".gz"]
    for name in candidates:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"load_mnist: MNIST file not found in {directory!r}: expected one of {', '.join(candidates)}"
    )


def _read_idx(path: str, magic: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes, checking its magic number and size."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:  # e.g. a truncated or non-gzip .gz file
        raise ValueError(f"load_mnist: {path}: cannot read IDX file ({exc})") from exc
    if len(data) < 4:
        raise ValueError(f"load_mnist: {path}: too short to be an IDX file ({len(data)} bytes)")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise ValueError(
            f"load_mnist: {path}: bad magic number 0x{found:08x}, expected 0x{magic:08x} "
            f"({'images' if magic == _IDX_IMAGES_MAGIC else 'labels'}, unsigned bytes)"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"load_mnist: {path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise ValueError(
            f"load_mnist: {path}: header says {dims} ({expected} bytes of data) "
            f"but the file holds {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist(directory: str, size: int = 28) -> Dataset:
    """Load MNIST-format IDX files from a directory.

    Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each either
    plain or gzipped (``.gz``). Pixels are scaled from 0..255 to ``[0, 1]``,
    resized bilinearly if ``size`` differs from the files' size, and
    standardised with the training mean and std. The split is the files' own.

    Args:
        directory: Folder holding the four files.
        size: Side length ``S`` of the output images.

    Returns:
        A :class:`Dataset` with ``x_train (60000, 1, S, S)``, ``x_test
        (10000, 1, S, S)`` for the real MNIST (any counts for other files).

    Raises:
        TypeError: If ``directory`` is not a path (a ``str`` or ``os.PathLike``).
        FileNotFoundError: If a file is missing (the message lists the names
            tried).
        ValueError: If ``size`` is not a positive integer, or a file has a bad
            magic number, is truncated, holds no images, or its image and label
            counts differ; the message names the file.
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"load_mnist: directory must be a path (a str or os.PathLike), got {directory!r}")
    size = checks.integer("load_mnist", "size", size)
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"load_mnist: MNIST directory not found: {directory!r}")
    parts = []
    for split in ("train", "t10k"):
        img_path = _find_idx(directory, f"{split}-images-idx3-ubyte")
        lab_path = _find_idx(directory, f"{split}-labels-idx1-ubyte")
        images = _read_idx(img_path, _IDX_IMAGES_MAGIC)
        labels = _read_idx(lab_path, _IDX_LABELS_MAGIC)
        if len(images) != len(labels):
            raise ValueError(
                f"load_mnist: {img_path} holds {len(images)} images but {lab_path} holds {len(labels)} labels"
            )
        if len(images) == 0:
            raise ValueError(f"load_mnist: {img_path} holds no images: both splits need at least one image")
        if labels.max() > 9:
            raise ValueError(f"load_mnist: {lab_path}: label {int(labels.max())} is outside 0..9")
        x = resize_bilinear(images.astype(np.float32) / 255.0, size)[:, None]
        np.clip(x, 0.0, 1.0, out=x)
        parts.append((x, labels.astype(np.int64)))
    (x_train, y_train), (x_test, y_test) = parts
    return _standardised(x_train, y_train, x_test, y_test)


def load(spec: str, size: int = 28, seed: int = 0) -> Dataset:
    """Load a dataset from a spec string, as given to ``minifb train --data``.

    Args:
        spec: ``"digits"`` for the shipped digits, or ``"mnist:DIR"`` for IDX
            files in ``DIR``. Surrounding spaces are ignored, and so is the
            case of ``digits`` and of the ``mnist:`` prefix (not of ``DIR``).
        size: Side length ``S`` of the output images.
        seed: Split seed (digits only; MNIST has a fixed split).

    Returns:
        A :class:`Dataset`.

    Raises:
        TypeError: If the spec is not a string.
        ValueError: If the spec is not one of the above.
    """
    if not isinstance(spec, str):
        raise TypeError(f"load: data spec must be a string, got {spec!r}")
    text = spec.strip()
    if text.lower() == "digits":
        return load_digits(size=size, seed=seed)
    prefix = "mnist:"
    if text[:len(prefix)].lower() == prefix:
        directory = text[len(prefix):]
        if not directory:
            raise ValueError("load: data spec 'mnist:' needs a directory, as in 'mnist:/path/to/mnist'")
        return load_mnist(directory, size=size)
    raise ValueError(f"load: unknown data spec {spec!r}: expected 'digits' or 'mnist:DIR'")


# --------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------


def batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    shuffle: bool = True,
    rng: np.random.Generator | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """An iterator over mini-batches covering every example exactly once.

    Args:
        x: Inputs, shape ``(N, ...)``.
        y: Targets, shape ``(N, ...)``.
        batch_size: Examples per batch; the last batch may be smaller.
        shuffle: Visit the examples in a random order (else in order).
        rng: Generator for the shuffle; a fresh unseeded one if ``None``.
            Checked even when ``shuffle`` is False.

    Returns:
        An iterator of ``(xb, yb)`` with shapes ``(B, ...)``, ``B <= batch_size``.

    Raises:
        ValueError: If ``batch_size`` is not a positive integer (``2.5`` and
            ``True`` are refused, not truncated), ``x`` or ``y`` is a 0-d
            array, or ``x`` and ``y`` differ in length.
        TypeError: If ``x`` or ``y`` is not an array (``None``), ``shuffle`` is
            not a bool, or ``rng`` is not a ``numpy.random.Generator`` (or a
            legacy ``RandomState``); all
            checked when ``batches`` is called, not at the first batch.
    """
    batch_size = checks.integer("batches", "batch_size", batch_size)
    n = _batch_length("batches", "x", x)
    m = _batch_length("batches", "y", y)
    if m != n:
        raise ValueError(f"batches: x has {n} examples but y has {m}")
    shuffle = checks.flag("batches", "shuffle", shuffle)
    if rng is not None:
        _check_rng("batches", rng)
    if shuffle:
        order = (rng if rng is not None else np.random.default_rng()).permutation(n)
    else:
        order = np.arange(n)
    x, y = _indexable(x), _indexable(y)
    return ((x[order[start:start + batch_size]], y[order[start:start + batch_size]])
            for start in range(0, n, batch_size))


def _indexable(v):
    """``v`` itself when it takes an index array (NumPy, CuPy, a Tensor), else as a NumPy array (a list)."""
    return v if hasattr(v, "shape") else np.asarray(v)


def _batch_length(fn: str, name: str, v) -> int:
    """The length of ``v``'s first (batch) axis; a clear error for ``None``, a scalar or a 0-d array."""
    if getattr(v, "ndim", None) == 0:
        raise ValueError(f"{fn}: {name} must be an array of shape (N, ...), got a 0-d array {v!r}")
    if not hasattr(v, "__len__"):
        raise TypeError(f"{fn}: {name} must be an array of shape (N, ...), got {v!r}")
    return len(v)


def _check_rng(fn: str, rng, legacy: bool = True):
    """``rng`` when it is a ``numpy.random.Generator`` (or, where ``legacy``, a ``RandomState``, whose
    ``permutation``, ``normal`` and ``random`` these functions also find); a clear error for None or a seed."""
    kinds = (np.random.Generator, np.random.RandomState) if legacy else np.random.Generator
    if not isinstance(rng, kinds):
        raise TypeError(f"{fn}: rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {rng!r}")
    return rng


# --------------------------------------------------------------------------
# Corruptions (all in raw [0, 1] pixel space, images (N, 1, H, W))
# --------------------------------------------------------------------------


def _as_images(fn: str, x: np.ndarray, name: str = "x") -> np.ndarray:
    """``x`` as float32 images ``(N, 1, H, W)``; a clear error, naming ``fn`` and ``name``, for another shape."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"{fn}: {name} must have shape (N, 1, H, W), got {x.shape}")
    return x


def add_noise(x: np.ndarray, std: float, rng: np.random.Generator, clip: bool = False) -> np.ndarray:
    """Add independent Gaussian noise to every pixel.

    Each pixel gets ``x + e`` with ``e ~ N(0, std**2)``, so the added noise has
    variance ``std**2``. With ``clip=True`` the result is clipped to ``[0, 1]``,
    which lowers the effective variance.

    Args:
        x: Images in raw pixel space, shape ``(N, 1, H, W)``.
        std: Standard deviation of the noise (finite, >= 0).
        rng: Random generator.
        clip: Clip the result to ``[0, 1]``; True or False.

    Returns:
        Noisy images, shape ``(N, 1, H, W)``, float32.

    Raises:
        ValueError: ``x`` is not ``(N, 1, H, W)``, or ``std`` is negative or not finite.
        TypeError: ``std`` is not a number, ``rng`` not a generator, or ``clip`` not a bool.
    """
    x = _as_images("add_noise", x)
    std = checks.number("add_noise", "std", std, at_least=0, finite=True)
    _check_rng("add_noise", rng)
    clip = checks.flag("add_noise", "clip", clip)
    out = x + rng.normal(0.0, std, size=x.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0) if clip else out


def salt_and_pepper(x: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Set a fixed fraction of each image's pixels to 0 or 1.

    In every image exactly ``round(fraction * H * W)`` distinct pixels, chosen
    uniformly at random, are replaced, each by 0 ("pepper") or 1 ("salt")
    with equal probability.

    Args:
        x: Images in raw ``[0, 1]`` pixel space, shape ``(N, 1, H, W)``.
        fraction: Fraction of pixels to replace, in ``[0, 1]``.
        rng: Random generator.

    Returns:
        Corrupted images, shape ``(N, 1, H, W)``, float32.
    """
    x = _as_images("salt_and_pepper", x)
    fraction = checks.number("salt_and_pepper", "fraction", fraction)
    _check_rng("salt_and_pepper", rng)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"salt_and_pepper: fraction must be in [0, 1], got {fraction!r}")
    n, _, h, w = x.shape
    k = int(round(fraction * h * w))
    out = x.reshape(n, h * w).copy()
    if k > 0 and n > 0:
        # The k smallest of N x HW uniforms per row are a uniform k-subset.
        pick = np.argpartition(rng.random((n, h * w)), k - 1, axis=1)[:, :k]
        values = (rng.random((n, k)) < 0.5).astype(np.float32)
        np.put_along_axis(out, pick, values, axis=1)
    return out.reshape(x.shape)


def debris(
    x: np.ndarray,
    source_images: np.ndarray,
    fraction: float,
    rng: np.random.Generator,
    fragment_size: int | None = None,
    return_coverage: bool = False,
):
    """Scatter fragments cut from other digits over each image.

    Square ``fragment_size x fragment_size`` fragments are cut from randomly
    chosen ``source_images`` (each centred on a random ink pixel of its
    source, so fragments carry strokes) and pasted at random positions fully
    inside the image. Fragments are added one at a time per image while that
    brings the *coverage* -- the fraction of the image's pixels lying under at
    least one fragment square -- closer to ``fraction``; so the coverage of
    each image is within half a fragment's area (``fragment_size**2 / (2HW)``)
    of ``fraction``, except near ``fraction = 1`` where random placement may
    stop short. Pasted fragments are combined with the image by pixel-wise
    maximum (ink lies over ink; a later fragment replaces an earlier one).

    Args:
        x: Images in raw ``[0, 1]`` pixel space, shape ``(N, 1, H, W)``.
        source_images: Images to cut fragments from, shape ``(M, 1, H, W)``
            (often the training set; an image may occasionally receive a
            fragment of itself if it is among them).
        fraction: Target coverage, in ``[0, 1]``.
        rng: Random generator.
        fragment_size: Side of the fragments, an integer in ``1..min(H, W)``;
            default ``max(2, round(min(H, W) / 4))``, at most ``min(H, W)``
            (7 pixels for 28x28 images).
        return_coverage: Also return the per-image coverage.

    Returns:
        Images with debris, shape ``(N, 1, H, W)``, float32; with
        ``return_coverage`` a tuple ``(images, coverage)`` where ``coverage``
        has shape ``(N,)``.
    """
    x = _as_images("debris", x)
    src = _as_images("debris", source_images, "source_images")
    n, _, h, w = x.shape
    if src.shape[2:] != (h, w):
        raise ValueError(f"debris: source_images are {src.shape[2:]} but x is {(h, w)}")
    if len(src) == 0:
        raise ValueError("debris: source_images is empty")
    if h == 0 or w == 0:
        raise ValueError(f"debris: images must have at least one pixel, got H x W = {h} x {w}")
    fraction = checks.number("debris", "fraction", fraction)
    return_coverage = checks.flag("debris", "return_coverage", return_coverage)
    _check_rng("debris", rng, legacy=False)   # uses Generator.integers
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"debris: fraction must be in [0, 1], got {fraction!r}")
    side = min(h, w)
    if fragment_size is None:
        f = min(side, max(2, int(round(side / 4))))
    else:
        f = checks.integer("debris", "fragment_size", fragment_size)
        if f > side:
            raise ValueError(f"debris: fragment_size must be in 1..{side} (the image is {h} x {w}), got {f}")

    src2 = src[:, 0]
    # Where to cut: a random ink pixel per source (argmax of random scores
    # restricted to ink), or anywhere if the source has no ink.
    ink = src2 > 0.5 * src2.reshape(len(src2), -1).max(axis=1).clip(min=_EPS)[:, None, None]
    canvas = np.zeros((n, h, w), dtype=np.float32)
    covered = np.zeros((n, h, w), dtype=bool)
    area = float(h * w)
    target = fraction * area
    active = np.arange(n) if target > 0 else np.arange(0)
    ar = np.arange(f)
    max_rounds = 20 * int(np.ceil(area / (f * f))) + 20
    for _ in range(max_rounds):
        if active.size == 0:
            break
        m = active.size
        s = rng.integers(0, len(src2), size=m)
        score = rng.random((m, h, w)) + ink[s]  # ink pixels score >= 1
        centre = score.reshape(m, -1).argmax(axis=1)
        cr = np.clip(centre // w - f // 2, 0, h - f)
        cc = np.clip(centre % w - f // 2, 0, w - f)
        fragments = src2[s[:, None, None], cr[:, None, None] + ar[None, :, None],
                         cc[:, None, None] + ar[None, None, :]]
        pr = rng.integers(0, h - f + 1, size=m)
        pc = rng.integers(0, w - f + 1, size=m)
        rows = pr[:, None, None] + ar[None, :, None]
        cols = pc[:, None, None] + ar[None, None, :]
        who = active[:, None, None]
        old = covered[active].sum(axis=(1, 2))
        trial = covered[active].copy()
        trial[np.arange(m)[:, None, None], rows, cols] = True
        new = trial.sum(axis=(1, 2))
        accept = np.abs(new - target) < np.abs(old - target)
        if accept.any():
            a = accept
            covered[who[a], rows[a], cols[a]] = True
            canvas[who[a], rows[a], cols[a]] = fragments[a]
        # Keep going while below target; a placement that changed nothing
        # (fully over covered pixels) is retried. An image stops once it
        # reaches the target or a placement would overshoot by more than it
        # gains; either way it ends within f*f/2 pixels of the target.
        active = active[(accept & (new < target)) | (new == old)]
    out = np.maximum(x[:, 0], canvas)[:, None]
    if return_coverage:
        return out, covered.reshape(n, -1).mean(axis=1)
    return out


def _labels(fn: str, name: str, y, classes: int) -> np.ndarray:
    """``y`` as int64 labels of shape ``(N,)``, each in ``0..classes-1``; a clear error for anything else
    (a float label is refused, not truncated; an empty list is ``N = 0`` whatever its dtype)."""
    y = np.asarray(y)
    wanted = f"{fn}: {name} must be an integer array of shape (N,) with 0 <= {name} < {classes}"
    if y.ndim != 1:
        raise ValueError(f"{wanted}, got shape {y.shape}")
    if y.size and y.dtype.kind not in "iu":
        raise ValueError(f"{wanted}, got dtype {y.dtype}: {y[:5].tolist()}")
    bad = np.flatnonzero((y < 0) | (y >= classes)) if y.size else []
    if len(bad):
        raise ValueError(f"{wanted}, got {y[bad[0]]} at index {bad[0]}")
    return y.astype(np.int64)


def _shift(images: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Translate each ``(H, W)`` image by integer ``(dy, dx)``, filling with 0."""
    n, h, w = images.shape
    r = np.arange(h)[None, :] - dy[:, None]  # (n, h) source rows
    c = np.arange(w)[None, :] - dx[:, None]
    valid = ((r >= 0) & (r < h))[:, :, None] & ((c >= 0) & (c < w))[:, None, :]
    out = images[np.arange(n)[:, None, None], np.clip(r, 0, h - 1)[:, :, None],
                 np.clip(c, 0, w - 1)[:, None, :]]
    return np.where(valid, out, 0.0).astype(np.float32)


def clutter(
    x: np.ndarray,
    y: np.ndarray,
    n_digits: int,
    rng: np.random.Generator,
    max_shift: int | None = None,
    classes: int = 10,
    source_images: np.ndarray | None = None,
    source_labels: np.ndarray | None = None,
):
    """Overlay several digits of different classes in each image.

    Image ``i`` becomes the pixel-wise maximum of ``x[i]`` and ``n_digits - 1``
    other digits drawn from the source pool (``source_images`` /
    ``source_labels``, default ``x`` / ``y``) whose classes differ from
    ``y[i]`` and from each other. Every digit, ``x[i]`` included, is
    translated by a random integer shift of up to ``max_shift`` pixels in each
    direction (zero fill), so the digits overlap partly. The label is the
    multi-hot vector of the ``n_digits`` classes present, so every label row
    sums to exactly ``n_digits``.

    Args:
        x: Images in raw ``[0, 1]`` pixel space, shape ``(N, 1, H, W)``.
        y: Integer labels, shape ``(N,)``, each in ``0..classes-1``.
        n_digits: Digits per output image, an integer in ``1..classes`` (a
            float such as ``3.0`` is accepted, ``2.5`` is not). The pool must hold
            at least ``n_digits - 1`` classes other than each image's own.
        rng: Random generator.
        max_shift: Largest translation in pixels, an integer >= 0 and less
            than ``min(H, W)`` (a shift of the image's size would move a digit
            entirely off it); default ``min(H, W) // 4``.
        classes: Number of classes, a positive integer.
        source_images: Pool of digits to add, shape ``(M, 1, H, W)``.
        source_labels: Their labels, shape ``(M,)``, each in ``0..classes-1``.

    Returns:
        ``(images, labels)``: images ``(N, 1, H, W)`` float32 and multi-hot
        labels ``(N, classes)`` float32.

    Raises:
        ValueError: A shape does not fit, a label is not an integer in
            ``0..classes-1`` (float labels are refused, not truncated),
            ``n_digits`` or ``max_shift`` is out of range, or the pool lacks
            the classes to draw from.
        TypeError: ``rng`` is not a ``numpy.random.Generator``.
    """
    x = _as_images("clutter", x)
    _check_rng("clutter", rng, legacy=False)
    classes = checks.integer("clutter", "classes", classes)
    n, _, h, w = x.shape
    y = _labels("clutter", "y", y, classes)
    if len(y) != n:
        raise ValueError(f"clutter: x has {n} images but y has {len(y)} labels")
    if (source_images is None) != (source_labels is None):
        raise ValueError("clutter: give both source_images and source_labels, or neither")
    pool_x = x if source_images is None else _as_images("clutter", source_images, "source_images")
    pool_y = y if source_labels is None else _labels("clutter", "source_labels", source_labels, classes)
    if len(pool_x) != len(pool_y):
        raise ValueError(f"clutter: source_images has {len(pool_x)} images but source_labels {len(pool_y)}")
    if pool_x.shape[2:] != (h, w):
        raise ValueError(f"clutter: source_images are {pool_x.shape[2:]} but x is {(h, w)}")
    if not (_is_integral(n_digits) and 1 <= n_digits <= classes):
        raise ValueError(f"clutter: n_digits must be an integer in 1..{classes}, got {n_digits!r}")
    n_digits = int(n_digits)
    if max_shift is None:
        shift = min(h, w) // 4
    else:
        shift = checks.integer("clutter", "max_shift", max_shift, minimum=0)
        if shift and shift >= min(h, w):
            raise ValueError(f"clutter: max_shift must be in 0..{min(h, w) - 1} (a shift of min(H, W) = "
                             f"{min(h, w)} pixels moves a digit entirely off the image), got {shift}")
    counts = np.bincount(pool_y, minlength=classes)
    present = counts > 0
    if n > 0 and n_digits > 1 and (present.sum() - present[y]).min() < n_digits - 1:
        raise ValueError(
            f"clutter: {n_digits} digits per image need {n_digits - 1} other classes in the pool, "
            f"which has only classes {np.flatnonzero(present).tolist()}"
        )

    # Choose n_digits - 1 distinct other classes per image: random scores,
    # own and absent classes pushed to the end, take the smallest.
    scores = rng.random((n, classes))
    scores[:, ~present] = np.inf
    scores[np.arange(n), y] = np.inf
    others = np.argsort(scores, axis=1)[:, : n_digits - 1]  # (n, k)
    # Pick a random pool image of each chosen class.
    order = np.argsort(pool_y, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pick = order[starts[others] + (rng.random(others.shape) * counts[others]).astype(np.int64)]

    layers = np.concatenate([x[:, None, 0], pool_x[pick, 0]], axis=1)  # (n, n_digits, h, w)
    flat = layers.reshape(n * n_digits, h, w)
    dy = rng.integers(-shift, shift + 1, size=flat.shape[0])
    dx = rng.integers(-shift, shift + 1, size=flat.shape[0])
    shifted = _shift(flat, dy, dx).reshape(n, n_digits, h, w)
    images = shifted.max(axis=1)[:, None]

    labels = np.zeros((n, classes), dtype=np.float32)
    labels[np.arange(n)[:, None], np.concatenate([y[:, None], others], axis=1)] = 1.0
    return images, labels


CORRUPTIONS = ("none", "noise", "saltpepper", "debris", "clutter")
"""Names accepted by :func:`corrupt`."""

DEFAULT_LEVELS = {"none": None, "noise": 0.3, "saltpepper": 0.1, "debris": 0.3, "clutter": 3}
"""Default ``level`` per corruption: noise std, salt-and-pepper fraction,
debris coverage, and number of digits for clutter."""


def _is_integral(value) -> bool:
    """True for a real number with no fractional part (``3``, ``3.0``, ``np.int64(3)``), not for a bool."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):   # np.isfinite cannot take a Python int past 64 bits
        return True
    return isinstance(value, (float, np.floating)) and bool(np.isfinite(value)) and float(value).is_integer()


def _check_clutter_level(level, classes: int) -> None:
    """Refuse a clutter ``level`` that is not a whole number of digits in ``1..classes``, in ``level``'s terms.

    (The other corruptions' functions check their level themselves and name it: "add_noise: std", "fraction".)
    """
    if not (_is_integral(level) and 1 <= level <= classes):
        raise ValueError(f"corruption 'clutter': level is the number of digits per image, "
                         f"an integer in 1..{classes}, got {level!r}")


def corrupt(
    name: str,
    x: np.ndarray,
    y: np.ndarray | None = None,
    *,
    rng: np.random.Generator,
    level: float | None = None,
    source_images: np.ndarray | None = None,
    source_labels: np.ndarray | None = None,
    **kwargs,
):
    """Apply a named corruption to raw ``[0, 1]`` images.

    Args:
        name: One of ``none``, ``noise``, ``saltpepper``, ``debris``, ``clutter``
            (case-insensitive).
        x: Images in raw pixel space, shape ``(N, 1, H, W)``.
        y: Labels, shape ``(N,)``; required for ``clutter``, passed through
            otherwise.
        rng: Random generator.
        level: Strength: noise std (finite, >= 0), salt-and-pepper fraction
            or debris coverage (in ``[0, 1]``), or number of clutter digits
            (an integer in ``1..classes``; ``3.0`` is accepted, ``2.5`` is
            not); ``DEFAULT_LEVELS[name]`` if ``None``; ignored by ``none``.
        source_images: Pool to cut debris from or draw clutter digits from
            (default ``x``), shape ``(M, 1, H, W)``.
        source_labels: Labels of ``source_images`` (clutter only), ``(M,)``.
        **kwargs: Passed to the corruption (e.g. ``fragment_size``).

    Returns:
        ``(images, labels)``: images ``(N, 1, H, W)`` float32; labels are ``y``
        unchanged, except for ``clutter`` where they are multi-hot
        ``(N, classes)`` float32.

    Raises:
        ValueError: If ``name`` is unknown, ``level`` is out of range for the
            corruption (the message says what the level is: the noise std,
            the fraction, the number of clutter digits), or ``clutter`` gets
            no labels.
        TypeError: If ``rng`` is not a ``numpy.random.Generator`` (``none``
            also takes ``None``; a legacy ``RandomState`` also serves
            ``none``, ``noise`` and ``saltpepper``), or the ``level`` of
            ``noise``, ``saltpepper`` or ``debris`` is not a number.
    """
    key = str(name).strip().lower()
    if key not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}: expected one of {', '.join(CORRUPTIONS)}")
    if key != "none" or rng is not None:   # "none" draws nothing, so it may go without a generator
        _check_rng("corrupt", rng)
    lvl = DEFAULT_LEVELS[key] if level is None else level
    if key in ("noise", "saltpepper", "debris"):
        checks.number("corrupt", "level", lvl)      # its range is checked, in its own terms, by the corruption
    if key == "none":
        return _as_images("corrupt", x).copy(), y
    if key == "noise":
        return add_noise(x, lvl, rng, **kwargs), y
    if key == "saltpepper":
        return salt_and_pepper(x, lvl, rng, **kwargs), y
    if key == "debris":
        src = x if source_images is None else source_images
        return debris(x, src, lvl, rng, **kwargs), y
    if y is None:
        raise ValueError("corruption 'clutter' needs labels y")
    if source_images is not None and source_labels is None:
        raise ValueError("corruption 'clutter' with source_images needs source_labels too")
    _check_clutter_level(lvl, kwargs.get("classes", 10))
    return clutter(x, y, int(lvl), rng, source_images=source_images,
                   source_labels=source_labels, **kwargs)
