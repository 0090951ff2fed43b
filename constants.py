"""MedSelect hyperparameters (the paper's hyperparameters; docs/training.md#settings).

Edit this file to change the method for every run, or override a value for one
run with ``--set NAME=VALUE`` on the command line (same names, type-checked).
The values a run actually used are written to its ``config.json`` and stored
inside every checkpoint it saves.
"""

# Task shape ---------------------------------------------------------------
UNLABELED_POOL_SIZE = 1000  # X-rays in each task's unlabeled pool (the selector's input sequence)
UNLABELED_POS_FRAC = 0.5    # fraction of the pool positive for the task's condition
QUERY_SET_SIZE = 100        # labeled X-rays, disjoint from the pool, that score the classifier
QUERY_POS_FRAC = 0.5        # fraction of the query set positive (both classes must be present)
NUM_META_TRAIN_TASKS = 10000  # tasks per meta-training epoch
NUM_META_TEST_TASKS = 1000    # tasks in meta-validation and meta-test (deterministic, same every time)

# Conditions (CheXpert column names) ----------------------------------------
HOLD_OUT = ["Atelectasis", "Edema"]  # never seen in meta-training: the "unseen" conditions
NON_HOLD_OUT = ["Consolidation", "Lung Opacity", "Pleural Effusion", "Pneumothorax",
                "Enlarged Cardiomediastinum", "Cardiomegaly"]  # meta-training and meta-validation
ALL_COND = NON_HOLD_OUT + HOLD_OUT

# Selector training ---------------------------------------------------------
LEARNING_RATE = 1e-4  # Adam; multiplied by 0.1 from the third epoch on
K = 20                # X-rays selected for labeling in each task
NUM_EPOCHS = 5
BATCH_SIZE = 64       # tasks per REINFORCE step
USE_ASL = False       # append Sex, Age, Frontal/Lateral to the selector's input (never the classifier's)
BEST_CHECKPOINT_BY = "sample"  # meta-val AUROC that picks the best checkpoint: "sample" (the original's) or "topk"

# Selector options (docs/training.md#selector-options). The defaults are the paper's method; a checkpoint
# that does not record one of these (every earlier checkpoint, the original's) means the paper's choice.
POOL_FEATURES = False     # append each X-ray's relations to its pool (similarity, typicality, coverage) to its input
SELECTOR = "lstm"         # "lstm" (the paper's BiLSTM) or "attention" (self-attention over the pool, order-free)
POLICY = "multinomial"    # training's draws: "multinomial" (K with replacement, the paper's) or "distinct" (K different)
SAMPLES_PER_TASK = 1      # selections drawn per task in each REINFORCE step
REWARD_BASELINE = "random"  # "random" (K random X-rays, the paper's) or "leave-one-out" (other draws)
