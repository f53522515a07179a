# The two commands of the README: `make demo` and `make test`. Both create .venv when it is
# missing and install the project into it (TensorFlow 2.20, Keras 3, tf-models-official 2.20,
# and the `beam` extra, so that the Beam conversion test runs).
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= data/synthetic_demo
DEMO_OUT ?= demo_out
VIDEO ?=
PYTEST_ARGS ?=

.PHONY: demo test lint venv clean-demo

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[beam]'
	touch $@

# ruff and import-linter, pinned in pyproject.toml's `lint` extra (installed into .venv).
# Contracts: object_detection_ext imports nothing from action_tx; action_tx.data no model code.
$(VENV)/.lint-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[lint]'
	touch $@

lint: $(VENV)/.lint-installed
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

demo: venv
	$(PY) tools/demo.py --data_dir=$(DEMO_DIR) --out_dir=$(DEMO_OUT) $(if $(VIDEO),--video=$(VIDEO))

clean-demo:
	rm -rf $(DEMO_DIR) $(DEMO_OUT)
