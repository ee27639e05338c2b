# The two commands of the README:  make workflow  (the main job)  and  make test.
# Both set up .venv on first use; nothing else needs installing by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= all

.PHONY: setup lock workflow figures test check smoke report determinism bench plans clean

setup: $(VENV)/.installed

# the locked environment: every package at the version of envs/requirements.lock, nothing resolved
$(VENV)/.installed: envs/requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-deps -r envs/requirements.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

# envs/requirements.lock anew from the ranges of envs/requirements.txt (and the --no-deps packages),
# each pin with its file's sha256
lock:
	rm -rf build/lock-venv && $(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/pip install -q --upgrade pip
	build/lock-venv/bin/pip install -q -r envs/requirements.txt
	build/lock-venv/bin/pip install -q --no-deps -r envs/requirements-nodeps.txt
	{ sed -n '1,/^# Byte-identical/p' envs/requirements.lock; \
	  build/lock-venv/bin/pip freeze --all --exclude-editable | grep -v '^pip=='; } > envs/requirements.lock.new
	build/lock-venv/bin/python scripts/lock_hashes.py envs/requirements.lock.new
	mv envs/requirements.lock.new envs/requirements.lock && rm -rf build/lock-venv

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

# the HTML report of the study's outputs as they are (the committed ones in a fresh clone: no
# training); after make workflow, of that run, with its jobs' timings
report: setup
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
	results/summary.md results/summary.html results/manifest.sha256 figures/*.png figures/*.pdf report.zip

clean:
	rm -rf $(DEFAULT_OUTPUTS)

bench: setup
	$(BIN)/python benchmarks/bench.py

# What the paper-scale studies need (docs/plans/, quoted by the README; tests check they are current)
PLANNED := paper paper_xl
plans: setup
	for c in $(PLANNED); do $(BIN)/lnstab plan config/$$c.yaml > docs/plans/$$c.md || true; done
