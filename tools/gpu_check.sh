#!/usr/bin/env bash
# One-shot GPU check of the lidarcl.ops CUDA kernels (issue 12, "Reproducible kernels on a
# GPU"), for a machine with a GPU, a CUDA build of torch and nvcc (spconv, open3d, mmengine
# and numba are not needed; a package registry is not needed when pytest is installed):
#
#   tools/gpu_check.sh OUTDIR            build, test, benchmark; exit 0 only if all passed
#   tools/gpu_check.sh --dry-run OUTDIR  no GPU needed: check prerequisites, print the steps,
#                                        run the CPU-side parts (test collection and run, a
#                                        tiny CPU benchmark)
#
# Steps (each under a time limit, all within about 8 minutes):
#   1. prerequisites: python with torch (CUDA build), a visible GPU, nvcc, a C++ compiler,
#      pytest (installed with pip if missing and a registry answers, else a clear failure)
#   2. build lidarcl._C in place with the CUDA kernels: LIDARCL_WITH_CUDA=1,
#      TORCH_CUDA_ARCH_LIST = the present GPU's compute capability, MAX_JOBS = cores,
#      `python setup.py build_ext --inplace`
#   3. pytest tests/test_ops_gpu.py (GPU kernels vs references and CPU kernels, determinism
#      checks) with LIDARCL_REQUIRE_GPU=1, so that a skip is a failure
#   4. tools/benchmark.py ops --device cuda --workload synthetic, with spconv / open3d /
#      mmengine / numba / nuscenes / scikit-image imports blocked
#
# OUTDIR receives (7 files, plain names, no subfolders): summary.txt (steps, status,
# seconds, test counts), env.txt (python, torch, CUDA, GPU, nvidia-smi, nvcc, compiler),
# build.log, pytest.txt, junit.xml, benchmark.txt, benchmark.json.
# Environment: PYTHON (default python3), MAX_JOBS, TORCH_CUDA_ARCH_LIST (default: the GPU's),
# LIDARCL_GPU_CHECK_BUDGET_S (default 465: total seconds for all steps).
set -u -o pipefail

usage() {
  sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'
}

DRY=0
OUT=""
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
    *)
      if [ -n "$OUT" ]; then echo "gpu_check.sh: one OUTDIR only" >&2; exit 2; fi
      OUT=$arg ;;
  esac
done
if [ -z "$OUT" ]; then
  echo "gpu_check.sh: OUTDIR missing" >&2
  usage >&2
  exit 2
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$OUT" || { echo "gpu_check.sh: cannot create $OUT" >&2; exit 2; }
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
START=$(date +%s)
BUDGET=${LIDARCL_GPU_CHECK_BUDGET_S:-465}
SUMMARY="$OUT/summary.txt"
FAILED=0
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

MODE="full run"
[ "$DRY" = 1 ] && MODE="dry run (no GPU needed; nothing is built)"
{
  echo "lidarcl tools/gpu_check.sh: $MODE"
  echo "started: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), repo: $ROOT, out: $OUT"
  echo "budget: ${BUDGET} s for all steps"
} > "$SUMMARY"

say() { echo "$*" | tee -a "$SUMMARY"; }
elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( BUDGET - $(date +%s) + START )); }
# step NAME STATUS SECONDS DETAIL
step() {
  say "$(printf '%-13s %-5s %5ss  %s' "$1" "$2" "$3" "$4")"
  [ "$2" = FAIL ] && FAILED=1
  return 0
}
limited() {  # limited SECONDS cmd...: run with a time limit (exit 124 when it ran over)
  local secs=$1
  shift
  if [ "$secs" -lt 5 ]; then secs=5; fi
  if command -v timeout >/dev/null 2>&1; then
    timeout --kill-after=10 "$secs" "$@"
  else
    "$@"
  fi
}
finish() {
  say "total: $(elapsed) s"
  if [ "$FAILED" = 0 ]; then say "RESULT: PASS ($MODE)"; exit 0; fi
  say "RESULT: FAIL ($MODE)"
  exit 1
}

cd "$ROOT" || exit 2
say "steps:"

# ------------------------------------------------------------------ 1. prerequisites
t0=$(date +%s)
if ! command -v "$PY" >/dev/null 2>&1; then
  step prerequisites FAIL 0 "python '$PY' not found (set PYTHON=/path/to/python with torch)"
  finish
fi
"$PY" - > "$OUT/env.txt" 2>&1 <<'EOF'
import importlib.util, platform, sys
print("python", sys.version.replace("\n", " "), "at", sys.executable)
print("platform", platform.platform())
try:
    import torch
except Exception as exc:  # noqa: BLE001
    print("torch: NOT IMPORTABLE:", exc)
    sys.exit(3)
print("torch", torch.__version__, "| torch.version.cuda", torch.version.cuda,
      "| cudnn", torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
print("cuda available", torch.cuda.is_available(), "| devices", torch.cuda.device_count())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, "| capability", f"{p.major}.{p.minor}", "| memory GiB",
          round(p.total_memory / 2 ** 30, 1), "| multiprocessors", p.multi_processor_count)
import numpy
print("numpy", numpy.__version__)
for name in ("pytest", "ninja", "spconv", "open3d", "mmengine", "numba", "nuscenes", "skimage"):
    spec = importlib.util.find_spec(name)
    print(f"module {name}:", "present" if spec else "absent")
EOF
py_rc=$?
{
  echo "--- nvcc"; (command -v nvcc && nvcc --version) 2>&1 || echo "nvcc: not found"
  echo "--- c++"; (c++ --version | head -1) 2>&1 || echo "c++: not found"
  echo "--- ninja"; (ninja --version) 2>&1 || echo "ninja: not on PATH"
  echo "--- git"; (git -C "$ROOT" rev-parse HEAD && git -C "$ROOT" status --short | head -20) \
    2>&1 || echo "git: no repository here"
  echo "--- nvidia-smi"; (nvidia-smi && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv) 2>&1 \
    || echo "nvidia-smi: not available"
} >> "$OUT/env.txt"
problems=()
if [ "$py_rc" != 0 ]; then
  problems+=("python cannot import torch (see env.txt)")
fi
CUDA_TORCH=0; GPU=0; NVCC=0
grep -q "torch.version.cuda [0-9]" "$OUT/env.txt" && CUDA_TORCH=1
grep -q "^cuda available True" "$OUT/env.txt" && GPU=1
command -v nvcc >/dev/null 2>&1 && NVCC=1
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || problems+=("no C++ compiler")
if [ "$DRY" = 0 ]; then
  [ "$CUDA_TORCH" = 1 ] || problems+=("torch is not a CUDA build (torch.version.cuda is None)")
  [ "$GPU" = 1 ] || problems+=("no CUDA GPU visible (torch.cuda.is_available() is False)")
  [ "$NVCC" = 1 ] || problems+=("nvcc not on PATH")
fi
PYTEST=1
if ! "$PY" -c "import pytest" >/dev/null 2>&1; then
  PYTEST=0
  if [ "$DRY" = 0 ] && limited 60 "$PY" -m pip install -q pytest >> "$OUT/env.txt" 2>&1; then
    PYTEST=1
  else
    problems+=("pytest is not installed and could not be installed with pip (no registry reachable?): carry a pytest wheel or install it")
  fi
fi
if [ "${#problems[@]}" -gt 0 ]; then
  step prerequisites FAIL $(( $(date +%s) - t0 )) "$(IFS=';'; echo "${problems[*]}")"
  if [ "$DRY" = 0 ] || [ "$py_rc" != 0 ]; then
    say "not building or testing: fix the prerequisites above (details in env.txt)"
    finish
  fi
else
  detail="torch CUDA build: $CUDA_TORCH, GPU visible: $GPU, nvcc: $NVCC, pytest: $PYTEST"
  step prerequisites PASS $(( $(date +%s) - t0 )) "$detail"
fi

# ------------------------------------------------------------------ 2. build
ARCH=${TORCH_CUDA_ARCH_LIST:-}
if [ -z "$ARCH" ] && [ "$GPU" = 1 ]; then
  ARCH=$("$PY" -c "import torch; c = torch.cuda.get_device_capability(); print(f'{c[0]}.{c[1]}')" 2>/dev/null)
fi
JOBS=${MAX_JOBS:-$(nproc 2>/dev/null || echo 4)}
BUILD_CMD="LIDARCL_WITH_CUDA=1 TORCH_CUDA_ARCH_LIST=${ARCH:-<GPU compute capability>} MAX_JOBS=$JOBS $PY setup.py build_ext --inplace"
if [ "$DRY" = 1 ]; then
  {
    echo "dry run: would run in $ROOT:"
    echo "  $BUILD_CMD"
    echo "then check: $PY -c 'import torch, lidarcl._C as c; assert c.with_cuda()'"
  } > "$OUT/build.log"
  step build DRY 0 "would run: $BUILD_CMD"
else
  t0=$(date +%s)
  cap=$(( $(left) - 150 )); [ "$cap" -gt 330 ] && cap=330
  echo "$BUILD_CMD (time limit ${cap} s)" > "$OUT/build.log"
  LIDARCL_WITH_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="$JOBS" \
    limited "$cap" "$PY" setup.py build_ext --inplace >> "$OUT/build.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - t0 ))
  if [ "$rc" = 0 ] && "$PY" -c "import torch, lidarcl._C as c; assert c.with_cuda(), 'built without CUDA'" >> "$OUT/build.log" 2>&1; then
    step build PASS "$secs" "lidarcl._C with CUDA kernels for sm_${ARCH/./}, MAX_JOBS=$JOBS"
  else
    [ "$rc" = 124 ] && echo "build ran over its ${cap} s limit" >> "$OUT/build.log"
    step build FAIL "$secs" "rc=$rc, see build.log (tail: $(tail -n 3 "$OUT/build.log" | tr '\n' ' ' | cut -c1-300))"
    say "not testing: the extension did not build"
    finish
  fi
fi

# ------------------------------------------------------------------ 3. tests
junit_counts() {  # tests failures errors skipped of junit.xml
  "$PY" - "$OUT/junit.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:  # noqa: BLE001
    print("0 0 0 0")
    sys.exit()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
total = [sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")]
print(*total)
EOF
}
if [ "$PYTEST" = 1 ]; then
  t0=$(date +%s)
  cap=$(( $(left) - 60 )); [ "$cap" -gt 150 ] && cap=150
  require=1; [ "$DRY" = 1 ] && require=0
  {
    echo "LIDARCL_REQUIRE_GPU=$require $PY -m pytest -p no:cacheprovider -v -rA tests/test_ops_gpu.py --junitxml=junit.xml (time limit ${cap} s)"
    [ "$DRY" = 1 ] && echo "dry run: no GPU, the tests are collected and skipped"
  } > "$OUT/pytest.txt"
  PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 LIDARCL_REQUIRE_GPU=$require \
    limited "$cap" "$PY" -m pytest -p no:cacheprovider -v -rA tests/test_ops_gpu.py \
    --junitxml="$OUT/junit.xml" >> "$OUT/pytest.txt" 2>&1
  rc=$?
  secs=$(( $(date +%s) - t0 ))
  read -r n_tests n_fail n_err n_skip <<< "$(junit_counts)"
  counts="$n_tests tests, $n_fail failed, $n_err errors, $n_skip skipped"
  if [ "$DRY" = 1 ]; then
    if [ "$rc" = 0 ] && [ "$n_tests" -gt 0 ]; then
      step tests PASS "$secs" "collected and run without a GPU: $counts"
    else
      step tests FAIL "$secs" "rc=$rc, $counts (see pytest.txt)"
    fi
  elif [ "$rc" = 0 ] && [ "$n_tests" -gt 0 ] && [ "$n_skip" = 0 ]; then
    step tests PASS "$secs" "$counts"
  else
    step tests FAIL "$secs" "rc=$rc, $counts (see pytest.txt)"
  fi
else
  step tests FAIL 0 "pytest missing"
fi

# ------------------------------------------------------------------ 4. benchmark
if [ "$DRY" = 1 ]; then
  BENCH_ARGS=(ops --device cpu --workload synthetic --size tiny --threads 1)
else
  BENCH_ARGS=(ops --device cuda --workload synthetic)
fi
t0=$(date +%s)
cap=$(( $(left) - 5 )); [ "$cap" -gt 150 ] && cap=150
echo "$PY tools/benchmark.py ${BENCH_ARGS[*]} --json benchmark.json (time limit ${cap} s; spconv, open3d, mmengine, numba, nuscenes, skimage imports blocked)" > "$OUT/benchmark.txt"
limited "$cap" "$PY" - "${BENCH_ARGS[@]}" --json "$OUT/benchmark.json" >> "$OUT/benchmark.txt" 2>&1 <<'EOF'
import runpy, sys

BLOCKED = {"spconv", "open3d", "mmengine", "numba", "nuscenes", "pyquaternion", "skimage"}


class Block:
    """The GPU path of the benchmark must need none of these."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"gpu_check: blocked import of {name}")
        return None


sys.meta_path.insert(0, Block())
sys.argv = ["tools/benchmark.py"] + sys.argv[1:]
runpy.run_path("tools/benchmark.py", run_name="__main__")
EOF
rc=$?
secs=$(( $(date +%s) - t0 ))
if [ "$rc" = 0 ]; then
  step benchmark PASS "$secs" "tools/benchmark.py ${BENCH_ARGS[*]} (tables in benchmark.txt)"
else
  step benchmark FAIL "$secs" "rc=$rc, see benchmark.txt"
fi

finish
