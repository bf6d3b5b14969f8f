"""The ``minifb`` command line (also ``python -m minifb``).

Subcommands::

    minifb train    [--model spoerer-BLT] [--data digits|mnist:DIR] [--corrupt none|noise|...] [--steps 4]
                    [--epochs N] [--batch B] [--lr LR] [--optimizer adam] [--device cpu] [--seed 0]
                    [--out DIR] [--size 16] [--limit N] [--truncate K] [--clip C]
    minifb evaluate --weights DIR/model.npz [--model M] [--corrupt ...] [--level L]
    minifb compare  [--corrupt debris] [--models spoerer-B,spoerer-BL,...] [--epochs N] [--out DIR]
    minifb show     MODEL [--size 16] [--dot FILE]

``train`` writes ``DIR/model.npz`` (after every epoch, so Ctrl-C keeps the last
checkpoint), ``DIR/metrics.json`` and ``DIR/curves.png``, first removing those of
an earlier run in ``DIR``. ``evaluate`` reads the
run's ``metrics.json`` beside the weights for its defaults (model, size, steps).
Bad arguments, and files or folders that cannot be read or written, give one line
on stderr (``minifb: error: ...``) and exit status 2; a training run whose loss stopped
being finite exits with 1, Ctrl-C with 130, and output cut off by its reader (``| head``)
with 141, quietly.

Run as the program (``minifb``, ``python -m minifb``), ``train`` and ``compare`` first call
:func:`minifb.memory.hold_freed_memory`: on glibc the process then keeps the memory its steps free for the
next ones, rather than taking it from the system again each time (``minifb train --epochs 1 --steps 16`` on
two cores: 11.9 s and 43,000 page faults, against 12.4 s and 423,000 without).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
import time

import numpy as np

from . import data as mfdata
from . import memory
from . import train as mftrain

__all__ = ["main", "build_parser", "render_text", "render_dot", "compare"]


class UsageError(Exception):
    """A bad command line; its message is printed as one line."""


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help layout, never breaking a line inside a hyphenated name (``spoerer-BLT``)."""

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing usage and exiting."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(message)


#: The largest image side the command line takes: a 1000-pixel digit set needs tens of GB (the
#: whole set is resized before --limit picks images), and no shipped model is meant for it.
MAX_SIZE = 256


def _image_side(text):
    value = _int_at_least(2)(text)
    if value > MAX_SIZE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SIZE}, got {value}")
    return value


def _int_at_least(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def _float(text) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _positive_float(text):
    value = _float(text)
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _non_negative_float(text):
    value = _float(text)
    if not (value >= 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _clip_norm(text):
    """``--clip``: a positive number, or ``none`` (also ``off`` or ``0``) for no clipping."""
    if text.strip().lower() in ("none", "off") or _float(text) == 0:
        return None
    return _positive_float(text)


def _choice(options, what):
    def parse(text):
        key = text.strip().lower()
        if key not in options:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}: expected one of {', '.join(options)}")
        return key
    parse.__name__ = what
    return parse


def _model_name(text):
    """A name from ``models.MODEL_NAMES`` in any letter case; a Spoerer kind alone (``BLT``) is short for
    ``spoerer-BLT``."""
    from . import models

    # any letter case, as --corrupt, --optimizer and --device take it (and models.spoerer("blt"))
    known = {name.lower(): name for name in models.MODEL_NAMES}
    known.update({kind.lower(): f"spoerer-{kind}" for kind in models.SPOERER_KINDS})
    key = text.strip().lower()
    if key not in known:
        raise argparse.ArgumentTypeError(f"unknown model {text!r}: expected one of {', '.join(models.MODEL_NAMES)}")
    return known[key]


def _model_list(text):
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of model names")
    return [_model_name(n) for n in names]


_D = mftrain.DEFAULTS
_DEVICES = ("cpu", "cuda")


def _one_of(names) -> str:
    return "one of " + ", ".join(names)


def _model_help() -> str:
    from . import models

    return f"{_one_of(models.MODEL_NAMES)} (a Spoerer kind alone, e.g. BLT, is short for spoerer-BLT)"


COMPARE_MODELS = ("spoerer-B", "spoerer-BK", "spoerer-BF", "spoerer-BL", "spoerer-BT", "spoerer-BLT")
"""What ``minifb compare`` trains by default: the feedforward control B and its two wider controls (BK: larger
kernels, BF: more feature maps; closer to the recurrent models' parameter counts, as in Spoerer et al.), then
the recurrent variants with lateral (L) and top-down (T) feedback."""


COMPARE_SIZE = 8
"""``minifb compare``'s default image side (28 when a LeNet model is among the models)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``minifb`` command."""
    parser = _Parser(prog="minifb", description="Train and inspect networks with feedback, built on minifb.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def common(p, epochs_default, size_help="default 16 for spoerer-*, 28 for lenet5*"):
        p.add_argument("--data", default=_D["data"], help="digits (shipped, default) or mnist:DIR")
        p.add_argument("--steps", type=_int_at_least(1), default=_D["steps"], help="timesteps T per image (default %(default)s)")
        p.add_argument("--epochs", type=_int_at_least(0), default=epochs_default,
                       help="passes over the training set (default %(default)s)")
        p.add_argument("--batch", type=_int_at_least(1), default=_D["batch"],
                       help="images per optimiser step (default %(default)s)")
        p.add_argument("--lr", type=_positive_float, default=_D["lr"],
                       help="peak learning rate, cosine decay (default %(default)s)")
        p.add_argument("--optimizer", type=_choice(mftrain.OPTIMIZERS, "optimizer"), default=_D["optimizer"],
                       metavar="NAME", help=f"{_one_of(mftrain.OPTIMIZERS)} (default %(default)s)")
        p.add_argument("--device", type=_choice(_DEVICES, "device"), default=_D["device"], metavar="DEVICE",
                       help=f"{_one_of(_DEVICES)} (default %(default)s)")
        p.add_argument("--seed", type=_int_at_least(0), default=_D["seed"],
                       help="seed of the weights, the data split and the corruptions (default %(default)s)")
        p.add_argument("--size", type=_image_side, default=None,
                       help=f"image side in pixels, 2 to {MAX_SIZE} ({size_help})")
        p.add_argument("--features", type=_int_at_least(1), default=None,
                       help="feature maps per layer of spoerer-* models (default 32)")
        p.add_argument("--limit", type=_int_at_least(1), default=None,
                       help="use only the first N training and N test images")
        p.add_argument("--truncate", type=_int_at_least(1), default=None, metavar="K",
                       help="truncated BPTT: detach the state every K steps (K at most --steps)")
        p.add_argument("--clip", type=_clip_norm, default=_D["clip"],
                       help="gradient-norm clip, or none (default %(default)s)")
        p.add_argument("--weight-decay", type=_non_negative_float, default=_D["weight_decay"],
                       help="L2 penalty for sgd and adam, decoupled decay for adamw (default %(default)s; "
                            "adamw uses 0.01 when it is 0)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    corruptions = _choice(mfdata.CORRUPTIONS, "corruption")
    corrupt_names = _one_of(mfdata.CORRUPTIONS)
    p = sub.add_parser("train", help="train a model with the recurrent protocol")
    p.add_argument("--model", type=_model_name, default=_D["model_name"], metavar="MODEL",
                   help=f"{_model_help()}; default %(default)s")
    p.add_argument("--corrupt", type=corruptions, default="none", metavar="NAME",
                   help=f"train and test on corrupted images: {corrupt_names} (default %(default)s)")
    p.add_argument("--out", default=None, help="output directory (default runs/MODEL)")
    common(p, _D["epochs"])

    p = sub.add_parser("evaluate", help="accuracy per timestep of saved weights")
    p.add_argument("--weights", required=True, help="a model.npz written by minifb train")
    p.add_argument("--model", type=_model_name, default=None, metavar="MODEL",
                   help=f"{_model_help()}; default: from metrics.json beside the weights")
    p.add_argument("--corrupt", type=corruptions, default="none", metavar="NAME",
                   help=f"test on corrupted images: {corrupt_names} (default %(default)s)")
    p.add_argument("--level", type=float, default=None, help="corruption strength (default per corruption)")
    p.add_argument("--data", default=None, help="default: from metrics.json, else digits")
    p.add_argument("--size", type=_image_side, default=None, help="default: from metrics.json")
    p.add_argument("--features", type=_int_at_least(1), default=None, help="default: from metrics.json")
    p.add_argument("--steps", type=_int_at_least(1), default=None, help="default: from metrics.json")
    p.add_argument("--seed", type=_int_at_least(0), default=None,
                   help="seed of the data split and the corruption (default: from metrics.json, else 0)")
    p.add_argument("--limit", type=_int_at_least(1), default=None, help="use only the first N test images")
    p.add_argument("--device", type=_choice(_DEVICES, "device"), default="cpu", metavar="DEVICE",
                   help=f"{_one_of(_DEVICES)} (default %(default)s)")

    p = sub.add_parser("compare", help="feedforward control against feedback models, matched budgets")
    p.add_argument("--models", type=_model_list, default=list(COMPARE_MODELS), metavar="MODEL,...",
                   help=f"comma-separated, control first, each {_model_help()} "
                        f"(default {', '.join(COMPARE_MODELS)})")
    p.add_argument("--corrupt", type=corruptions, default="debris", metavar="NAME",
                   help=f"training corruption: {corrupt_names} (default debris, as in Spoerer et al.; "
                        "none trains on clean digits)")
    p.add_argument("--out", default="runs/compare", help="output directory (default %(default)s)")
    common(p, _D["epochs"], size_help=f"default {COMPARE_SIZE}, or 28 with a LeNet model")

    p = sub.add_parser("show", help="print a model with its feedback paths; optionally write Graphviz .dot")
    p.add_argument("model", type=_model_name, metavar="MODEL", help=_model_help())
    p.add_argument("--size", type=_image_side, default=None,
                   help=f"image side, 2 to {MAX_SIZE} (default 16 for spoerer-*, 28 for lenet5*)")
    p.add_argument("--features", type=_int_at_least(1), default=None,
                   help="feature maps per layer of spoerer-* models (default 32)")
    p.add_argument("--dot", default=None, help="write a Graphviz .dot file here")
    return parser


# --------------------------------------------------------------------------
# train / evaluate
# --------------------------------------------------------------------------


def _train_kwargs(args):
    if args.truncate is not None and args.truncate > args.steps:
        raise UsageError(f"argument --truncate: must be at most --steps ({args.steps}), got {args.truncate}")
    return dict(data=args.data, steps=args.steps, epochs=args.epochs, batch=args.batch, lr=args.lr,
                optimizer=args.optimizer, device=args.device, seed=args.seed, limit=args.limit, size=args.size,
                truncate=args.truncate, clip=args.clip, weight_decay=args.weight_decay,
                features=args.features, progress=not args.no_progress)


def _check_device_and_kernels(device):
    """Refuse an unavailable ``device`` and a bad ``MINIFB_KERNELS`` (ValueError), before any work."""
    from . import backend, kernels

    try:
        backend.check_device(device)
    except RuntimeError as err:
        raise ValueError(str(err)) from None
    kernels.mode()   # raises ValueError naming MINIFB_KERNELS and its choices


def cmd_train(args) -> int:
    """``minifb train``: train a model, print its test accuracy per timestep and write its files; exit status."""
    _check_device_and_kernels(args.device)
    out = args.out or os.path.join("runs", args.model)
    kwargs = _train_kwargs(args)
    record = {}  # filled in as the run goes, so after Ctrl-C it tells whether this run wrote a checkpoint
    try:
        history = mftrain.train(model_name=args.model, corrupt=args.corrupt, out=out, history=record, **kwargs)
    except KeyboardInterrupt:
        epoch = record.get("checkpoint_epoch")
        print("\ninterrupted: " + (f"the checkpoint after epoch {epoch} is in {os.path.join(out, 'model.npz')}"
                                   if epoch is not None else "no epoch had finished, so no checkpoint was written"),
              file=sys.stderr)
        return 130
    final = history["final"]["test_accuracy"]
    print(f"test accuracy per timestep: {_steps_text(final)}")
    diverged = [r["epoch"] for r in history["epochs"] if not np.isfinite(r["loss"])]
    if "clean_accuracy" in history["final"]:
        print(f"clean test accuracy per timestep: {_steps_text(history['final']['clean_accuracy'])}")
    files = ["model.npz", "metrics.json"] + (["curves.png"] if os.path.exists(os.path.join(out, "curves.png"))
                                               else [])
    print(f"wrote {', '.join(os.path.join(out, f) for f in files)} in {history['seconds']:.1f}s")
    if diverged:
        print(f"minifb: error: the training loss was not finite from epoch {diverged[0]} on: the run diverged "
              "(try a smaller --lr, or --clip); the files hold its last weights", file=sys.stderr)
        return 1
    return 0


def _steps_text(accs) -> str:
    return "  ".join(f"t{t}={a:.4f}" for t, a in enumerate(accs, 1))


def _run_config(path) -> dict:
    """The ``"config"`` object of a run's ``metrics.json``; ValueError when the file is not one."""
    with open(path) as fh:
        try:
            metrics = json.load(fh)
        except ValueError as err:
            raise ValueError(f"{path} is not a minifb metrics file: {err}") from None
    config = metrics.get("config", {}) if isinstance(metrics, dict) else None
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a minifb metrics file: expected a JSON object with a \"config\" object")
    return config


def cmd_evaluate(args) -> int:
    """``minifb evaluate``: load saved weights and print the test accuracy per timestep; exit status."""
    from .serialization import load

    _check_device_and_kernels(args.device)
    if args.level is not None and args.corrupt == "none":
        raise UsageError("argument --level: applies to a corruption; give --corrupt too")
    if os.path.isdir(args.weights) and os.path.isfile(os.path.join(args.weights, "model.npz")):
        args.weights = os.path.join(args.weights, "model.npz")   # a run's folder, as train wrote it
    if not os.path.isfile(args.weights):
        what = "is a folder without a model.npz" if os.path.isdir(args.weights) else "not found"
        raise FileNotFoundError(f"weights file {what}: {args.weights}")
    config = {}
    meta = os.path.join(os.path.dirname(os.path.abspath(args.weights)), "metrics.json")
    if os.path.isfile(meta):
        config = _run_config(meta)
    model = args.model or config.get("model_name")
    if model is None:
        raise ValueError("evaluate: give --model (no metrics.json beside the weights to read it from)")
    size = args.size or config.get("size") or mftrain.default_size(model)
    features = args.features or config.get("features")
    steps = args.steps or config.get("steps", _D["steps"])
    spec = args.data or config.get("data", "digits")
    seed = args.seed if args.seed is not None else config.get("seed", 0)
    ds = mftrain.prepare_data(spec, size=size, seed=seed, limit=args.limit)
    net = mftrain.build_model(model, size, classes=ds.classes, channels=ds.image_shape[0], features=features)
    try:
        load(net, args.weights)
    except KeyError as err:
        raise ValueError(f"{args.weights} does not fit {model} at size {size}: {err}") from None
    except ValueError as err:
        if "does not match" not in str(err):  # not a weights file at all: load's message says so
            raise
        raise ValueError(f"{args.weights} does not fit {model} at size {size}: {err}") from None
    net.to(args.device)
    x, y = mftrain.corrupted(ds, ds.x_test, ds.y_test, args.corrupt, np.random.default_rng(seed + 1), args.level)
    accs = mftrain.evaluate(net, x, y, steps)
    what = args.corrupt if args.level is None or args.corrupt == "none" else f"{args.corrupt} (level {args.level})"
    print(f"{model} on {len(x)} {spec} test images ({size}x{size}, corruption {what}), "
          f"accuracy per timestep:")
    for t, a in enumerate(accs, 1):
        print(f"  t={t}  {a:.4f}")
    return 0


# --------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------


def _has_feedback(net) -> bool:
    return bool(getattr(net, "splitnames", lambda: [])())


def compare(models=COMPARE_MODELS, corrupt="debris", out=None, log=print, **train_kwargs) -> list:
    """Train each model with the same budget, then test it clean, with noise and with debris.

    Every model gets the same data, epochs, batch, learning rate, optimizer,
    timesteps and seed. The noisy and debris test sets are one fixed draw
    (``minifb.data.DEFAULT_LEVELS``) shared by all models; the accuracy reported
    is that of the last timestep.

    Args:
        models: model names, the feedforward control first.
        corrupt: the training corruption (default ``debris``, as Spoerer et al.; ``none``: clean digits).
        out: a directory for ``compare.md``, ``compare.png`` and ``compare.json`` (or ``None``).
        log: progress lines go here.
        **train_kwargs: passed to :func:`minifb.train.train_model` (``epochs``, ``size``, ...);
            ``features`` reaches the spoerer-* models only.

    Returns:
        One dict per model: ``model``, ``feedback``, ``parameters``, ``clean``, ``noise``,
        ``debris`` (accuracy per timestep, lists), ``seconds``.
    """
    if out is not None:
        os.makedirs(out, exist_ok=True)   # before any training: a bad --out fails at once, not after it
    rows = []
    tests = None
    config = dict(train_kwargs, corrupt=corrupt)
    for name in models:
        kwargs = dict(train_kwargs)
        if not name.startswith("spoerer-"):
            kwargs.pop("features", None)   # feature maps are a spoerer-* setting; LeNet's widths are fixed
        net, ds, history = mftrain.train_model(model_name=name, corrupt=corrupt, out=None,
                                               log=None, plot=False, **kwargs)
        if tests is None:
            seed = train_kwargs.get("seed", 0)
            tests = {c: mftrain.corrupted(ds, ds.x_test, ds.y_test, c, np.random.default_rng(seed + 100 + i))
                     for i, c in enumerate(("none", "noise", "debris"))}
        steps = history["config"]["steps"]
        config["weight_decay"] = history["config"]["weight_decay"]   # what was used: adamw's 0.01 for 0
        row = {"model": name, "feedback": _has_feedback(net), "parameters": history["parameters"],
               "seconds": history["seconds"]}
        for key, c in (("clean", "none"), ("noise", "noise"), ("debris", "debris")):
            row[key] = mftrain.evaluate(net, *tests[c], steps)
        rows.append(row)
        if log is not None:
            log(f"{name:<12} clean {row['clean'][-1]:.3f}  noise {row['noise'][-1]:.3f}  "
                f"debris {row['debris'][-1]:.3f}  ({row['seconds']:.0f}s)")
    if out is not None:
        table = compare_table(rows, corrupt, train_kwargs)
        with open(os.path.join(out, "compare.md"), "w") as fh:
            fh.write(table)
        with open(os.path.join(out, "compare.json"), "w") as fh:
            json.dump({"config": config, "rows": rows}, fh, indent=2)
        if not _plot_compare(rows, os.path.join(out, "compare.png")) and log is not None:
            log("note: matplotlib is not installed, so compare.png was not written")
    return rows


def compare_table(rows, corrupt="none", config=None) -> str:
    """The Markdown table of :func:`compare`'s rows (accuracy at the last timestep, and at the first)."""
    lv = mfdata.DEFAULT_LEVELS
    lines = [
        f"| model | feedback | parameters | clean | noise (std {lv['noise']}) | debris ({lv['debris']:.0%}) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        cells = [f"{r[k][-1]:.3f}" + (f" (t1 {r[k][0]:.3f})" if r["feedback"] and len(r[k]) > 1 else "")
                 for k in ("clean", "noise", "debris")]
        lines.append(f"| {r['model']} | {'yes' if r['feedback'] else 'no (control)'} | {r['parameters']:,} | "
                     + " | ".join(cells) + " |")
    if config:
        keys = ("data", "size", "steps", "epochs", "batch", "lr", "optimizer", "seed", "limit")
        settings = ", ".join(f"{k}={config[k]}" for k in keys if k in config and config[k] is not None)
        lines.append("")
        lines.append(f"Trained on {corrupt} images with matched budgets ({settings}); test accuracy at the last "
                     "timestep, at the first in parentheses for feedback models.")
    return "\n".join(lines) + "\n"


def _plot_compare(rows, path) -> bool:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    fig = Figure(figsize=(11, 3.8))
    FigureCanvasAgg(fig)
    ax_bar, ax_t = fig.subplots(1, 2)
    keys = ("clean", "noise", "debris")
    width = 0.8 / max(len(rows), 1)
    for i, r in enumerate(rows):
        ax_bar.bar(np.arange(3) + i * width, [r[k][-1] for k in keys], width, label=r["model"])
    ax_bar.set_xticks(np.arange(3) + 0.4 - width / 2, keys)
    ax_bar.set(ylim=(0, 1.18), ylabel="test accuracy (last timestep)", title="feedforward controls vs feedback")
    ax_bar.set_yticks(np.linspace(0, 1, 6))
    ax_bar.legend(fontsize=8, loc="upper center", ncol=3)
    for i, r in enumerate(rows):
        t = np.arange(1, len(r["debris"]) + 1)
        ax_t.plot(t, r["debris"], "o-", color=f"C{i}", label=f"{r['model']} debris")
        ax_t.plot(t, r["noise"], "s--", color=f"C{i}", alpha=0.6)
    ax_t.set(xlabel="timestep", ylabel="accuracy", title="accuracy against timestep (debris -, noise --)")
    ax_t.set_xticks(np.arange(1, len(rows[0]["debris"]) + 1) if rows else [])
    ax_t.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def cmd_compare(args) -> int:
    """``minifb compare``: train each model with the same budget, test it clean and corrupted, print and write
    the comparison; exit status."""
    _check_device_and_kernels(args.device)
    kwargs = _train_kwargs(args)
    start = time.perf_counter()
    # Six trainings: 8x8 by default (the digits' native resolution) keeps them to a few minutes on two cores.
    size = args.size or (28 if any(m.startswith("lenet") for m in args.models) else COMPARE_SIZE)
    kwargs["size"] = size
    print(f"compare: {', '.join(args.models)} on {args.data} {size}x{size}, trained on "
          f"{args.corrupt} images, {args.epochs} epochs each, T={args.steps}")
    try:
        rows = compare(args.models, corrupt=args.corrupt, out=args.out, **kwargs)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    print()
    print(compare_table(rows, args.corrupt, kwargs), end="")
    written = [f for f in ("compare.md", "compare.json", "compare.png") if os.path.exists(os.path.join(args.out, f))]
    print(f"\nwrote {', '.join(os.path.join(args.out, f) for f in written)} in {time.perf_counter() - start:.0f}s")
    return 0


# --------------------------------------------------------------------------
# show
# --------------------------------------------------------------------------


def _label(layer) -> str:
    from .nn.module import describe

    return re.sub(r"\s+", " ", describe(layer)).replace("( ", "(").replace(" )", ")")


def _flatten(net):
    """The network as rows ``(depth, kind, label, name)``; kind is layer, splitter, merger, open or close."""
    from . import nn
    from .nn.feedback import _is_plain_chain

    rows = []

    def walk(layers, depth):
        for layer in layers:
            if isinstance(layer, nn.Splitter):
                rows.append((depth, "splitter", f'Splitter("{layer.name}")', layer.name))
            elif isinstance(layer, nn.Merger):
                rows.append((depth, "merger", f'Merger("{layer.name}", {_label(layer.op)}, '
                                              f'{_label(layer.combine)})', layer.name))
            elif isinstance(layer, nn.FeedbackChain) or _is_plain_chain(layer):
                rows.append((depth, "open", f"{type(layer).__name__}(", None))
                walk(layer.layers, depth + 1)
                rows.append((depth, "close", ")", None))
            else:
                rows.append((depth, "layer", _label(layer), None))

    if hasattr(net, "layers"):
        rows.append((0, "open", f"{type(net).__name__}(", None))
        walk(net.layers, 1)
        rows.append((0, "close", ")", None))
    else:
        rows.append((0, "layer", _label(net), None))
    return rows


def _paths(rows):
    """Feedback paths ``(top_row, bottom_row, splitter_row, merger_row, name)``, longest first."""
    splitters = {r[3]: i for i, r in enumerate(rows) if r[1] == "splitter"}
    paths = []
    for i, r in enumerate(rows):
        if r[1] == "merger" and r[3] in splitters:
            s = splitters[r[3]]
            paths.append((min(i, s), max(i, s), s, i, r[3]))
    paths.sort(key=lambda p: p[0] - p[1])
    return paths


def render_text(net, title: str | None = None) -> str:
    """The network as text, each feedback path drawn in the left margin from its Splitter to its Merger.

    A path leaves its ``Splitter`` (``+---``) and enters its ``Merger``
    (``+-->``) at the next timestep; nested Chains are indented.

    Example:
        >>> from minifb.__main__ import render_text
        >>> import operator
        >>> net = nn.FeedbackChain(nn.Merger("h", nn.Dense(4, 4), operator.add),
        ...                        nn.Dense(4, 4, mf.relu), nn.Splitter("h"))
        >>> print(render_text(net))
             FeedbackChain(
        +-->   Merger("h", Dense(4, 4), +)
        |      Dense(4, 4, relu)
        +---   Splitter("h")   (fed back at the next timestep)
             )
        <BLANKLINE>
        1 feedback path(s), each from a Splitter to a Merger one timestep later:
          Splitter("h") -> Merger("h") via Dense(4, 4)
    """
    rows = _flatten(net)
    paths = _paths(rows)
    width = 3 * len(paths) + 1
    grid = [[" "] * width for _ in rows]
    for col, (top, bottom, s, m, _) in enumerate(paths):
        x = 3 * col
        for i in range(top + 1, bottom):
            grid[i][x] = "+" if grid[i][x] == "-" else "|"
        for i, tip in ((s, "-"), (m, ">")):
            grid[i][x] = "+"
            for j in range(x + 1, width - 1):
                grid[i][j] = "+" if grid[i][j] == "|" else "-"
            grid[i][width - 1] = tip
    lines = [title] if title else []
    fed_back = {p[2] for p in paths}
    for i, ((depth, kind, label, _), gutter) in enumerate(zip(rows, grid)):
        note = "   (fed back at the next timestep)" if i in fed_back else ""
        lines.append(("".join(gutter) if paths else "") + " " + "  " * depth + label + note)
    if paths:
        lines.append("")
        lines.append(f"{len(paths)} feedback path(s), each from a Splitter to a Merger one timestep later:")
        for top, bottom, s, m, name in sorted(paths, key=lambda p: (p[2], p[3])):
            op = rows[m][2].split(", ", 1)[1].rsplit(", ", 1)[0]
            lines.append(f'  Splitter("{name}") -> Merger("{name}") via {op}')
    else:
        lines.append("no feedback paths (a feedforward network)")
    return "\n".join(lines)


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def render_dot(net, title: str = "network") -> str:
    """The network as a Graphviz digraph: the forward stream top to bottom, feedback as dashed red edges.

    Render with ``dot -Tpng net.dot -o net.png``.
    """
    rows = [r for r in _flatten(net) if r[0] > 0 and r[1] not in ("open", "close")] or \
        [r for r in _flatten(net) if r[1] not in ("open", "close")]
    lines = [f'digraph "{_dot_escape(title)}" {{', "  rankdir=TB;", '  node [shape=box, fontname="Helvetica"];',
             '  input [shape=oval]; output [shape=oval];']
    ids = {}
    for i, (_, kind, label, name) in enumerate(rows):
        ids[i] = f"n{i}"
        style = {"splitter": ', shape=invhouse, style=filled, fillcolor="#cfe8ff"',
                 "merger": ', shape=house, style=filled, fillcolor="#ffd9cf"'}.get(kind, "")
        lines.append(f'  n{i} [label="{_dot_escape(label)}"{style}];')
    chain = ["input"] + [ids[i] for i in range(len(rows))] + ["output"]
    lines.append("  " + " -> ".join(chain) + ";")
    splitters = {r[3]: i for i, r in enumerate(rows) if r[1] == "splitter"}
    for i, (_, kind, _, name) in enumerate(rows):
        if kind == "merger" and name in splitters:
            lines.append(f'  n{splitters[name]} -> n{i} [style=dashed, color=red, constraint=false, '
                         f'label="{_dot_escape(name)} (t-1)"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def cmd_show(args) -> int:
    """``minifb show``: print a model's layers and feedback paths (and write a Graphviz file with ``--dot``);
    exit status."""
    size = args.size or mftrain.default_size(args.model)
    net = mftrain.build_model(args.model, size, features=args.features)
    n = mftrain.count_parameters(net)
    print(render_text(net, title=f"{args.model} for 1x{size}x{size} images, {n:,} parameters"))
    if args.dot:
        with open(args.dot, "w") as fh:
            fh.write(render_dot(net, args.model))
        print(f"wrote {args.dot} (render with: dot -Tpng {args.dot} -o {os.path.splitext(args.dot)[0]}.png)")
    return 0


# --------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------

COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "compare": cmd_compare, "show": cmd_show}
#: The commands that train: run as the program, they first call :func:`minifb.memory.hold_freed_memory`.
TRAINING_COMMANDS = ("train", "compare")


def main(argv=None) -> int:
    """Run the ``minifb`` command line; return the exit status (0 ok, 1 a diverged training run, 2 bad
    arguments, 130 interrupted, 141 output cut off by its reader).

    Example:
        >>> from minifb.__main__ import main
        >>> main(["show", "spoerer-BT", "--size", "8"])  # doctest: +ELLIPSIS
        spoerer-BT for 1x8x8 images, 13,994 parameters
        ...
        1 feedback path(s), each from a Splitter to a Merger one timestep later:
          Splitter("l2") -> Merger("l2") via ConvTranspose(...)
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if argv is None and args.command in TRAINING_COMMANDS:
            # Run as the program (the process is ours): keep freed memory for the next steps instead of
            # taking it from the system again at each one (minifb.memory). A caller of main([...]) decides
            # for its own process.
            memory.hold_freed_memory()
        return COMMANDS[args.command](args)
    except UsageError as err:
        print(f"minifb: error: {err} (see minifb --help)", file=sys.stderr)
        return 2
    except BrokenPipeError:   # `minifb show BLT | head`: the reader left; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no second error at exit's flush
        return 141
    except OSError as err:  # a file or directory that cannot be read or written
        text = f"{err.filename}: {err.strerror}" if err.filename and err.strerror else str(err)
        print("minifb: error: " + " ".join(text.split()), file=sys.stderr)
        return 2
    except ValueError as err:
        print("minifb: error: " + " ".join(str(err).split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
