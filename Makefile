# Two commands set everything up on a fresh clone:  make demo   and   make test
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_DATA := demo_data
DEMO_RUNS := demo_runs

.PHONY: demo test venv clean-demo gpu-check docs-numbers

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

# SYNTHETIC end to end (NOT real X-rays, NOT trained weights): generated CheXpert-like images with a
# PLANTED poor-acquisition source (30% of studies: a bright border and a burned-in marker, findings not
# visible; see scripts/make_demo_images.py) and a random-weight checkpoint in the MoCo-CXR layout ->
# prepare_data.py -> xray_to_hdf5.py for each split -> run_selector.py -> evaluate.py (MedSelect in
# both selection modes, untrained, and the baselines; seen and held-out conditions) -> select_xrays.py
# and classify_xrays.py on a pool of test X-rays -> a summary. Tasks are tiny (pool 20, query 10, K 5)
# to fit the few images; the settings are explained in docs/evaluation.md.
DEMO_IMAGES := $(DEMO_DATA)/chexpert
DEMO_SPLITS := $(DEMO_DATA)/splits
DEMO_CHECKPOINT := $(DEMO_IMAGES)/moco_random_resnet18.pth.tar
DEMO_POOL := $(DEMO_DATA)/demo_pool
DEMO_RUN := $(DEMO_RUNS)/selector
DEMO_TEST := $(DEMO_RUNS)/test
DEMO_OWN := $(DEMO_RUNS)/own_xrays
DEMO_TASKS := --set UNLABELED_POOL_SIZE=20 --set QUERY_SET_SIZE=10 --set K=5
DEMO_TRAINING := --set NUM_META_TRAIN_TASKS=720 --set NUM_EPOCHS=1 --set BATCH_SIZE=8 --set LEARNING_RATE=1e-3 \
    --set NUM_META_TEST_TASKS=256
DEMO_METHODS := medselect-sample,medselect-topk,medselect-untrained,random,kmedoids,kmedoids-fasterpam,typiclust,probcover,coreset
DEMO_LABEL := Edema
DEMO_BEST := $(DEMO_RUN)/best.pt
# `make demo` times its own steps: $(call demo_mark,STEP) appends "STEP SECONDS-SINCE-THE-EPOCH" at the start of each
# step ("end" after the last); scripts/demo_report.py turns the marks into each step's time.
DEMO_STEP_TIMES := $(DEMO_RUNS)/step_times.txt
demo_mark = $(PY) -c "import sys, time; print(sys.argv[1], time.time())" $(1) >> $(DEMO_STEP_TIMES)
# Empty: the demo changes nothing in the repository. `make demo DOCS_RESULTS=docs/results` also writes the
# fragments docs/evaluation.md quotes (then `make docs-numbers` copies them into the page).
DOCS_RESULTS ?=
# The tiny tasks' tensor operations run in one thread: never slower than two in our measurements, and
# 4-7 times faster than two when other jobs share the cores (measured for run_selector.py and evaluate.py).
# Embedding (large convolutions) keeps torch's default.
ONE_THREAD := OMP_NUM_THREADS=1

demo: venv
	mkdir -p $(DEMO_RUNS) && rm -f $(DEMO_STEP_TIMES)
	$(call demo_mark,images)
	$(PY) scripts/make_demo_images.py --out $(DEMO_IMAGES) --checkpoint $(DEMO_CHECKPOINT) --patients 300 \
	    --image_size 160x160
	$(call demo_mark,prepare)
	$(PY) prepare_data.py --train_csv $(DEMO_IMAGES)/CheXpert-v1.0-small/train.csv --out $(DEMO_SPLITS) \
	    --val_frac 0.25 --test_frac 0.25 --overwrite $(DEMO_TASKS)
	$(call demo_mark,embed)
	for split in train_pos train_norm val_pos val_norm test_pos test_norm; do \
	    $(PY) xray_to_hdf5.py -d $(DEMO_SPLITS)/$$split.csv -o $(DEMO_SPLITS)/$$split.hdf5 -c $(DEMO_CHECKPOINT) \
	        --root $(DEMO_IMAGES) --overwrite || exit 1; \
	done
	$(call demo_mark,train)
	$(ONE_THREAD) $(PY) run_selector.py \
	    --train_pos_csv $(DEMO_SPLITS)/train_pos.csv --train_norm_csv $(DEMO_SPLITS)/train_norm.csv \
	    --val_pos_csv $(DEMO_SPLITS)/val_pos.csv --val_norm_csv $(DEMO_SPLITS)/val_norm.csv \
	    --out $(DEMO_RUN) --overwrite $(DEMO_TASKS) $(DEMO_TRAINING)
	$(PY) -m utils.plots $(DEMO_RUN)
	$(call demo_mark,evaluate)
	$(ONE_THREAD) $(PY) evaluate.py --checkpoint $(DEMO_BEST) --methods $(DEMO_METHODS) --num_tasks 300 \
	    --test_pos_csv $(DEMO_SPLITS)/test_pos.csv --test_norm_csv $(DEMO_SPLITS)/test_norm.csv \
	    --out $(DEMO_TEST) --overwrite
	$(call demo_mark,own_xrays)
	$(PY) scripts/demo_pool.py pool --splits $(DEMO_SPLITS) --size 100 --out $(DEMO_POOL).csv
	$(PY) xray_to_hdf5.py -d $(DEMO_POOL).csv -o $(DEMO_POOL).hdf5 -c $(DEMO_CHECKPOINT) --root $(DEMO_IMAGES) \
	    --overwrite
	rm -rf $(DEMO_OWN) && mkdir -p $(DEMO_OWN)
	for method in medselect random; do \
	    $(ONE_THREAD) $(PY) select_xrays.py --checkpoint $(DEMO_BEST) --method $$method --pool_csv $(DEMO_POOL).csv -k 10 \
	        --out $(DEMO_OWN)/to_label_$$method.csv && \
	    $(PY) scripts/demo_pool.py label --to_label $(DEMO_OWN)/to_label_$$method.csv --label_column $(DEMO_LABEL) \
	        --out $(DEMO_OWN)/labeled_$$method.csv && \
	    $(ONE_THREAD) $(PY) classify_xrays.py --labeled $(DEMO_OWN)/labeled_$$method.csv --label_column $(DEMO_LABEL) \
	        --unlabeled $(DEMO_POOL).csv --out $(DEMO_OWN)/predictions_$$method.csv \
	        --ground_truth $(DEMO_POOL).csv || exit 1; \
	done
	$(call demo_mark,end)
	$(ONE_THREAD) $(PY) scripts/demo_report.py --images_csv $(DEMO_IMAGES)/CheXpert-v1.0-small/train.csv --run $(DEMO_RUN) \
	    --evaluation $(DEMO_TEST) --own_xrays $(DEMO_OWN) --pool $(DEMO_POOL).csv --label_column $(DEMO_LABEL) \
	    --out $(DEMO_RUNS)/demo_summary.md --step_times $(DEMO_STEP_TIMES) --splits $(DEMO_SPLITS) \
	    $(if $(DOCS_RESULTS),--docs_results $(DOCS_RESULTS))

test: venv $(VENV)/.installed-encoders
	$(PY) -m pytest -q tests

# Copy every docs/results/NAME.md fragment into the pages that quote it (README.md, docs/*.md).
docs-numbers: venv
	$(PY) scripts/docs_numbers.py

clean-demo:
	rm -rf $(DEMO_DATA) $(DEMO_RUNS)

# One call on a lent GPU (docs/performance.md#the-gpu-check): results in $OUT when set, else bench/results/gpu/.
# A GPU machine's own python3 when there is no .venv; GPU_CHECK_ARGS=--smoke runs it small on the CPU.
GPU_PY := $(if $(wildcard $(PY)),$(PY),$(PYTHON))
GPU_BUDGET ?= 500
gpu-check:
	PYTHONUNBUFFERED=1 $(GPU_PY) bench/gpu_check.py --budget $(GPU_BUDGET) $(GPU_CHECK_ARGS)
