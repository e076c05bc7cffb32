# Tổng đài CCHC — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test lint bench deps venv system-deps sandbox clean-var help

help:
	@echo "make run   — cài những gì còn thiếu, khởi động Asterisk và tổng đài"
	@echo "make test  — toàn bộ bộ kiểm thử (kể cả end-to-end với Asterisk thật)"
	@echo "make bench — đo năng lực tổng đài so với IVR chỉ dùng dialplan (QUICK=1: một mức nhỏ)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

venv: $(VENV)/.installed

system-deps:
	@scripts/install-system-deps.sh

deps: venv system-deps

run: deps
	$(VENV)/bin/tongdai run

# Lint and types first: a style or type error fails the run before the long suite starts.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: deps lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The capacity bench (and the export bench where present); QUICK=1 runs one small level.
bench: deps
	$(PY) -m bench $(if $(filter-out 0,$(QUICK)),--quick) $(BENCH_ARGS)

sandbox: deps
	$(VENV)/bin/tongdai sandbox install
