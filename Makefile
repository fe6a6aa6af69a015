# lensloop: `make demo` and `make test` do all set-up themselves on a fresh Debian machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint pytest sysdeps labelstudio venv bench clean

venv: $(STAMP)

# The constraints file pins torch to the local CPU build whenever a dependency asks for it.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# System packages the integration tests need (PostgreSQL server, Chromium); skipped politely when not root.
sysdeps:
	bash scripts/install-sysdeps.sh

# Label Studio for the annotation integration tests, in its own venv (.venv-labelstudio).
labelstudio:
	PYTHON='$(PYTHON)' bash scripts/install-labelstudio.sh

demo: $(STAMP)
	$(BIN)/lensloop demo demo-project

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

pytest: $(STAMP) sysdeps labelstudio
	$(BIN)/python -m pytest

test: lint pytest

bench: $(STAMP)
	$(BIN)/python bench/bench_decode.py
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_embed.py --n 320 --workers 0 1
	@echo 'Longer runs: bench/bench_search.py (1M x 512, ~3 min, 5 GB), bench/bench_select.py (1M x 512, ~2 min, 4 GB), bench/bench_simulate.py (~2 min) and bench/bench_backbones.py (~5 min).'

clean:
	rm -rf $(VENV) .venv-labelstudio demo-project .pytest_cache .mypy_cache .ruff_cache
