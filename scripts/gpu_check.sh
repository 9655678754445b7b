#!/usr/bin/env bash
# The checks that need a GPU, in one go, on a machine with CUDA, torch and the build
# tools already installed (nothing is downloaded):
#   1. build the extension with the CUDA launchers required (SPLINECAM_CUDA=ON);
#   2. the tests that exercise CUDA or device selection (pytest -k "cuda or device");
#   3. the CPU and GPU launchers side by side, each GPU partition compared with the
#      CPU's bit for bit (benchmarks/bench_devices.py, MLPs and CNNs).
# Logs go to the folder given (default gpu_check/): build.log, tests.log, bench.log.
#     bash scripts/gpu_check.sh [OUTDIR] [PYTHON]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check}
py=${2:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; "$py" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.version.cuda)"; } 2>&1 | tee "$out/info.log"
t0=$SECONDS
SPLINECAM_CUDA=ON "$py" -m pip install --disable-pip-version-check --no-build-isolation --no-deps -e . >"$out/build.log" 2>&1
rc=$?
echo "build: rc=$rc in $((SECONDS - t0)) s"
[ $rc -eq 0 ] || { tail -40 "$out/build.log"; exit $rc; }
"$py" -c "import splinecam; print(splinecam.build_info()); print('cuda_available', splinecam.cuda_available())" 2>&1 | tee -a "$out/info.log"
t0=$SECONDS
"$py" -m pytest -q -ra -p no:cacheprovider tests -k "cuda or device" 2>&1 | tee "$out/tests.log" | tail -25
echo "tests: $((SECONDS - t0)) s"
t0=$SECONDS
(cd benchmarks && "$py" bench_devices.py --launchers "${SPLINECAM_GPU_LAUNCHERS:-cpu,cuda}" ${SPLINECAM_GPU_CASES:+--cases "$SPLINECAM_GPU_CASES"}) 2>&1 | tee "$out/bench.log"
echo "bench: $((SECONDS - t0)) s"
