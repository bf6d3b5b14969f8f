#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one run (a lent GPU machine is held for minutes, not hours):
#   1. the test files with GPU cases (the cuda-parametrised cases, tests/test_device_parity.py, the GPU
#      tests, the README's examples; tests/test_benchmarks.py checks that no such file is left out);
#   2. the GPU benchmark table (CuPy with fused kernels on and off, PyTorch CUDA eager beside them);
#   3. benchmarks/bench_kernels.py: each fused kernel against its unfused CuPy sequence, and
#      benchmarks/gpu_host_cost.py: what each piece of a launch costs the host;
#   4. the kernel tests under compute-sanitizer (memcheck, racecheck), CuPy's memory pool off so that
#      every array is its own allocation and an out-of-bounds access cannot land in a neighbour;
#   5. the README's training job (minifb train) on the GPU.
# Each step has its own time limit and the script goes on after a failure; the logs land in $OUT
# (default benchmarks/results/gpu; at most eight files, as a lent machine sends back). Usage, from the repository root:  bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
rm -f "$OUT"/*.log
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
status=0

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, remember a failure
  local name=$1 limit=$2
  shift 2
  echo "=== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" >>"$OUT/$name.log" 2>&1
  local rc=$?
  echo "=== $name: exit $rc after $((SECONDS - t0)) s"
  tail -n 4 "$OUT/$name.log"
  [ "$rc" = 0 ] || status=1
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c "import sys, numpy, cupy; print('python', sys.version.split()[0], 'numpy', numpy.__version__, \
'cupy', cupy.__version__, 'CUDA runtime', cupy.cuda.runtime.runtimeGetVersion())"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1
} 2>&1 | tee "$OUT/tests.log"   # the environment heads the test log

step tests 240 $PY -m pytest -q -p no:cacheprovider -rfE tests/test_device_parity.py \
  tests/test_kernels.py tests/test_ops_recurrent.py tests/test_tensor.py tests/test_models.py \
  tests/test_optim.py tests/test_serialization.py tests/test_nn_feedback.py tests/test_nn_module.py \
  tests/test_nn_recurrent.py tests/test_creation.py tests/test_readme.py tests/test_train.py tests/test_backend.py
step bench 150 $PY benchmarks/run.py --gpu-only --json "$OUT/bench.json"
step bench_kernels 60 $PY benchmarks/bench_kernels.py
step host_cost 60 $PY benchmarks/gpu_host_cost.py
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
no_pool='import sys, cupy, pytest; cupy.cuda.set_allocator(None); sys.exit(pytest.main(sys.argv[1:]))'
for tool in memcheck racecheck; do
  step "sanitizer_$tool" 90 "$sanitizer" --tool "$tool" --error-exitcode 3 --print-limit 20 \
    $PY -c "$no_pool" -q -p no:cacheprovider -x tests/test_kernels.py -k cuda
done
train_out=${TMPDIR:-/tmp}/minifb-gpu-train
step train 120 $PY -m minifb train --device cuda --no-progress --out "$train_out"
cat "$train_out/metrics.json" >>"$OUT/train.log" 2>/dev/null
exit $status
