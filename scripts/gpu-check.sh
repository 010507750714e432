#!/usr/bin/env bash
# The CUDA kernels on a real GPU in one command (issue 35; docs/performance.md, "Running the GPU check").
#
#   scripts/gpu-check.sh              on the GPU machine, from the repository root: install the carried wheels,
#                                     build with CUDA (TORCH_CUDA_ARCH_LIST=9.0), the CUDA tests, the GPU
#                                     benchmarks, short PPO runs with device=cuda and device=cpu
#   scripts/gpu-check.sh --dry-run    here, without a GPU: what can be checked without one
#   --only STEP,STEP                  run these steps alone (the others are recorded as skipped)
#   --out DIR                         where gpu-check.log and gpu-check.json go (default: $OUT, else gpu-check-out)
#
# Each step has a time limit, the whole run a budget (GPU_CHECK_BUDGET_S, 480 s); the first step that fails
# stops the run with one line saying why, and the JSON is written after every step. Without a GPU every GPU
# step is skipped with a message and the script exits 0.
# Environment: PYTHON (python3), GPU_WHEELS (.gpu-wheels), GPU_CHECK_BUDGET_S (480),
# GPU_CHECK_NO_GPU=1 (behave as if there were no GPU: the tests use it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
MODE=gpu
ONLY=""
OUT_DIR=${OUT:-$ROOT/gpu-check-out}
while (($#)); do
    case $1 in
        --dry-run) MODE=dry-run ;;
        --only) ONLY=${2:?--only needs a list}; shift ;;
        --out) OUT_DIR=${2:?--out needs a folder}; shift ;;
        -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

export ROOT MODE PY=${PYTHON:-python3} WHEELS=${GPU_WHEELS:-.gpu-wheels}
export REQS=scripts/gpu-wheels.txt IMAGE_LIST=scripts/gpu-image-packages.txt
BUDGET=${GPU_CHECK_BUDGET_S:-480}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
export WORK
mkdir -p "$OUT_DIR"
LOG=$OUT_DIR/gpu-check.log
JSON=$OUT_DIR/gpu-check.json
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
STARTED=$(date +%s.%N)
T0=$SECONDS
REPORT_PY=$PY
"$REPORT_PY" -c '' 2>/dev/null || REPORT_PY=python3 # the JSON needs only the standard library

write_json() { "$REPORT_PY" scripts/gpu_check.py report "$WORK" "$JSON" --mode "$MODE" --started "$STARTED"; }
record() { # NAME STATUS SECONDS MESSAGE
    local m=${4//$'\t'/ }
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${m//$'\n'/ }" >>"$WORK/steps.tsv"
    write_json
}
# At exit: the log's last lines written before the device tool collects $OUT, then the scratch folder gone.
trap 'exec 1>&- 2>&-; wait "$TEE_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

# --- what a step function may call (exported: each step runs in a child bash under `timeout`) -----------
msg() { echo "$*" | tee "$WORK/$STEP.msg"; }
skip() { msg "$*"; exit 77; } # the step did not apply: skipped, with why
need_gpu() { [[ $HAVE_GPU == 1 ]] || skip "skipped: no GPU ($NO_GPU_WHY)"; }
figures() { cat >"$WORK/$STEP.json"; } # the step's figures, JSON on stdin
export -f msg skip need_gpu figures

FAILED=""
step() { # NAME LIMIT_S FUNCTION: run FUNCTION under a time limit and record how it went
    local name=$1 limit=$2 fn=$3 rc=0 t0 secs message
    if [[ -n $FAILED ]]; then
        record "$name" skipped 0 "not run: step $FAILED failed"
        return 0
    fi
    if [[ -n $ONLY && ",$ONLY," != *",$name,"* ]]; then
        record "$name" skipped 0 "not in --only $ONLY"
        return 0
    fi
    local left=$((BUDGET - (SECONDS - T0)))
    ((limit <= left)) || limit=$left
    if ((limit < 5)); then # the budget is spent: stop rather than overrun the device call's own limit
        FAILED=$name
        record "$name" failed 0 "not started: the budget of ${BUDGET}s (GPU_CHECK_BUDGET_S) is spent"
        return 0
    fi
    echo "== [$name] (at most ${limit}s)"
    t0=$(date +%s.%N)
    STEP=$name timeout --kill-after=10 "$limit" bash -euo pipefail -c "$fn" || rc=$?
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    message=$(cat "$WORK/$name.msg" 2>/dev/null || true)
    case $rc in
        0) record "$name" ok "$secs" "$message" ;;
        77) record "$name" skipped "$secs" "$message" ;;
        124 | 137) FAILED=$name; record "$name" failed "$secs" "timed out after ${limit}s${message:+ ($message)}" ;;
        *) FAILED=$name; record "$name" failed "$secs" "${message:-exited with $rc (the log above says why)}" ;;
    esac
    echo "== [$name] $(tail -n1 "$WORK/steps.tsv" | cut -f2) in ${secs}s"
}

# --- detect (here, not a child: the later steps read HAVE_GPU) -----------------------------------------
detect() {
    HAVE_GPU=0 NO_GPU_WHY=""
    local gpu="" torch_info=""
    if [[ ${GPU_CHECK_NO_GPU:-0} == 1 ]]; then
        NO_GPU_WHY="GPU_CHECK_NO_GPU=1"
    elif [[ $MODE == dry-run ]]; then
        NO_GPU_WHY="dry run"
    elif ! command -v nvidia-smi >/dev/null; then
        NO_GPU_WHY="nvidia-smi not found"
    elif ! gpu=$(timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1); then
        NO_GPU_WHY="nvidia-smi failed: ${gpu//$'\n'/ }"
    fi
    torch_info=$(timeout 60 "$PY" -c 'import json, torch
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "available": torch.cuda.is_available()}))' 2>/dev/null) ||
        torch_info='{"torch": null}'
    if [[ -z $NO_GPU_WHY ]]; then
        if [[ $torch_info == *'"available": true'* ]]; then HAVE_GPU=1; else NO_GPU_WHY="torch.cuda.is_available() is false"; fi
    fi
    local nvcc
    nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
    # The figures through json.dumps: nvidia-smi's or torch's words may hold quotes.
    GPU=$gpu WHY=$NO_GPU_WHY NVCC_PATH=$nvcc TORCH_INFO=$torch_info PY_VERSION=$("$PY" -V 2>&1 || true) \
        "$REPORT_PY" -c 'import json, os, platform
e = os.environ
print(json.dumps({"gpu": not e["WHY"], "why_not": e["WHY"], "nvidia_smi": e["GPU"], "python": e["PY_VERSION"],
                  "torch": json.loads(e["TORCH_INFO"]), "nvcc": e["NVCC_PATH"], "cpus": os.cpu_count(),
                  "host": " ".join(platform.uname()[:3:2] + (platform.machine(),))}))' >"$WORK/detect.json"
    if [[ $HAVE_GPU == 1 ]]; then
        echo "gpu-check: GPU: $gpu" | tee "$WORK/detect.msg"
    else
        echo "gpu-check: no GPU ($NO_GPU_WHY): the GPU steps are skipped" | tee "$WORK/detect.msg"
    fi
    export HAVE_GPU NO_GPU_WHY NVCC=$nvcc
}
echo "gpu-check: mode $MODE, python $PY, budget ${BUDGET}s, out $OUT_DIR"
detect
record detect ok "$((SECONDS - T0))" "$(cat "$WORK/detect.msg")"

# --- the steps (each is the body of a child bash) -------------------------------------------------------
# Install what the image lacks: the carried wheels, never torch (the image's CUDA build stays).
install_wheels='need_gpu
[[ -d $WHEELS ]] || { msg "no $WHEELS/ folder: run make gpu-wheels here and carry it"; exit 1; }
reqs=$WORK/reqs.txt
grep -vE "^(torch|#|$)" "$REQS" >"$reqs"
# setuptools only where the one of the image is too old for pyproject.toml (license = "MIT" needs >= 77)
if "$PY" -c "import setuptools, sys; sys.exit(int(setuptools.__version__.split(\".\")[0]) < 77)"; then
    grep -v "^setuptools" "$reqs" >"$reqs.x"; mv "$reqs.x" "$reqs"
fi
"$PY" -m pip install -q --no-index --no-deps --no-cache-dir --find-links "$WHEELS" -r "$reqs"
"$PY" - >"$WORK/$STEP.json" <<PYEOF || { msg "the installed wheels do not import"; exit 1; }
import json, gymnasium, hydra, mujoco, setuptools, torch
print(json.dumps({m.__name__: m.__version__ for m in (gymnasium, hydra, mujoco, setuptools, torch)}))
PYEOF
msg "installed $(grep -c . "$reqs") packages from $WHEELS"'

# Build against the image's torch, for the H100/H200 (sm_90), and see the CUDA kernels registered.
build='need_gpu
[[ -n $NVCC ]] || { msg "no nvcc on this machine (nor /usr/local/cuda/bin/nvcc): nothing builds the kernels"; exit 1; }
nvcc_dir=$(dirname "$(readlink -f "$NVCC")")
export CUDA_HOME=${CUDA_HOME:-$(dirname "$nvcc_dir")} TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=${MAX_JOBS:-$(nproc)}
echo "CUDA_HOME=$CUDA_HOME MAX_JOBS=$MAX_JOBS"
PYTHONWARNINGS="ignore:Editable installation" "$PY" -m pip install --no-index --no-build-isolation --no-deps -e . \
    >"$WORK/build.out" 2>&1 || { tail -n 40 "$WORK/build.out"; msg "the build failed (the lines above)"; exit 1; }
grep -E "^ *rlarena: " "$WORK/build.out" || true
"$PY" scripts/gpu_check.py kernels --figures "$WORK/$STEP.json" >"$WORK/k.txt" ||
    { msg "built, but $(cat "$WORK/k.txt")"; exit 1; }
msg "built with CUDA for sm_90; $(cat "$WORK/k.txt")"'

# The CUDA tests: each kernel against the reference, the CPU and CUDA kernels against each other, and the
# CUDA sources and binding compiling alone.
tests='need_gpu
"$PY" -m pytest -q -p no:cacheprovider --junitxml="$WORK/tests.xml" tests/test_ops_cuda.py \
    tests/test_ops_cuda_agreement.py tests/test_cuda_compile.py || true
[[ -s $WORK/tests.xml ]] || { msg "pytest wrote no report"; exit 1; }
"$PY" scripts/gpu_check.py junit "$WORK/tests.xml" --figures "$WORK/$STEP.json" >"$WORK/j.txt" ||
    { msg "CUDA tests: $(cat "$WORK/j.txt")"; exit 1; }
msg "CUDA tests passed; $(cat "$WORK/j.txt")"'

# GAE and the two clipped losses against the torch loop / composed autograd, 4 sizes each.
bench='need_gpu
"$PY" scripts/gpu_bench.py --device cuda --out "$WORK/$STEP.json"
line=$("$PY" scripts/gpu_check.py bench "$WORK/$STEP.json")
msg "$line"'

# Short PPO runs: MuJoCo Hopper with the policy and update on the GPU (the simulator on the CPU) and the
# same on the CPU, then a text run (an untrained model: no SFT step) on each; steps/s from summary.json.
train='need_gpu
one() { # LABEL DEVICE OVERRIDES...
    local label=$1 device=$2; shift 2
    echo "-- $label: device=$device $*"
    "$PY" -m rlarena.bench.cli train algo=ppo seed=0 device="$device" progress=false tensorboard=false \
        force=true eval.every_steps=0 checkpoint.every_steps=0 outputs_root="$WORK/outputs" \
        hydra.run.dir="$WORK/runs/$label" "$@" >"$WORK/$label.out" 2>&1 ||
        { tail -n 30 "$WORK/$label.out"; msg "the $label run failed (the lines above)"; exit 1; }
}
one hopper_cuda cuda env=hopper total_steps=16384 eval.episodes=2
one hopper_cpu cpu env=hopper total_steps=16384 eval.episodes=2
one text_cuda cuda env=text/arithmetic env.sft_checkpoint=untrained total_steps=11520 eval.episodes=32
one text_cpu cpu env=text/arithmetic env.sft_checkpoint=untrained total_steps=11520 eval.episodes=32
line=$("$PY" scripts/gpu_check.py train "$WORK/runs" --figures "$WORK/$STEP.json")
msg "$line"'

# --- dry run: what can be checked without a GPU ---------------------------------------------------------
syntax='bash -n scripts/gpu-check.sh
"$PY" -m py_compile scripts/gpu_check.py scripts/gpu_bench.py
msg "scripts/gpu-check.sh parses; scripts/gpu_check.py and gpu_bench.py compile"'

# The wheel set resolves offline for the GPU machine (CPython 3.12, x86-64 manylinux), and it is complete:
# whatever the wheels need is carried, on the image, or left out on purpose (scripts/gpu_check.py).
resolve_wheels='[[ -d $WHEELS ]] || skip "no $WHEELS/ folder: run make gpu-wheels (needs the local wheels or PyPI)"
PIP_CONFIG_FILE=/dev/null "$PY" -m pip install --dry-run --ignore-installed --no-index --no-deps \
    --find-links "$WHEELS" --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux_2_28_x86_64 --report "$WORK/pip-report.json" -q -r "$REQS" ||
    { msg "pip cannot resolve $REQS from $WHEELS for Python 3.12 offline"; exit 1; }
"$PY" scripts/gpu_check.py wheels "$WHEELS" "$REQS" "$IMAGE_LIST" --figures "$WORK/$STEP.json" >"$WORK/w.txt" ||
    { cat "$WORK/w.txt"; msg "$(tail -n1 "$WORK/w.txt")"; exit 1; }
msg "pip resolves $REQS offline for cp312: $(tail -n1 "$WORK/w.txt")"'

nvcc_compile='[[ -n $NVCC ]] || skip "no nvcc: the CUDA sources are not compiled"
objs=$WORK/objs; mkdir -p "$objs"
for cu in csrc/cuda/*.cu; do
    "$NVCC" -c -arch=sm_90 -std=c++17 -O3 "$cu" -o "$objs/$(basename "$cu" .cu).o" ||
        { msg "nvcc -c $cu failed"; exit 1; }
done
msg "nvcc -c -arch=sm_90: $(ls csrc/cuda/*.cu | wc -l) CUDA sources compile ($("$NVCC" --version | tail -n1))"'

tree_size='"$PY" scripts/gpu_check.py tree "$WHEELS" --figures "$WORK/$STEP.json" >"$WORK/t.txt" ||
    { msg "$(cat "$WORK/t.txt"): over the limit even without docs/results/"; exit 1; }
if grep -q "\"fits_now\": false" "$WORK/$STEP.json"; then
    msg "$(cat "$WORK/t.txt"); the sparse checkout is needed (make gpu-sparse; docs/performance.md)"
else
    msg "$(cat "$WORK/t.txt"): fits as it is"
fi'

bench_selftest='"$PY" -c "import torch, rlarena.ops" 2>/dev/null || skip "$PY has no torch or rlarena: the benchmark script is not tried"
"$PY" scripts/gpu_bench.py --device cpu --quick --out "$WORK/selftest.json" >/dev/null
msg "scripts/gpu_bench.py runs (--device cpu --quick)"'

if [[ $MODE == dry-run ]]; then
    step syntax 30 "$syntax"
    step resolve_wheels 60 "$resolve_wheels"
    step nvcc_compile 120 "$nvcc_compile"
    step tree_size 30 "$tree_size"
    step bench_selftest 60 "$bench_selftest"
fi
step install_wheels 90 "$install_wheels"
step build 300 "$build"
step tests 180 "$tests"
step bench 120 "$bench"
step train 240 "$train"

write_json
if [[ -n $FAILED ]]; then
    echo "gpu-check: FAILED at step $FAILED: $(grep "^$FAILED"$'\t' "$WORK/steps.tsv" | cut -f4) (log $LOG, results $JSON)"
    exit 1
fi
echo "gpu-check: done in $((SECONDS - T0))s, mode $MODE: $(cut -f2 "$WORK/steps.tsv" | sort | uniq -c | xargs) (results $JSON)"
