# `make demo` and `make test` each set everything up from nothing (a Python 3.11 with pip).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.adapterkit-installed
DATA   ?= data/synthetic

.PHONY: install demo test clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m adapterkit demo --data $(DATA)

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf work_dirs $(DATA)
