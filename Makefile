# Two commands do everything on a fresh machine:
#   make demo   set up, build, train a small classifier and draw its exact partition
#   make test   set up, build, run the test suite
PY := .venv/bin/python
SETUP_STAMP := .venv/.splinecam-setup
BUILD_STAMP := .venv/.splinecam-build
SOURCES := $(wildcard src/splinecam/*.h csrc/*.cpp csrc/*.cu csrc/*.h) CMakeLists.txt pyproject.toml

.PHONY: all setup build demo test fuzz bench wheel docs clean

all: test

$(SETUP_STAMP): scripts/setup.sh scripts/constraints.txt
	bash scripts/setup.sh
	touch $@

setup: $(SETUP_STAMP)

# Editable install: Python files are used from python/splinecam, the extension is
# rebuilt (incrementally, in build/) when the C++/CUDA sources change.
$(BUILD_STAMP): $(SETUP_STAMP) $(SOURCES)
	$(PY) -m pip install --disable-pip-version-check -q --no-build-isolation --no-deps -e .
	touch $@

build: $(BUILD_STAMP)

demo: build
	$(PY) -m splinecam demo --out demo_output

test: build
	$(PY) -m pytest -q -ra tests

# Property-based tests with many random examples (hypothesis profile "fuzz", see tests/conftest.py).
fuzz: build
	SPLINECAM_HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q tests/driver/test_properties.py

bench: build
	$(PY) benchmarks/bench_mlp.py

# The documentation site (docs/, Sphinx) into docs/_build/html; any warning is an error.
docs: build
	$(PY) -m sphinx -E -W --keep-going -n -b html -q docs docs/_build/html

# Release artifacts in dist/: the sdist and a manylinux wheel built from that sdist and
# repaired by auditwheel (scripts/build_wheel.sh says which manylinux policy and why;
# SPLINECAM_CUDA=OFF make wheel for a CPU-only wheel). Releases: cibuildwheel, pyproject.toml.
wheel: $(SETUP_STAMP)
	bash scripts/build_wheel.sh dist

clean:
	rm -rf build dist .venv demo_output
