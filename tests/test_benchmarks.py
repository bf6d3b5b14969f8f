"""The benchmark runner runs end to end and writes its JSON (how fast it is is never asserted)."""

import importlib.util
import json
from pathlib import Path

import sys

import numpy as np
import pytest

RUNNER = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


def _load_runner():
    spec = importlib.util.spec_from_file_location("minifb_bench_run", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runner_smoke_writes_json(tmp_path, capsys):
    """``run.py --smoke --json FILE``: tiny shapes, every section, valid JSON with the expected keys."""
    pytest.importorskip("torch")
    runner = _load_runner()
    out = tmp_path / "results.json"
    runner.main(["--smoke", "--json", str(out)])
    printed = capsys.readouterr().out
    assert "| W1 |" in printed and "Scaling in T" in printed

    result = json.loads(out.read_text(), parse_constant=_no_constant)
    for key in ("mode", "environment", "gemm", "rows", "scaling", "gpu", "targets_met", "memory_method"):
        assert key in result, key
    assert result["mode"] == "smoke"
    assert result["gemm"]["peak_gflops"] > 0
    names = [r["name"] for r in result["rows"]]
    assert names == ["W1", "W2", "W3", "conv2d", "conv_transpose2d", "matmul"]
    for row in result["rows"]:
        for key in ("minifb_s", "torch_s", "ratio", "flops", "memory"):
            assert key in row, (row["name"], key)
        assert row["minifb_s"] > 0 and row["flops"] > 0
    for row in result["rows"][:3]:  # same initial weights: the first losses agree
        assert row["loss_match"], (row["name"], row["first_loss_minifb"], row["first_loss_torch"])
    for row in result["rows"][3:]:  # the micro cases: output and input gradients against PyTorch's
        assert row["loss_match"] and 0 <= row["max_rel_error"] <= 1e-4, (row["name"], row["max_rel_error"])
    assert "output, gradients within" in printed
    # tiny shapes say nothing about the targets: no verdict, no targets met
    assert result["targets_met"] is None
    assert ") ok |" not in printed and " MISS" not in printed and "smoke: not judged" in printed
    for row in result["rows"]:
        assert row["verdict"] == "smoke: not judged" and row["noisy_reason"] is None or row["noisy"], row["name"]
        assert row["minifb_gflops"] > 0 and row["torch_gflops"] > 0 and row["minifb_gemm_percent"] > 0
    if sys.platform.startswith("linux"):   # the memory child ran, and measured something
        assert result["memory_error"] is None
        memory = result["rows"][0]["memory"]
        assert memory["minifb_peak_rss"] > 0 and memory["torch_peak_rss"] > 0
        assert memory["minifb_tracemalloc"] > 0
    assert set(result["scaling"]) == {"W1", "W2"}
    assert [r["T"] for r in result["scaling"]["W1"]["rows"]] == [1, 2]
    if sys.platform != "win32":   # each timed step's page faults, both libraries, in the JSON and the table
        for row in result["rows"] + result["scaling"]["W1"]["rows"]:
            assert isinstance(row["minifb_faults"], int) and row["minifb_faults"] >= 0, row["name"]
            assert isinstance(row["torch_faults"], int) and row["torch_faults"] >= 0, row["name"]
        assert "page faults per step (minifb / PyTorch)" in printed



def test_quick_run_is_the_documented_command_and_writes_json(tmp_path):
    """``python benchmarks/run.py --quick --json FILE`` exactly as the README gives it (a child process):
    it finishes and writes valid JSON for every case; its speed is not asserted."""
    import subprocess
    import sys

    out = tmp_path / "quick.json"
    proc = subprocess.run([sys.executable, str(RUNNER), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["mode"] == "quick"
    assert [r["name"] for r in result["rows"]] == ["W1", "W2", "W3", "conv2d", "conv_transpose2d", "matmul"]
    assert all(r["minifb_s"] > 0 for r in result["rows"])
    assert set(result["scaling"]) == {"W1", "W2"}
    assert "| W2 |" in proc.stdout


@pytest.mark.parametrize("profiler, expected", [
    ("cprofile", "function calls"),  # pstats' summary line
    ("pyinstrument", "Samples:"),   # pyinstrument's report header
    ("none", None),                  # the steps alone: no report
])
def test_runner_profiles_a_step(profiler, expected, capsys):
    """``--profile CASE --profiler P`` runs the case's steps under P and prints P's report."""
    if profiler == "pyinstrument":
        pytest.importorskip("pyinstrument")
    runner = _load_runner()
    runner.main(["--profile", "W1", "--smoke", "--quick", "--profiler", profiler])
    out = capsys.readouterr().out
    header, _, report = out.partition(f"ms/step under {profiler}\n")
    assert f"ms/step under {profiler}" in out and "W1 on cpu: 3 steps" in header
    assert (expected in report) if expected else not report.strip()


@pytest.mark.parametrize("argv, message", [
    (["--only", "nope"], "unknown case(s) 'nope'"),
    (["--only", "Matmul"], "unknown case(s) 'Matmul'"),
    (["--only", "W1,W9"], "unknown case(s) 'W9'"),
    (["--only", ","], "no case names"),
    (["--profile", "nope"], "invalid choice: 'nope'"),
    (["--threads", "0"], "must be at least 1"),
    (["--threads", "-3"], "must be at least 1"),
    (["--threads", "two"], "expected an integer"),
    (["--quick", "--smoke"], "not allowed with argument --quick"),   # allowed under --profile only
])
def test_runner_rejects_bad_arguments(argv, message, capsys):
    """A bad case name, thread count or mode is an argparse error (exit 2) before any work; one about the
    cases names the valid ones."""
    runner = _load_runner()
    with pytest.raises(SystemExit) as exit_info:
        runner.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if argv[0] in ("--only", "--profile"):
        for name in ("W1", "W2", "W3", "conv2d", "conv_transpose2d", "matmul"):
            assert name in err


def test_runner_case_names_are_the_built_cases():
    """``MICRO_CASES`` (what ``--only``/``--profile`` accept) names exactly the micro cases the runner builds."""
    runner = _load_runner()
    assert tuple(c.name for c in runner.build_micro(None, small=True)) == runner.MICRO_CASES
    assert runner._case_list("W1,micro") == {"W1", "micro"}


def test_gpu_check_runs_every_test_file_with_gpu_cases():
    """``benchmarks/gpu_check.sh`` names its test files (the whole suite is too long for a lent GPU):
    every file that has a GPU case -- a ``device``-parametrised test or a ``cuda_available()`` check --
    must be among them."""
    import re

    root = Path(__file__).resolve().parent.parent
    script = (root / "benchmarks" / "gpu_check.sh").read_text()
    listed = set(re.findall(r"tests/(test_\w+\.py)", script))
    with_gpu_cases = {f.name for f in (root / "tests").glob("test_*.py")
                      if re.search(r"cuda_available\(\)|def test_\w+\([^)]*\bdevice\b", f.read_text())}
    assert with_gpu_cases, "the scan found no GPU test at all"
    assert with_gpu_cases <= listed, f"not run by gpu_check.sh: {sorted(with_gpu_cases - listed)}"
    assert all((root / "tests" / name).is_file() for name in listed)


@pytest.mark.parametrize("ratio, target, text", [
    (1.100057, 1.1, "1.1001"),   # a miss that 2 decimals would show as the target itself
    (1.0999, 1.1, "1.0999"),     # a pass that 2 decimals would round up onto it
    (1.1, 1.1, "1.10"),          # exactly on the line: a pass, shown plainly
    (1.18, 1.2, "1.18"),
    (2.034, 1.5, "2.03"),
    (1.3, None, "1.30"),
])
def test_headline_ratio_never_rounds_onto_its_target(ratio, target, text):
    assert _load_runner()._ratio_text(ratio, target) == text


# ---- every benchmark measures the checkout it sits in ---------------------------------------------------
@pytest.mark.parametrize("script", ["run.py", "bench_micro.py", "bench_kernels.py", "conv_floor.py"])
def test_benchmark_scripts_import_their_own_checkout_first(script, tmp_path):
    """Run as scripts, the benchmarks import the minifb beside them, not another one earlier on the path
    (an installed minifb, or another worktree's): an A/B between two worktrees must time two codes."""
    import os
    import subprocess
    import sys

    other = tmp_path / "minifb"
    other.mkdir()
    (other / "__init__.py").write_text("raise SystemExit('imported another minifb, not the checkout')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.run([sys.executable, str(RUNNER.parent / script), "--help"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "another minifb" not in proc.stderr


def test_runner_records_the_minifb_it_measured_and_honours_threads_under_smoke(tmp_path, capsys):
    """The JSON and the header line say which minifb was timed; ``--threads`` is honoured under ``--smoke``
    (whose default is 1 thread); ``--only`` keeps to the named case."""
    pytest.importorskip("torch")
    import minifb

    runner = _load_runner()
    out = tmp_path / "one.json"
    result = runner.main(["--smoke", "--only", "matmul", "--no-scaling", "--threads", "3", "--json", str(out)])
    printed = capsys.readouterr().out
    where = str(Path(minifb.__file__).resolve().parent)
    assert result["minifb"] == where and json.loads(out.read_text())["minifb"] == where
    assert f"minifb {where}" in printed.splitlines()[0]
    assert result["threads"] == 3
    assert [r["name"] for r in result["rows"]] == ["matmul"]
    env = result["environment"]          # recorded after the thread counts were set: they were applied (3: not
    # the default of a 2-core machine, so a count left unapplied shows)
    if env["torch"] is not None:
        assert env["torch_threads"] == 3
    if isinstance(env["blas"], list):
        blas = [b for b in env["blas"] if b["internal_api"] in ("openblas", "mkl", "blis")]
        assert blas and all(b["num_threads"] == 3 for b in blas), env["blas"]


@pytest.mark.parametrize("argv, message", [
    (["--json", "{missing}/x.json"], "does not exist"),
    (["--json", "{tmp}"], "is a directory"),
    (["--profile", "W1", "--json", "{tmp}/p.json"], "--profile"),
    (["--json", "/proc/x.json"], "not writable"),        # os.access says yes here to root
])
def test_runner_refuses_an_unwritable_json_before_any_work(argv, message, tmp_path, capsys):
    """A JSON file that cannot be written, or one that ``--profile`` would never write, is an argparse error
    (exit 2) at once, not a traceback after the whole run."""
    runner = _load_runner()
    argv = [a.format(missing=tmp_path / "nope", tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["--smoke"] + argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "--json" in err and "Traceback" not in err


def test_json_check_leaves_the_file_as_it_found_it(tmp_path):
    """The ``--json`` check opens the file to be sure it can be written, and leaves no trace: a new file is
    removed again, an existing one keeps its contents."""
    runner = _load_runner()
    new = tmp_path / "new.json"
    assert runner._json_file(str(new)) == str(new) and not new.exists()
    old = tmp_path / "old.json"
    old.write_text("{}")
    runner._json_file(str(old))
    assert old.read_text() == "{}"


# ---- what the runner reports ---------------------------------------------------------------------------
def test_workload_flops_count_the_products_a_step_needs():
    """Each forward product, plus the weight and input gradients backprop computes: no gradient for a
    constant input or initial state, none for the layers after the state at the steps whose logits the loss
    does not read (W1, W2).  Hand counts at small shapes; the full shapes' totals as documented."""
    runner = _load_runner()
    B, T = 3, 2
    fb, l1, l2, l3 = (2 * B * i * o for i, o in ((128, 784), (784, 512), (512, 128), (128, 10)))
    # per timestep: every forward; weight gradients of fb, l1, l2 (and l3 at the last step); input
    # gradients of l1, l2 (and l3 at the last step), of fb only where s is not s0
    w1 = T * (fb + l1 + l2 + l3) + T * (fb + l1 + l2) + l3 + (T - 1) * fb + T * (l1 + l2) + l3
    assert runner.build_w1(None, batch=B, T=T).flops == w1
    c1, ct, c2, c3, d = (2 * B * 32 * 28 * 28 * 9, 2 * B * 64 * 14 * 14 * 32 * 16, 2 * B * 64 * 14 * 14 * 32 * 9,
                         2 * B * 64 * 7 * 7 * 64 * 9, 2 * B * 3136 * 10)
    w2 = T * (c1 + ct + c2 + c3 + d) + T * (c1 + ct + c2) + c3 + d + (T - 1) * ct + T * c2 + c3 + d
    assert runner.build_w2(None, batch=B, T=T).flops == w2
    V, H, T3 = 5, 7, 3
    ih, hh, head = 2 * B * V * 4 * H, 2 * B * H * 4 * H, 2 * B * H * V
    w3 = T3 * (ih + hh + head) + T3 * (ih + hh + head) + (T3 - 1) * hh + T3 * head
    assert runner.build_w3(None, batch=B, T=T3, vocab=V, hidden=H).flops == w3
    full = {name: runner.build(name, None, "full").flops for name in runner.WORKLOADS}
    assert full == {"W1": 1_731_526_656, "W2": 8_117_272_576, "W3": 1_962_934_272}


def test_gemm_rate_settles_before_each_library(monkeypatch):
    """NumPy's OpenBLAS threads spin on after its matmuls: PyTorch's rate is measured after a pause too."""
    pytest.importorskip("torch")
    import torch

    runner = _load_runner()
    pauses = []
    monkeypatch.setattr(runner, "_settle", pauses.append)
    gemm = runner.gemm_rate(torch, 32, settle_s=0.25)
    assert pauses == [0.25, 0.25] and gemm["torch_gflops"] > 0


def _row(name="W1", mine=(1.0, 1.1, 1.05), theirs=(1.0, 1.0, 1.0), loss_match=True):
    """A main-table row as ``time_case`` makes it, from per-step times."""
    runner = _load_runner()
    ratios = [m / t for m, t in zip(mine, theirs)]
    row = {"name": name, "desc": "shape", "flops": 10 ** 9, "steps": len(mine),
           "minifb_s": sorted(mine)[len(mine) // 2], "torch_s": sorted(theirs)[len(theirs) // 2],
           "minifb_all_s": list(mine), "torch_all_s": list(theirs), "ratio_paired": sorted(ratios)[len(ratios) // 2],
           "minifb_best_s": min(mine), "torch_best_s": min(theirs), "ratio_best": min(mine) / min(theirs),
           "first_loss_minifb": 2.3, "first_loss_torch": 2.3 if loss_match else 2.5, "loss_match": loss_match}
    row["ratio"] = row["minifb_s"] / row["torch_s"]
    row["noisy"] = runner.noise(row) is not None
    return row


@pytest.mark.parametrize("mine, theirs, loss_match, noisy, verdict", [
    ((1.0, 1.1, 1.05), (1.0, 1.0, 1.0), True, False, "ok"),             # W1's target is 1.2x
    ((1.3, 1.35, 1.3), (1.0, 1.0, 1.0), True, False, "MISS"),
    ((1.0, 1.5, 1.6), (1.0, 1.0, 1.05), True, True, "NOISY"),             # paired 1.5x, best 1.0x
    ((1.0, 2.1, 1.0), (1.0, 2.0, 1.0), True, True, "NOISY"),              # both spread 2.1x / 2x: minifb's
    ((1.0, 1.0, 1.0), (1.0, 2.5, 1.0), True, True, "NOISY"),              # PyTorch's steps spread 2.5x
    ((1.0, 1.1, 1.05), (1.0, 1.0, 1.0), False, False, "LOSS MISMATCH"),   # not the same computation
])
def test_unsteady_or_mismatched_rows_do_not_count_as_met(mine, theirs, loss_match, noisy, verdict):
    runner = _load_runner()
    row = _row(mine=mine, theirs=theirs, loss_match=loss_match)
    assert row["noisy"] is noisy
    assert runner.verdict(row) == verdict
    table = runner.markdown_main([row], {"peak_gflops": 100.0, "numpy_gflops": 100.0, "n": 64})
    assert f") {verdict} |" in table
    assert ("NOISY: W1 (" in table and "rerun" in table) is noisy


def test_linearity_blames_pytorch_only_for_a_jump_of_comparable_size():
    """minifb's cost per added timestep doubles between T = 4 and 8: a PyTorch jump of +30% the same way does
    not explain it, one of +60% (at least half of minifb's) is reported as a shared cause."""
    runner = _load_runner()
    Ts, mine = (1, 2, 4, 8), (0.010, 0.020, 0.040, 0.120)          # +10, +10, +20 ms per timestep

    def note(torch_last):
        return runner.linearity_note([{"T": T, "minifb_best_s": m, "torch_best_s": t}
                                      for T, m, t in zip(Ts, mine, (0.010, 0.020, 0.040, torch_last))])

    assert "NOT linear: T 4->8 +100%" in note(0.040 + 4 * 0.013) and "shared" not in note(0.040 + 4 * 0.013)
    assert "NOT linear" not in note(0.040 + 4 * 0.016) and "T 4->8 off the line for PyTorch too" in note(0.040 + 4 * 0.016)


def test_gpu_section_honours_only(monkeypatch):
    """``--only`` selects the GPU table's cases as it does the CPU table's (checked here with stand-ins for
    the GPU and the cases, so it runs without one)."""
    import types

    runner = _load_runner()
    built = []

    def fake_case(name):
        built.append(name)
        return runner.Case(name, "shape", lambda: 1.0, None, 1)

    fake_cp = types.SimpleNamespace(cuda=types.SimpleNamespace(
        Device=lambda: types.SimpleNamespace(synchronize=lambda: None),
        runtime=types.SimpleNamespace(getDeviceProperties=lambda i: {"name": b"fake GPU"})))
    monkeypatch.setattr(runner.backend, "cuda_available", lambda: True)
    monkeypatch.setattr(runner.backend, "cupy_or_none", lambda: fake_cp)
    monkeypatch.setattr(runner, "build", lambda name, torch, mode, device="cpu": fake_case(name))
    monkeypatch.setattr(runner, "build_micro",
                        lambda torch, device="cpu", small=False: [fake_case(n) for n in runner.MICRO_CASES])
    monkeypatch.setattr(runner, "time_case", lambda case, *a, **k: {"minifb_s": 1.0, "torch_s": None})

    gpu = runner.gpu_section("smoke", 1, 0, None, only={"W2", "matmul"})
    assert [r["name"] for r in gpu["rows"]] == ["W2", "matmul"]
    built.clear()
    gpu = runner.gpu_section("smoke", 1, 0, None, only={"micro"})
    assert [r["name"] for r in gpu["rows"]] == list(runner.MICRO_CASES)
    assert "W1" not in built
    gpu = runner.gpu_section("smoke", 1, 0, None)
    assert [r["name"] for r in gpu["rows"]] == list(runner.WORKLOADS + runner.MICRO_CASES)


@pytest.mark.parametrize("argv, message", [
    (["--repeat", "0"], "must be at least 1"),
    (["--repeat", "-2"], "must be at least 1"),
    (["--burst", "0"], "must be at least 1"),
    (["--burst", "x"], "expected an integer"),
])
def test_bench_kernels_rejects_bad_counts(argv, message, capsys, monkeypatch):
    """``--repeat`` and ``--burst`` below 1 would end in StatisticsError / ZeroDivisionError on a GPU:
    an argparse error (exit 2) instead."""
    import sys

    spec = importlib.util.spec_from_file_location("minifb_bench_kernels", RUNNER.parent / "bench_kernels.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_info:
        module.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and argv[0] in err


# ---- conv_floor.py: the copy-free bound ----------------------------------------------------------------
def _load_conv_floor():
    spec = importlib.util.spec_from_file_location("minifb_bench_conv_floor", RUNNER.parent / "conv_floor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_conv_floor_switch_skips_the_copies_and_puts_them_back():
    """With the stand-ins on, a convolution multiplies never-written (zero) columns, so its output is its
    bias alone; switched off, the real copies are back and the output is the convolution again."""
    import numpy as np

    import minifb as mf
    from minifb.ops import conv

    floor = _load_conv_floor()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    switch = floor.CopyFree()
    with mf.kernels.use("off"), mf.cpu_conv.use(False):      # the im2col path, as conv_floor.py times it
        real = conv.conv2d(mf.Tensor(x), mf.Tensor(w), mf.Tensor(b), padding=1).numpy()
        try:
            switch.on(True)
            skipped = conv.conv2d(mf.Tensor(x), mf.Tensor(w), mf.Tensor(b), padding=1).numpy()
        finally:
            switch.on(False)
        again = conv.conv2d(mf.Tensor(x), mf.Tensor(w), mf.Tensor(b), padding=1).numpy()
    np.testing.assert_array_equal(skipped, np.broadcast_to(b[:, None, None], skipped.shape))
    assert np.abs(real - skipped).max() > 1.0
    np.testing.assert_array_equal(again, real)
    assert all(getattr(conv, name) is fn for name, fn in switch.real.items())


def test_conv_floor_smoke_prints_its_table(capsys):
    """``conv_floor.py --smoke`` times all three cases both ways and prints one table row each."""
    floor = _load_conv_floor()
    rows = floor.main(["--smoke"])
    assert [r["name"] for r in rows] == ["conv2d", "conv_transpose2d", "W2"]
    assert all(r["as_is_s"] > 0 and r["copy_free_s"] > 0 and r["copy_bytes"] > 0 for r in rows)
    printed = capsys.readouterr().out
    assert "copy-free" in printed and all(f"| {name} |" in printed for name in floor.CASES)


def test_conv_floor_rejects_an_unknown_case(capsys):
    floor = _load_conv_floor()
    with pytest.raises(SystemExit) as exit_info:
        floor.main(["--only", "conv3d"])
    assert exit_info.value.code == 2 and "conv3d" in capsys.readouterr().err


def test_conv_floor_copy_free_step_leaves_the_parameters_as_they_were():
    """The copy-free W2 step trains on garbage gradients; ``_timed`` with ``keep`` puts the parameters back,
    so the steps as they are keep training the real network: their losses are those of W2 trained alone."""
    import numpy as np

    import minifb as mf
    from minifb.ops import conv

    floor = _load_conv_floor()
    runner = floor.runner
    torch = runner._import_torch(1) if importlib.util.find_spec("torch") else None   # as conv_floor builds it
    switch = floor.CopyFree()
    with mf.kernels.use("off"), np.errstate(all="ignore"):
        case = runner.build("W2", torch, "smoke")
        before = [p.data.copy() for p in case.params]
        assert before

        def copy_free():
            switch.on(True)
            try:
                case.mf_step()
            finally:
                switch.on(False)

        floor._timed(copy_free, 0.0, keep=case.params)
        for p, values in zip(case.params, before):
            np.testing.assert_array_equal(p.data, values)
        floor._timed(copy_free, 0.0)                          # without keep the step does change them
        assert any(not np.array_equal(p.data, values) for p, values in zip(case.params, before))

        case = runner.build("W2", torch, "smoke")
        as_is, real_step = [], case.mf_step

        def recording():
            loss = real_step()
            if conv._col2im is not switch.fake["_col2im"]:
                as_is.append(loss)
            return loss

        case.mf_step = recording
        floor.measure(case, switch, rounds=2, settle_s=0.0)
        alone = runner.build("W2", None, "smoke")
        np.testing.assert_allclose(as_is, [alone.mf_step() for _ in as_is], rtol=1e-5)


# ---------------------------------------------------------------- found by mutation testing (session 13)
def _scripted_time_case(runner, monkeypatch, mine, theirs, first_losses=(2.3, 2.3), agreement=None,
                        fault_pages=None, fault_counter=None, **kw):
    """``time_case`` over a stand-in case whose timed steps take the given seconds (no real step, no pause);
    returns the row and the order in which the two libraries' steps ran. With ``fault_pages`` ({"minifb": [...],
    "torch": [...]}) each timed step also takes that many page faults, read from ``fault_counter`` ([0])."""
    order, times = [], {"minifb": list(mine), "torch": list(theirs)}

    def pt_step():
        return first_losses[1]

    def fake_run_step(step, settle_s):
        who = "torch" if step is pt_step else "minifb"
        order.append(who)
        if fault_pages is not None:
            fault_counter[0] += fault_pages[who].pop(0)
        return times[who].pop(0)

    monkeypatch.setattr(runner, "_run_step", fake_run_step)
    if fault_counter is not None:
        monkeypatch.setattr(runner, "_minor_faults", lambda: fault_counter[0])
    case = runner.Case("W1", "shape", lambda: first_losses[0], pt_step, 10 ** 9, agreement=agreement)
    return runner.time_case(case, **kw), order


def test_time_case_pairs_neighbouring_steps_and_alternates_who_goes_first(monkeypatch):
    """The paired ratio is the median of the per-pair ratios (not a ratio of medians or means), the best ratio
    compares the two fastest steps, and the libraries take turns going first (mf, pt, pt, mf, ...)."""
    runner = _load_runner()
    row, order = _scripted_time_case(runner, monkeypatch, mine=(1.0, 4.0, 2.0), theirs=(2.0, 1.0, 4.0),
                                     steps=3, warmup=0, settle_s=0.0)
    assert row["ratio_paired"] == 0.5                  # ratios 0.5, 4, 0.5; the medians' and means' ratio is 1
    assert row["ratio"] == 1.0 and row["ratio_best"] == 1.0
    assert row["minifb_all_s"] == [1.0, 4.0, 2.0] and row["torch_all_s"] == [2.0, 1.0, 4.0]
    assert order == ["minifb", "torch", "torch", "minifb", "minifb", "torch"]
    assert row["steps"] == 3 and row["loss_match"] and row["noisy"]   # paired 0.5x vs best 1.0x


def test_hold_memory_is_asked_for_recorded_and_shown(tmp_path, monkeypatch, capsys):
    """``--hold-memory`` calls ``minifb.memory.hold_freed_memory`` once, before any case runs (a stand-in here:
    the real one would change this test process's allocator for good), and the JSON and the header say so;
    without the flag it is not called and the JSON says False."""
    runner = _load_runner()
    calls = []
    monkeypatch.setattr(runner, "hold_freed_memory", lambda: calls.append(1) or True)
    out = tmp_path / "held.json"
    runner.main(["--smoke", "--only", "W1", "--no-scaling", "--hold-memory", "--json", str(out)])
    assert calls == [1]
    assert json.loads(out.read_text())["hold_freed_memory"] is True
    assert "freed memory held (--hold-memory)" in capsys.readouterr().out
    runner.main(["--smoke", "--only", "W1", "--no-scaling", "--json", str(out)])
    assert calls == [1] and json.loads(out.read_text())["hold_freed_memory"] is False
    assert "freed memory held" not in capsys.readouterr().out


def test_time_case_records_the_median_page_faults_of_each_librarys_timed_steps(monkeypatch):
    """The faults counted around each timed step are that step's own: minifb's steps here take 7, 1 and 5
    pages, PyTorch's 30, 10 and 20, so the medians are 5 and 20 (not a mix of the two, nor a total)."""
    runner = _load_runner()
    counter = [0]
    pages = {"minifb": [7, 1, 5], "torch": [30, 10, 20]}
    row, order = _scripted_time_case(runner, monkeypatch, mine=(1.0, 1.0, 1.0), theirs=(1.0, 1.0, 1.0),
                                     steps=3, warmup=0, settle_s=0.0,
                                     fault_pages=pages, fault_counter=counter)
    assert row["minifb_faults"] == 5 and row["torch_faults"] == 20
    monkeypatch.setattr(runner, "_minor_faults", lambda: None)   # no resource module (Windows)
    row, _ = _scripted_time_case(runner, monkeypatch, mine=(1.0, 1.0), theirs=(1.0, 1.0), steps=2, warmup=0,
                                 settle_s=0.0)
    assert row["minifb_faults"] is None and row["torch_faults"] is None


def test_linearity_names_page_faults_only_when_they_grow_with_t():
    """Faults that grow from a few to tens of thousands are named, with PyTorch's beside them; a few hundred,
    or many at every T alike, are not."""
    runner = _load_runner()
    Ts = (1, 2, 4, 8, 16, 32)
    times = [0.013 * T for T in Ts]
    rows = _scaling_rows(Ts, times)
    for r, mine, theirs in zip(rows, (0, 3, 5, 9, 20352, 57985), (100, 200, 400, 8528, 13168, 15880)):
        r["minifb_faults"], r["torch_faults"] = mine, theirs
    note = runner.linearity_note(rows)
    assert "page faults per step grow to 57,985 at T = 32" in note and "PyTorch's: 100, 200" in note
    for flat in ((300,) * 6, (20000,) * 6, (0, 0, 0, 0, 0, 999)):
        for r, f in zip(rows, flat):
            r["minifb_faults"] = f
        assert "page faults" not in runner.linearity_note(rows), flat
    for r in rows:
        r["minifb_faults"] = None
    assert "page faults" not in runner.linearity_note(rows)


def test_time_case_stops_after_the_pair_that_passes_the_budget_but_times_two_pairs(monkeypatch):
    runner = _load_runner()
    row, _ = _scripted_time_case(runner, monkeypatch, mine=[1.0] * 10, theirs=[1.0] * 10,
                                 steps=10, warmup=0, budget_s=1.5, settle_s=0.0)
    assert row["steps"] == 2 and len(row["minifb_all_s"]) == len(row["torch_all_s"]) == 2
    row, _ = _scripted_time_case(runner, monkeypatch, mine=[1.0] * 10, theirs=[1.0] * 10,
                                 steps=10, warmup=0, budget_s=4.5, settle_s=0.0)
    assert row["steps"] == 3                           # 4 s after two pairs is not past 4.5 s: a third pair


@pytest.mark.parametrize("first_losses, agreement, match", [
    ((2.3, 2.3), None, True),
    ((2.3, 2.3 + 1e-4), None, True),       # within 1e-4 relative
    ((2.3, 2.302), None, False),           # 1e-3 apart: not the same first step
    ((None, None), 1e-5, True),            # a micro case: output and gradients within 1e-4 of PyTorch's
    ((None, None), 1e-3, False),
])
def test_time_case_loss_match_tolerances(first_losses, agreement, match, monkeypatch):
    runner = _load_runner()
    row, _ = _scripted_time_case(runner, monkeypatch, mine=(1.0, 1.0), theirs=(1.0, 1.0),
                                 first_losses=first_losses, agreement=agreement, steps=2, warmup=0, settle_s=0.0)
    assert row["loss_match"] is match
    assert runner.verdict(row) == ("ok" if match else "LOSS MISMATCH")


def test_noise_gap_is_a_fraction_of_the_larger_ratio():
    """Paired 1.3x against best 1.0x: a gap of 0.3, within 25% of 1.3 (0.325), so the row is steady (a MISS);
    paired 1.4x against 1.0x is past it (0.35 of 0.4): NOISY."""
    runner = _load_runner()
    steady = _row(mine=(1.0, 1.3, 1.3))
    assert steady["ratio_paired"] == 1.3 and steady["ratio_best"] == 1.0
    assert runner.noise(steady) is None and runner.verdict(steady) == "MISS"
    noisy = _row(mine=(1.0, 1.4, 1.4))
    assert runner.noise(noisy) == "paired 1.40x vs best 1.00x" and runner.verdict(noisy) == "NOISY"


def test_main_counts_only_ok_rows_as_targets_met_in_its_json(tmp_path, monkeypatch, capsys):
    """``targets_met`` in the JSON: a NOISY row whose paired ratio is under its target is not met, nor is a
    memory ratio over its target (W2's 1.5x); a steady row under its target is. Everything slow is stood in for."""
    runner = _load_runner()
    rows = {"W1": _row("W1", mine=(1.0, 1.0, 1.0), theirs=(1.0, 2.5, 1.0)),     # paired 1.0x <= 1.2x, but NOISY
            "W2": _row("W2")}                                                  # 1.05x <= 1.5x, steady
    assert runner.verdict(rows["W1"]) == "NOISY" and runner.verdict(rows["W2"]) == "ok"
    monkeypatch.setattr(runner, "_import_torch", lambda threads: None)
    monkeypatch.setattr(runner, "_limit_blas", lambda threads: None)
    monkeypatch.setattr(runner, "environment", lambda: {"blas": "stub", "cpu": "stub", "cores": 2, "torch": "stub",
                                                        "OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None})
    monkeypatch.setattr(runner, "gemm_rate", lambda torch, n, settle_s=0: {"peak_gflops": 100.0,
                                                                          "numpy_gflops": 100.0, "n": n})
    monkeypatch.setattr(runner, "build", lambda name, torch, mode, T=None, device="cpu":
                        runner.Case(name, "shape", lambda: 1.0, None, 10 ** 9))
    monkeypatch.setattr(runner, "time_case", lambda case, *a, **k: dict(rows[case.name]))
    monkeypatch.setattr(runner, "measure_memory", lambda cases, mode, threads: {
        "W1": {"minifb_peak_rss": 100, "torch_peak_rss": 100}, "W2": {"minifb_peak_rss": 300, "torch_peak_rss": 100}})
    monkeypatch.setattr(runner, "gpu_section", lambda *a, **k: {"skipped": "stub"})
    out = tmp_path / "r.json"
    runner.main(["--quick", "--only", "W1,W2", "--no-scaling", "--json", str(out)])   # --smoke judges nothing
    result = json.loads(out.read_text(), parse_constant=_no_constant)
    assert result["targets_met"] == {"W1": False, "W2": True, "W2 memory": False}
    assert [(r["verdict"], r["noisy_reason"]) for r in result["rows"]] == [("NOISY", "PyTorch's steps spread 2.5x"),
                                                                           ("ok", None)]
    assert [r["minifb_gflops"] for r in result["rows"]] == pytest.approx([1.0, 1 / 1.05])    # 1 GFLOP in 1 / 1.05 s
    assert [r["minifb_gemm_percent"] for r in result["rows"]] == pytest.approx([1.0, 1 / 1.05])  # of 100 GFLOP/s
    assert [r["memory_ratio"] for r in result["rows"]] == [1.0, 3.0]
    assert "| W1 |" in capsys.readouterr().out


def test_linearity_flags_a_moderate_jump_and_ignores_a_pytorch_drop():
    """A +40% marginal cost is past the 25% line; a PyTorch marginal cost that falls where minifb's rises does not
    explain minifb's jump; two T values are too few to judge."""
    runner = _load_runner()
    Ts = (1, 2, 4, 8)

    def note(mine, theirs):
        return runner.linearity_note([{"T": T, "minifb_best_s": m, "torch_best_s": t}
                                      for T, m, t in zip(Ts, mine, theirs)])

    flat = (0.010, 0.020, 0.040, 0.080)
    assert "NOT linear: T 4->8 +40%" in note((0.010, 0.020, 0.040, 0.096), flat)
    drop = note((0.010, 0.020, 0.040, 0.120), (0.010, 0.020, 0.040, 0.056))   # PyTorch -60% there
    assert "NOT linear: T 4->8 +100%" in drop and "PyTorch too" not in drop
    assert note((0.010, 0.020, 0.040, 0.080), flat).endswith("linear in T (each within 25% of the median)")
    assert runner.linearity_note([{"T": 1, "minifb_best_s": 0.01}, {"T": 2, "minifb_best_s": 0.02}]) \
        == "too few T values to judge linearity"


def test_a_loss_mismatch_outranks_noise():
    """Two libraries that did not compute the same step are a LOSS MISMATCH, noisy timings or not."""
    runner = _load_runner()
    row = _row(mine=(1.0, 1.5, 1.6), theirs=(1.0, 1.0, 1.05), loss_match=False)
    assert row["noisy"] and runner.verdict(row) == "LOSS MISMATCH"


# ---------------------------------------------------------------- found by the audit (session 14)
def _no_constant(name):
    """``json.loads``' ``parse_constant``: the runner's JSON is strict (no NaN / Infinity)."""
    raise ValueError(f"non-standard JSON constant {name}")


def _torch_param(case, shape):
    """The one PyTorch parameter of this shape among the case's (minifb, PyTorch) gradient pairs."""
    found = [tp for _, tp in case.grad_pairs if tuple(tp.shape) == shape]
    assert len(found) == 1, shape
    return found[0]


def test_smoke_json_has_small_gradient_agreement_for_the_workloads(tmp_path):
    """W3's first loss is ~ln 64 whatever its weights: the first step's gradients of every parameter are
    compared with PyTorch's as well, and recorded in the JSON (and the table)."""
    pytest.importorskip("torch")
    runner = _load_runner()
    out = tmp_path / "w.json"
    runner.main(["--smoke", "--only", "W1,W2,W3", "--no-scaling", "--json", str(out)])
    rows = json.loads(out.read_text(), parse_constant=_no_constant)["rows"]
    assert [r["name"] for r in rows] == ["W1", "W2", "W3"]
    for row in rows:
        assert 0 <= row["grad_max_rel_error"] <= 1e-4 and row["grad_match"] and row["loss_match"], row["name"]


@pytest.mark.parametrize("name", ["W1", "W3"])
def test_a_broken_pytorch_peer_is_a_gradient_mismatch(name):
    """A PyTorch weight changed after the copy (W3's recurrent weights zeroed: its first loss still agrees to
    1e-4) makes the first step's gradients disagree: the row is a LOSS MISMATCH."""
    torch = pytest.importorskip("torch")
    runner = _load_runner()
    case = runner.build(name, torch, "smoke")
    with torch.no_grad():
        if name == "W3":
            _torch_param(case, (4 * 256, 256)).zero_()            # weight_hh
        else:
            _torch_param(case, (784, 128)).mul_(1.01)              # fb's weight, 1% off
    row = runner.time_case(case, steps=1, warmup=0, settle_s=0.0)
    assert row["grad_max_rel_error"] > runner.GRAD_RTOL and row["grad_match"] is False
    assert row["loss_match"] is False and runner.verdict(row) == "LOSS MISMATCH"
    if name == "W3":
        assert abs(row["first_loss_minifb"] - row["first_loss_torch"]) <= 1e-4 * row["first_loss_torch"]
    table = runner.markdown_main([row], {"peak_gflops": 100.0, "numpy_gflops": 100.0, "n": 64})
    assert "gradients NO" in table


def test_gradient_agreement_is_the_largest_relative_error():
    """``_grad_agreement`` over (minifb, PyTorch) parameter pairs: the largest difference relative to the PyTorch
    gradient's largest magnitude; a missing gradient is a mismatch."""
    torch = pytest.importorskip("torch")
    import types

    runner = _load_runner()

    def pair(mine, theirs):
        tp = torch.zeros(len(theirs), requires_grad=True)
        tp.grad = torch.tensor(theirs)
        return types.SimpleNamespace(grad=np.asarray(mine, dtype=np.float32)), tp

    assert runner._grad_agreement([pair([1.0, 2.0], [1.0, 2.0])]) == 0.0
    assert runner._grad_agreement([pair([1.0, 2.0], [1.0, 2.0]), pair([0.0, 4.1], [0.0, 4.0])]) \
        == pytest.approx(0.025, rel=1e-5)
    assert runner._grad_agreement([]) is None
    missing = types.SimpleNamespace(grad=None), torch.zeros(1)
    assert runner._grad_agreement([missing]) > runner.GRAD_RTOL


def _scaling_rows(Ts, mine, theirs=None, mems=None):
    return [{"T": T, "minifb_best_s": m, "torch_best_s": None if theirs is None else theirs[i],
             **({} if mems is None else {"memory": {"minifb_peak_rss": mems[i]}})}
            for i, (T, m) in enumerate(zip(Ts, mine))]


def test_linearity_judges_peak_memory_by_the_same_rule():
    """Step times linear in T, peak memory quadratic: the memory is reported NOT linear; linear memory is not."""
    runner = _load_runner()
    Ts = (1, 2, 4, 8, 16, 32)
    times = [0.01 * T for T in Ts]
    quadratic = runner.linearity_note(_scaling_rows(Ts, times, mems=[2 ** 20 * (5 + T * T) for T in Ts]))
    assert "memory NOT linear" in quadratic and "T 16->32 +300%" in quadratic
    linear = runner.linearity_note(_scaling_rows(Ts, times, mems=[2 ** 20 * (5 + 3 * T) for T in Ts]))
    assert "NOT linear" not in linear and "memory linear in T" in linear


@pytest.mark.parametrize("mine, expected", [
    ((0.030, 0.029, 0.070), "cannot judge"),               # -1 ms per added timestep, then +20.5
    ((0.030, 0.020, 0.025), "cannot judge"),               # no sign-flipped percentages
    ((0.010, 0.020, 0.020 + 2 * 0.016), "NOT linear: T 2->4 +60%"),   # two costs, 1.6x apart
    ((0.010, 0.020, 0.020 + 2 * 0.012), "linear in T (within 1.25x of each other)"),
])
def test_linearity_edge_cases_of_quick(mine, expected):
    """``--quick`` has two added-timestep costs (T = 1, 2, 4): they are set against each other (their mean is a
    median no cost can be 25% off); a cost <= 0 cannot be judged (no inf, nan or sign-flipped percentage)."""
    note = _load_runner().linearity_note(_scaling_rows((1, 2, 4), mine))
    assert expected in note
    assert "inf" not in note and "nan" not in note
    assert ("NOT linear" in note) is expected.startswith("NOT")


def test_linearity_cannot_judge_a_median_cost_at_or_below_zero():
    runner = _load_runner()
    note = runner.linearity_note(_scaling_rows((1, 2, 4, 8), (0.05, 0.04, 0.03, 0.04)))   # median < 0
    assert "cannot judge" in note and "NOT linear" not in note and "%" not in note
    note = runner.linearity_note(_scaling_rows((1, 2, 4, 8), (0.01, 0.02, 0.04, 0.08),
                                               mems=[100, 100, 100, 100]))                 # memory flat
    assert "memory cannot judge" in note and "nan" not in note and "inf" not in note


def test_json_is_strict_and_the_header_says_n_a_without_pytorch(tmp_path):
    """A NaN or infinity anywhere in the results is written as null (strict JSON, which ``parse_constant``
    refuses otherwise); without PyTorch the GEMM header line says "n/a", not "nan"."""
    runner = _load_runner()
    out = tmp_path / "r.json"
    runner.write_json(out, {"a": float("nan"), "rows": [{"b": np.float64("inf"), "c": 1.5, "d": np.float32(2.0)}]})
    assert json.loads(out.read_text(), parse_constant=_no_constant) == {"a": None, "rows": [{"b": None, "c": 1.5,
                                                                                             "d": 2.0}]}
    row = _row()
    row["torch_s"] = None
    table = runner.markdown_main([row], {"peak_gflops": 100.0, "numpy_gflops": 100.0, "n": 64})
    assert "PyTorch n/a;" in table and "nan" not in table
