# `make demo` and `make test` each set everything up from nothing (a Python 3.11 with pip).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.adapterkit-installed
DATA   ?= data/synthetic

.PHONY: install demo test clean

$(STAMP): pyproject.toml plugins/adapterkit-dora/pyproject.toml \
          plugins/adapterkit-tadformer/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# the third-party plugins shipped here: `make test` runs their tests with adapterkit's
	$(BIN)/python -m pip install --quiet -e plugins/adapterkit-dora
	$(BIN)/python -m pip install --quiet -e plugins/adapterkit-tadformer
	touch $(STAMP)

install: $(STAMP)

# The quickstart comparison suite (configs/compare/quickstart.py); reruns reuse finished
# runs. One torch thread: the mini model's small ops gain little from a second one, and
# more threads than free cores slow torch down tenfold on a shared machine.
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m adapterkit demo

# Two pytest-xdist workers of one torch thread each (whole modules to a worker, so that a
# module's shared runs happen once): most of the suite is single-threaded Python (process
# start-ups, the Runner), which leaves a second core idle; more threads than cores slow torch.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadscope

clean:
	rm -rf work_dirs $(DATA) data/compare
