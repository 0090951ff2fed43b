# Two commands set everything up on a fresh clone:  make demo   and   make test
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_DATA := demo_data
DEMO_RUN := demo_runs/selector

.PHONY: demo test venv clean-demo

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# Synthetic demo data (NOT real X-rays), then a short meta-training run on it.
demo: venv
	$(PY) scripts/make_demo_data.py --out $(DEMO_DATA)
	$(PY) run_selector.py \
	    --train_pos_csv $(DEMO_DATA)/train_pos.csv --train_norm_csv $(DEMO_DATA)/train_norm.csv \
	    --val_pos_csv $(DEMO_DATA)/val_pos.csv --val_norm_csv $(DEMO_DATA)/val_norm.csv \
	    --out $(DEMO_RUN) --overwrite \
	    --set UNLABELED_POOL_SIZE=200 --set QUERY_SET_SIZE=50 --set NUM_META_TRAIN_TASKS=960 \
	    --set NUM_META_TEST_TASKS=200 --set NUM_EPOCHS=3 --set BATCH_SIZE=16 --set LEARNING_RATE=1e-3

test: venv
	$(PY) -m pytest -q tests

clean-demo:
	rm -rf $(DEMO_DATA) demo_runs
