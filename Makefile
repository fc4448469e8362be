# dpot-lab: `make demo` and `make test` work on a fresh clone; each creates .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
PORT ?= 5006

.PHONY: venv demo test lab bench browser pretrained-checkpoint lint

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: the CPU build on this machine's disk, so no CUDA build is fetched here.
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Debian's Chromium for the browser tests (never `playwright install`: it downloads a browser).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

test: venv browser
	$(PY) -m pytest -q

# The rollout viewer on the shipped demo model; demo data is generated on first use (seconds).
demo: venv
	$(PY) -m dpot_lab.cli demo --port $(PORT)

# Re-train the shipped CPU foundation model in three stages (configs/pretrain_cpu.yaml: nine PDE
# sources, 36,000 steps, data generation included; then configs/pretrain_cpu_stage2.yaml and
# configs/pretrain_cpu_stage3.yaml: 30,000 and 15,000 more steps, each from the last one's weights;
# about 3 h 40 min on both cores of a 2-core CPU) and keep the weights and config only, as
# `dpot-lab export` does.
pretrained-checkpoint: venv
	rm -rf runs/pretrained-checkpoint runs/pretrained-checkpoint-2 runs/pretrained-checkpoint-3
	OMP_NUM_THREADS=2 $(PY) -m dpot_lab.cli pretrain configs/pretrain_cpu.yaml --out runs/pretrained-checkpoint
	OMP_NUM_THREADS=2 $(PY) -m dpot_lab.cli finetune configs/pretrain_cpu_stage2.yaml \
		--from runs/pretrained-checkpoint/checkpoints/last.pt --out runs/pretrained-checkpoint-2
	OMP_NUM_THREADS=2 $(PY) -m dpot_lab.cli finetune configs/pretrain_cpu_stage3.yaml \
		--from runs/pretrained-checkpoint-2/checkpoints/last.pt --out runs/pretrained-checkpoint-3
	$(PY) -m dpot_lab.cli export runs/pretrained-checkpoint-3/checkpoints/last.pt dpot_lab/assets/pretrained.pt

lab: venv
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --no-browser --ip 127.0.0.1 $(ROOT_FLAG)

bench: venv
	$(PY) benchmarks/model_speed.py
	$(PY) benchmarks/data_speed.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/trainer_speed.py
	$(VENV)/bin/torchrun --standalone --nproc_per_node=2 benchmarks/sharding.py --preset S

lint: venv
	$(VENV)/bin/ruff check dpot_lab tests benchmarks apps
