#!/usr/bin/env bash
# The GPU measurements of the speed section, in one call on a machine with one CUDA GPU:
#   1. bench/fit.py --all-tasks (each task's seed through its own score) on the GPU and on the CPU;
#   2. bench/fit.py --gpu's large bandit batch on the GPU (4096 restarts), and 16 restarts of it on the CPU;
#   3. the GPU-marked tests;
#   4. a 200-evaluation bandit run, four workers sharing the GPU (num_gpus_per_worker: 0.25);
#   5. the neuron task's per-candidate fit (bench/fit.py --neuron) on the GPU and on the CPU.
# Each step has a time limit of its own, so one that hangs or is slow leaves the others their time; the whole
# script ends within about 520 s; bench/fit.py prints each row when it is done, so a step cut off at its limit
# still shows the rows it finished. Logs go to $OUT (default: bench/gpu_out); a step that fails is said and skipped.
#
# Where Python lacks some of the project's dependencies and nothing can be installed from the network, put wheels
# in .whl/ beside this checkout's root (for Python 3.12 on x86_64:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     sqlalchemy pydantic pydantic-core annotated-types typing-inspection pooch platformdirs
# with the versions that match each other). Ray is not needed: the run uses the local (thread) runner.
# The ddm, tuning and neuron steps read their datasets from DISCOVER_DATA_MIRROR (default: .gpu-data/ here, laid out
# like ../shared/data: roitman-shadlen-rt, goris2015-v1, bbp-rat-cortex-ccamp).
#
#   bash bench/gpu_check.sh            # on the GPU machine, from the checkout's root
#   CPU_ONLY=1 bash bench/gpu_check.sh # a dry run on a machine without a GPU: every step on the CPU, the run
#                                      # without a GPU share, and no GPU-marked tests
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/gpu_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export DISCOVER_DATA_MIRROR="${DISCOVER_DATA_MIRROR:-$PWD/.gpu-data}"
PYTHON="${PYTHON:-python3}"
if [ -d .whl ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu-site \
    .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/gpu-site"
fi
if [ -n "${CPU_ONLY:-}" ]; then ACCELERATOR=cpu GPU_SHARE=0; else ACCELERATOR=cuda GPU_SHARE=0.25; fi
started=$SECONDS

# step NAME SECONDS PLATFORM COMMAND...: runs COMMAND with JAX on PLATFORM, at most SECONDS, into $OUT/NAME.txt
step() {
  local name=$1 limit=$2 platform=$3
  shift 3
  echo "== $name (JAX_PLATFORMS=$platform, at most ${limit} s, at $((SECONDS - started)) s)"
  JAX_PLATFORMS=$platform timeout -k 10 "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local status=$?
  grep -v -i "warning" "$OUT/$name.txt" | tail -n 25
  [ $status -eq 0 ] || echo "!! $name: exit status $status$([ $status -eq 124 ] && echo ' (its time limit)')"
}

{
  nvidia-smi -L 2>&1 || echo "no nvidia-smi"
  "$PYTHON" -c "import sys, jax, jaxlib; print(sys.version.split()[0], 'jax', jax.__version__, jax.devices())"
  uptime
} 2>&1 | tee "$OUT/machine.txt"

step all_tasks_gpu 60 "$ACCELERATOR" "$PYTHON" bench/fit.py --all-tasks --tasks bandit ddm tuning --repeats 3
step all_tasks_cpu 60 cpu "$PYTHON" bench/fit.py --all-tasks --tasks bandit ddm tuning --repeats 3
step large_batch_gpu 60 "$ACCELERATOR" "$PYTHON" bench/fit.py --gpu --gpu-shape 4096 100 1000
step large_batch_cpu 30 cpu "$PYTHON" bench/fit.py --gpu --gpu-shape 16 100 1000
if [ -z "${CPU_ONLY:-}" ]; then  # they need a GPU: without one they fail (no NVIDIA device nodes)
  step gpu_tests 30 "$ACCELERATOR" "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu -n 0 \
    tests/integration/test_sandbox_gpu.py
fi

config="$OUT/gpu_run.yaml"
printf 'sandbox:\n  runner: local\n  num_workers: 4\n  num_gpus_per_worker: %s\n' "$GPU_SHARE" > "$config"
step run_200 100 "$ACCELERATOR" "$PYTHON" -m engine.cli run tasks/bandit/task.yaml --config "$config" \
  --db "$OUT/run_200.db" --max-evals 200 --json

step neuron_gpu 100 "$ACCELERATOR" "$PYTHON" bench/fit.py --neuron --repeats 1
step neuron_cpu 60 cpu "$PYTHON" bench/fit.py --neuron --repeats 1
echo "== done in $((SECONDS - started)) s"
