# The two commands of the README:  make workflow  (the main job)  and  make test.
# Both set up .venv on first use; nothing else needs installing by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= all

.PHONY: setup workflow test smoke report manifest check-manifest clean

setup: $(VENV)/.installed

$(VENV)/.installed: envs/requirements.txt envs/requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r envs/requirements.txt
	$(BIN)/pip install -q --no-deps -r envs/requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

workflow: setup
	$(BIN)/snakemake --cores $(CORES)

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf results figures/*.png figures/*.pdf .snakemake report.zip
