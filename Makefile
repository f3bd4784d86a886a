# bitlatent: the first two commands on a fresh machine are `make run` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRA  ?= cpu
# pytest-xdist workers of `make test`; tests/conftest.py gives each its share of the cores.
TEST_WORKERS ?= 2
STAMP  := $(VENV)/.installed-$(EXTRA)

# No telemetry, no hub downloads: everything runs offline.
export KEDRO_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export ORT_DISABLE_TELEMETRY := 1
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run test test-fast bench gpu-check clean-data help

help:
	@echo "make run     set up .venv and run every pipeline on the embedded synthetic data (kedro run)"
	@echo "make test    set up .venv and run the whole test suite (what CI runs)"
	@echo "make test-fast  the unit tests only, without the end-to-end files (tests/conftest.py E2E_FILES)"
	@echo "make bench   run the benchmarks (see benchmarks/README.md)"
	@echo "make gpu-check  the prepared GPU check with the machine's own python, no install (benchmarks/gpu_check.py)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRA),test]"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/kedro run

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# The edit-test loop: every test but those marked e2e.
test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not e2e"

bench: $(STAMP)
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

# The prepared GPU check: the machine's own python (torch, numpy, safetensors, onnx, onnxruntime),
# no .venv, no install; writes benchmarks/results/gpu_check.json. Without a GPU: the CPU parts, tiny.
GPU_PYTHON ?= python3
gpu-check:
	PYTHONPATH=src $(GPU_PYTHON) benchmarks/gpu_check.py

clean-data:
	find data -type f ! -name .gitkeep ! -name README.md ! -name '*.dvc' ! -name .gitignore -delete
