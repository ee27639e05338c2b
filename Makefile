# The two commands of the README:  make workflow  (the main job)  and  make test.
# Both set up .venv on first use; nothing else needs installing by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= all

.PHONY: setup workflow figures test check smoke report determinism bench plans clean

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

# every figure and the summary from the committed tables: no training job, no Snakemake
figures: setup
	$(BIN)/lnstab figures config/config.yaml

test: setup
	$(BIN)/python -m pytest

# the edit loop: everything but the end-to-end workflow and SLURM tests
check: setup
	$(BIN)/python -m pytest -m "not slow" -q

smoke: setup
	$(BIN)/snakemake --cores $(CORES) --configfile config/smoke.yaml

report: workflow
	$(BIN)/snakemake --report report.zip

# Two runs of the default study from scratch must give byte-identical tables and figures.
determinism: setup
	$(MAKE) clean && $(BIN)/snakemake --cores $(CORES) --quiet
	cp results/manifest.sha256 manifest.first.sha256
	$(MAKE) clean && $(BIN)/snakemake --cores $(CORES) --quiet
	$(BIN)/lnstab check-manifest manifest.first.sha256 && rm manifest.first.sha256

# Only what the default study (config/config.yaml) writes: other studies under results/ (paper,
# extended, smoke, gpu) and their checkpoints are left alone.
DEFAULT_OUTPUTS := results/runs results/tables results/data results/logs results/benchmarks \
	results/summary.md results/manifest.sha256 figures/*.png figures/*.pdf report.zip

clean:
	rm -rf $(DEFAULT_OUTPUTS)

bench: setup
	$(BIN)/python benchmarks/bench.py

# What the paper-scale studies need (docs/plans/, quoted by the README; tests check they are current)
PLANNED := paper paper_xl
plans: setup
	for c in $(PLANNED); do $(BIN)/lnstab plan config/$$c.yaml > docs/plans/$$c.md || true; done
