# Each target builds the environment it needs on first use, so a fresh clone needs only
# `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# DeepVariant's images run Python 3.10 with numpy 1.x and onnxruntime 1.23: the runtime is
# tested there too when such a Python exists (pyenv's, or one on PATH).
PY310 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) $(shell command -v python3.10 2>/dev/null))
PY310_VENV := .venv-py310
# A clean venv with the wheel installed as a user installs it (the `export` extra only), so
# the tests can run the installed commands; rebuilt whenever the package's files change.
WHEEL_VENV := .venv-wheel
PACKAGE_FILES := pyproject.toml README.md $(shell find kerasport -type f -not -path '*/__pycache__/*')

.PHONY: demo test test-latest test-slurm lock lint bench notebook clean

# Test environments install against a lock kept in the repo (pip constraints), so every machine
# tests the versions the README's figures came from; `make test-latest` tries the newest versions
# pyproject's ranges allow, and `make lock` writes those into the lock once they pass.
LOCK := requirements/lock.txt
LOCK_PY310 := requirements/lock-py310.txt
LATEST_VENV := .venv-latest

$(BIN)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c $(LOCK) pip
	$(BIN)/python -m pip install -q -c $(LOCK) -e ".[dev]"
	touch $@

$(PY310_VENV)/.installed: $(LOCK_PY310)
	@if [ -n "$(PY310)" ] && "$(PY310)" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then \
		"$(PY310)" -m venv $(PY310_VENV) && \
		$(PY310_VENV)/bin/python -m pip install -q -r $(LOCK_PY310) && \
		touch $@; \
	else echo "no Python 3.10 found: the Python 3.10 runtime test will be skipped"; fi

$(WHEEL_VENV)/.installed: $(BIN)/.installed $(PACKAGE_FILES)
	rm -rf $(WHEEL_VENV) dist
	$(BIN)/python -m pip wheel -q --no-deps -w dist . > .wheel-build.log 2>&1 || (cat .wheel-build.log; exit 1)
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install -q -c $(LOCK) pip
	$(WHEEL_VENV)/bin/python -m pip install -c $(LOCK) "$$(ls dist/kerasport-*.whl)[export]" > .wheel-install.log 2>&1 \
		|| (cat .wheel-install.log; exit 1)
	mv .wheel-build.log .wheel-install.log $(WHEEL_VENV)/
	touch $@

demo: $(BIN)/.installed
	$(BIN)/kerasport demo

lint: $(BIN)/.installed
	$(BIN)/ruff check kerasport tests benchmarks scripts
	$(BIN)/mypy kerasport

test: $(BIN)/.installed $(PY310_VENV)/.installed $(WHEEL_VENV)/.installed lint
	KERASPORT_PY310=$(if $(wildcard $(PY310_VENV)/.installed),$(abspath $(PY310_VENV))/bin/python) \
		KERASPORT_WHEEL_VENV=$(abspath $(WHEEL_VENV)) \
		$(BIN)/python -m pytest -q -W ignore::DeprecationWarning

# `kerasport workflow verify` on a real SLURM cluster: scripts/slurm_cluster.sh installs Debian's
# slurm-wlm, slurmdbd, munge and mariadb-server when missing, starts a one-node cluster under
# build/slurm (as root), runs tests/slurm with README's SLURM profile through the executor plugin
# (the `slurm` extra) and stops every daemon it started on exit. Not root, or not Debian: the
# tests are skipped, saying why.
SLURM_DIR := build/slurm

$(BIN)/.slurm-installed: $(BIN)/.installed pyproject.toml $(LOCK)
	$(BIN)/python -m pip install -q -c $(LOCK) -e ".[slurm]"
	touch $@

test-slurm: $(BIN)/.installed $(BIN)/.slurm-installed
	bash scripts/slurm_cluster.sh run $(SLURM_DIR) -- env KERASPORT_SLURM=1 \
		$(BIN)/python -m pytest -q -rs -W ignore::DeprecationWarning tests/slurm

# The suite on the newest versions pyproject's ranges allow (no lock), so drift is seen before
# users meet it. Builds .venv-latest from scratch each time.
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q -e ".[dev,slurm]"
	$(LATEST_VENV)/bin/pip freeze --exclude-editable --all | grep -v -E '^(setuptools|wheel)==' \
		> $(LATEST_VENV)/versions.txt
	$(LATEST_VENV)/bin/ruff check kerasport tests benchmarks scripts
	$(LATEST_VENV)/bin/mypy kerasport
	$(LATEST_VENV)/bin/python -m pytest -q -W ignore::DeprecationWarning

# Refresh the locks: the main one from the environment `make test-latest` just passed in (keeping
# the lock's comment lines), the Python 3.10 one from a fresh resolve of DeepVariant's runtime set.
PY310_RUNTIME := "numpy>=1.24,<2" "onnxruntime==1.23.2" "apache-tvm==0.27.0.post1" \
	"apache-tvm-ffi==0.1.14.post0" "ml_dtypes>=0.5,<0.7"
$(LATEST_VENV)/versions.txt:
	@echo "run make test-latest first: make lock writes the versions it passed with" >&2; exit 2

lock: $(LATEST_VENV)/versions.txt
	(grep '^#' $(LOCK); cat $<) > $(LOCK).new && mv $(LOCK).new $(LOCK)
	rm -rf .venv-lock-py310 && "$(PY310)" -m venv .venv-lock-py310
	.venv-lock-py310/bin/python -m pip install -q $(PY310_RUNTIME)
	(grep '^#' $(LOCK_PY310); .venv-lock-py310/bin/pip freeze --all | grep -v -E '^(setuptools|wheel)==') \
		> $(LOCK_PY310).new && mv $(LOCK_PY310).new $(LOCK_PY310)
	rm -rf .venv-lock-py310

notebook: $(BIN)/.installed
	$(BIN)/python scripts/run_notebook.py

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_latency.py

clean:
	rm -rf $(VENV) $(PY310_VENV) $(WHEEL_VENV) $(LATEST_VENV) dist
