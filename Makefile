# The two commands of the README. Each creates .venv on first use.
#   make reproduce   trace every reference experiment, render every figure
#   make test        run the test suite
# and the documentation site: make docs (site/index.html).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: reproduce test venv bench browser docs gpu clean

venv: $(VENV)/.installed

# torch is installed first and pinned: the CPU build this machine provides.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The reference experiments (tracer reproduce), then the figures the README shows that scripts make:
# a user's Lion beside AdamW, and a lecture's figures.
reproduce: venv
	MPLBACKEND=Agg $(BIN)/tracer reproduce
	MPLBACKEND=Agg $(BIN)/python scripts/trace_lion.py --figures figures > /dev/null
	MPLBACKEND=Agg $(BIN)/python scripts/lecture_quadratic.py --out figures/lecture > /dev/null

# The explorer's browser tests drive Debian's Chromium; `make test` installs it
# where it can (as root, or with sudo that asks no password) and otherwise goes
# on: those tests then skip, saying why.
test: venv
	-@$(MAKE) --no-print-directory browser
	MPLBACKEND=Agg $(BIN)/python -m pytest -q

browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; \
	else echo "make browser: needs root (or sudo) to apt-get install chromium chromium-driver"; exit 1; fi; \
	command -v apt-get >/dev/null || { echo "make browser: no apt-get; install Chromium and chromedriver yourself"; exit 1; }; \
	export DEBIAN_FRONTEND=noninteractive; \
	$$SUDO apt-get install -y -q chromium chromium-driver \
	    || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium chromium-driver; }

# On a machine with an NVIDIA GPU: the recorder's, optimizers' and frameworks' tests on CUDA, then the CUDA benchmarks.
gpu: venv
	TRACER_TEST_DEVICE=cuda MPLBACKEND=Agg $(BIN)/python -m pytest -q tests/test_recorder_*.py tests/test_optim_*.py tests/test_integrations.py
	$(BIN)/python benchmarks/bench_cuda.py
	$(BIN)/python benchmarks/bench_large_model.py --device cuda

bench: venv
	$(BIN)/python benchmarks/bench_optimizers.py

clean:
	rm -rf $(VENV) build site *.egg-info

# The documentation site (mkdocs.yml, docs/) into site/; --strict: a broken
# link, a missing page or an unreadable docstring fails the build.
docs: venv
	$(BIN)/mkdocs build --strict
