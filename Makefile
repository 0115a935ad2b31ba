# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make build TARGET=rpi4     the default α/ρ sweep for a target into dist/<target>/
#   make test                  the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TARGET ?= rpi4
JOBS ?= 2
TVREF := $(VENV)/torchvision-reference

.PHONY: build test bench clean

# Installs skip byte-compiling: pip compiled every module it installed, one at a time
# (about 70 of the 127 s an install took here), while a run imports a fraction of them.
# Python compiles those on first import and caches them in .venv, which needs bytecode
# writing on: with PYTHONDONTWRITEBYTECODE set by the caller every process would compile its
# imports again (an export's imports took 24 s instead of 8).
unexport PYTHONDONTWRITEBYTECODE

# The install runs uv (pinned in constraints.txt, put into the venv by pip): it unpacks the
# wheels side by side, where pip unpacks one at a time (the whole install from a fresh
# clone: 45 s with pip, 20 s with uv, here). uv reads no pip configuration, so it is given
# pip's package locations: on these machines the CPU build of torch lies in a find-links
# directory and the rest in local indexes beside PyPI. torch==2.13.0 resolves to that CPU
# build (any other version pulls GBs of CUDA packages); every other version is the lock's.
# Should uv not install or not succeed, pip installs the same pins.
pip_config = $(shell $(PYTHON) -m pip config get global.$(1) 2>/dev/null)
PIP_LOCATIONS := $(foreach d,$(sort $(call pip_config,find-links) $(PIP_FIND_LINKS)),--find-links $(d)) \
  $(foreach u,$(call pip_config,extra-index-url),--extra-index-url $(u))
INSTALL_PINS := -c constraints.txt torch==2.13.0 -e ".[dev]"

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt uv && \
	  $(BIN)/uv pip install -q --python $(BIN)/python --index-strategy unsafe-best-match \
	  $(PIP_LOCATIONS) $(INSTALL_PINS) || $(BIN)/pip install -q --no-compile $(INSTALL_PINS)
	touch $@

# torchvision's pure-Python model definitions, the independent reference for state_dict
# compatibility (no CUDA deps: --no-deps; hash-pinned).
$(TVREF)/.installed: tests/torchvision-reference.txt $(VENV)/.installed
	$(BIN)/pip install -q --no-deps --require-hashes -r tests/torchvision-reference.txt --target $(TVREF)
	touch $@

# DEVICE=[user@]host[:port]: measure every variant on that board over SSH.
build: $(VENV)/.installed
	$(BIN)/edgeexport build --target $(TARGET) --jobs $(JOBS) $(if $(DEVICE),--device $(DEVICE))

# The report test opens report.html in a real headless browser: Debian's chromium.
CHROMIUM := $(shell command -v chromium 2>/dev/null)
# The device tests measure on "a board" served by a real OpenSSH server: Debian's.
SSHD := $(wildcard /usr/sbin/sshd)
# The emulated-board tests run Debian's arm64 Python under Debian's qemu-user-static.
QEMU := $(shell command -v qemu-aarch64-static 2>/dev/null)

# Three pytest processes: the tests that wait on the session's shared trainings, exports and
# builds, and beside them, at the lowest priority, the tests marked "background" (they need
# none of it; tests/support/scheduler.py marks them), in two halves — test_analysis.py with
# test_build.py, and the rest — so that once the first process is done both cores still work
# (with one background process, it ran 2.7 min alone on one core; with test_analysis.py alone
# as the first half, the rest ran 4.4 min longer than it). Any failing fails the target.
PYTEST = $(BIN)/python -m pytest -q
test: $(VENV)/.installed $(TVREF)/.installed
ifeq ($(CHROMIUM),)
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
endif
ifeq ($(SSHD),)
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server
endif
ifeq ($(QEMU),)
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static
endif
	export TORCHVISION_REFERENCE=$(TVREF); \
	  nice -n 10 $(PYTEST) -p no:cacheprovider --durations=5 -m background \
	    tests/test_analysis.py tests/test_build.py > $(VENV)/background-analysis.log 2>&1 & \
	  analysis=$$!; \
	  nice -n 10 $(PYTEST) -p no:cacheprovider --durations=10 -m background \
	    --ignore=tests/test_analysis.py --ignore=tests/test_build.py \
	    > $(VENV)/background-tests.log 2>&1 & \
	  background=$$!; \
	  $(PYTEST) --durations=15 -m "not background"; foreground=$$?; \
	  wait $$analysis; analysis=$$?; \
	  wait $$background; background=$$?; \
	  echo "---- tests marked background (run beside the others, at nice 10) ----"; \
	  cat $(VENV)/background-analysis.log $(VENV)/background-tests.log; \
	  exit $$(( foreground || analysis || background ))

bench: $(VENV)/.installed
	$(BIN)/python bench/int8_speed.py
	$(BIN)/python bench/int8_rewrites.py
	$(BIN)/python bench/int8_latency.py
	$(BIN)/python bench/profile_overhead.py
	$(BIN)/python bench/tflite_stage_time.py
	$(BIN)/python bench/export_folding.py
	$(BIN)/python bench/export_threads.py
	$(BIN)/python bench/analysis_cache.py
	$(BIN)/python bench/training_layout.py
	$(BIN)/python bench/build_time.py
	$(BIN)/python bench/estimate_checks.py
	$(BIN)/python bench/parallel_speedup.py

# The documentation site (MkDocs, Material theme, docs/ and mkdocs.yml) into build/site/;
# --strict: a broken link, a page left out of the nav or a bad anchor fails the build.
.PHONY: docs
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

clean:
	rm -rf $(VENV) dist
