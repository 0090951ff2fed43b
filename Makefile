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

# The optional encoders (xray_to_hdf5.py --encoder torchxrayvision | timm): the tests exercise them.
$(VENV)/.installed-encoders: requirements-encoders.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-encoders.txt
	touch $@

# SYNTHETIC end to end (NOT real X-rays, NOT trained weights): generated CheXpert-like images and a
# random-weight checkpoint in the MoCo-CXR layout -> prepare_data.py -> xray_to_hdf5.py for each split
# CSV -> a short meta-training run. Tasks are tiny (pool 20, query 10, K 5) to fit the few images.
DEMO_IMAGES := $(DEMO_DATA)/chexpert
DEMO_SPLITS := $(DEMO_DATA)/splits
DEMO_CHECKPOINT := $(DEMO_IMAGES)/moco_random_resnet18.pth.tar
DEMO_TASKS := --set UNLABELED_POOL_SIZE=20 --set QUERY_SET_SIZE=10 --set K=5

demo: venv
	$(PY) scripts/make_demo_images.py --out $(DEMO_IMAGES) --checkpoint $(DEMO_CHECKPOINT)
	$(PY) prepare_data.py --train_csv $(DEMO_IMAGES)/CheXpert-v1.0-small/train.csv --out $(DEMO_SPLITS) \
	    --val_frac 0.25 --test_frac 0.25 --overwrite $(DEMO_TASKS)
	for split in train_pos train_norm val_pos val_norm test_pos test_norm; do \
	    $(PY) xray_to_hdf5.py -d $(DEMO_SPLITS)/$$split.csv -o $(DEMO_SPLITS)/$$split.hdf5 -c $(DEMO_CHECKPOINT) \
	        --root $(DEMO_IMAGES) --overwrite || exit 1; \
	done
	$(PY) run_selector.py \
	    --train_pos_csv $(DEMO_SPLITS)/train_pos.csv --train_norm_csv $(DEMO_SPLITS)/train_norm.csv \
	    --val_pos_csv $(DEMO_SPLITS)/val_pos.csv --val_norm_csv $(DEMO_SPLITS)/val_norm.csv \
	    --out $(DEMO_RUN) --overwrite $(DEMO_TASKS) \
	    --set NUM_META_TRAIN_TASKS=480 --set NUM_META_TEST_TASKS=64 --set NUM_EPOCHS=2 --set BATCH_SIZE=16 \
	    --set LEARNING_RATE=1e-3

test: venv $(VENV)/.installed-encoders
	$(PY) -m pytest -q tests

clean-demo:
	rm -rf $(DEMO_DATA) demo_runs
