# Each target builds the environment it needs on first use, so a fresh clone needs only
# `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# DeepVariant's images run Python 3.10 with numpy 1.x and onnxruntime 1.23: the runtime is
# tested there too when such a Python exists (pyenv's, or one on PATH).
PY310 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python3.10) $(shell command -v python3.10 2>/dev/null))
PY310_VENV := .venv-py310

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

$(PY310_VENV)/.installed:
	@if [ -n "$(PY310)" ] && "$(PY310)" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then \
		"$(PY310)" -m venv $(PY310_VENV) && \
		$(PY310_VENV)/bin/python -m pip install -q "numpy>=1.24,<2" "onnxruntime==1.23.2" && \
		touch $@; \
	else echo "no Python 3.10 found: the Python 3.10 runtime test will be skipped"; fi

demo: $(BIN)/.installed
	$(BIN)/kerasport demo

lint: $(BIN)/.installed
	$(BIN)/ruff check kerasport tests benchmarks scripts
	$(BIN)/mypy kerasport

test: $(BIN)/.installed $(PY310_VENV)/.installed lint
	KERASPORT_PY310=$(if $(wildcard $(PY310_VENV)/.installed),$(abspath $(PY310_VENV))/bin/python) \
		$(BIN)/python -m pytest -q -W ignore::DeprecationWarning

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_latency.py

clean:
	rm -rf $(VENV) $(PY310_VENV)
