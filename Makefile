# Single-view 3D reconstruction suite. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install.stamp
EXP ?= gp2_synthetic
ARGS ?=
SWEEP ?= gp2_uts_fraction
REPORT ?= gp2_fig3
# pytest workers for `make test` (the fast suite); 0 = in-process
JOBS ?= 2

.PHONY: help install train eval show test test-all sweep report bench lint list clean-venv

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: EXP=$(EXP) ARGS='key=value ...' SWEEP=$(SWEEP) REPORT=$(REPORT) JOBS=$(JOBS)"

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3"
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -c "import torch, torchvision, timm, lpips, pytorch_lightning, wandb; print('installed: torch', torch.__version__, '| torchvision', torchvision.__version__, '| cuda available:', torch.cuda.is_available())"
	touch $(STAMP)

install: $(STAMP) ## install into .venv from requirements.lock (idempotent)

train: $(STAMP) ## train an experiment: make train EXP=gp2_synthetic ARGS="trainer.max_epochs=5"
	$(PY) -m experiments train $(EXP) $(ARGS)

eval: $(STAMP) ## evaluate a checkpoint: make eval EXP=gp2_synthetic ARGS="ckpt_path=runs/.../best.ckpt"
	$(PY) -m experiments eval $(EXP) $(ARGS)

list: $(STAMP) ## list experiments, config options, sweeps and reports
	$(PY) -m experiments list

show: $(STAMP) ## every key of an experiment's config with its default and source: make show EXP=gp2_synthetic
	$(PY) -m experiments show $(EXP) $(ARGS)

test: $(STAMP) ## fast test suite (install included; under 10 minutes on 2 CPU cores)
	$(PY) -m pytest -q $(if $(filter-out 0,$(JOBS)),-n $(JOBS)) $(ARGS)

test-all: $(STAMP) ## every test, the slow ones too
	$(PY) -m pytest -q -m "slow or not slow" $(if $(filter-out 0,$(JOBS)),-n $(JOBS)) $(ARGS)

sweep: $(STAMP) ## run a sweep offline (or ARGS=--online with W&B): make sweep SWEEP=gp2_uts_fraction
	$(PY) -m experiments sweep $(SWEEP) $(ARGS)

report: $(STAMP) ## run or reuse a paper table/figure's runs, write report.md: make report REPORT=gp2_table2
	$(PY) -m experiments report $(REPORT) $(ARGS)

bench: $(STAMP) ## benchmarks, printed side by side (ARGS=--full for the large sizes)
	$(PY) -m experiments bench $(ARGS)

lint: $(STAMP) ## ruff
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean-venv: ## remove the virtual environment
	rm -rf $(VENV)
