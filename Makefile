# The two commands of the README. Each creates .venv on first use.
#   make reproduce   trace every reference experiment, render every figure
#   make test        run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: reproduce test venv bench clean

venv: $(VENV)/.installed

# torch is installed first and pinned: the CPU build this machine provides.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

reproduce: venv
	MPLBACKEND=Agg $(BIN)/tracer reproduce

test: venv
	MPLBACKEND=Agg $(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python benchmarks/bench_optimizers.py

clean:
	rm -rf $(VENV) build *.egg-info
