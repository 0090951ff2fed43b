"""Small generated test data for evaluate.py, where the right answer is known (never real X-rays).

Normals scatter widely around the origin; the positives of each condition sit in a tight cluster
whose coordinate 0 is 3. Pools are only 20% positive, so K random labels often hold no positive,
and a classifier built from normals alone is near chance. A crafted selector checkpoint scores
X-rays by coordinate 0 and so favours positives: it must beat random.
"""
import os

import numpy as np
import pandas as pd
import torch

import constants
from data.synthetic import write_pair
from models.lstm_selector import LSTMSelector
from utils.config import apply_overrides, default_config

DIM = 8
# pool 30 (6 positive), query 10 (5 positive), K 4: tiny tasks, quick on a CPU
SETTINGS = ["UNLABELED_POOL_SIZE=30", "UNLABELED_POS_FRAC=0.2", "QUERY_SET_SIZE=10", "K=4", "BATCH_SIZE=8",
            "NUM_META_TEST_TASKS=16"]


def write_test_split(folder, positives_per_condition=30, num_normal=60, few=None, seed=0):
    """{folder}/test_pos.csv and test_norm.csv with embeddings; ``few`` = {condition: count} shrinks some."""
    rng = np.random.default_rng(seed)
    counts = {c: (few or {}).get(c, positives_per_condition) for c in constants.ALL_COND}
    centres = 2 * rng.normal(size=(len(constants.ALL_COND), DIM))
    centres[:, 0] = 3.0
    condition_of_row = np.repeat(np.arange(len(constants.ALL_COND)), [counts[c] for c in constants.ALL_COND])
    positive = centres[condition_of_row] + 0.5 * rng.normal(size=(len(condition_of_row), DIM))
    normal = rng.normal(size=(num_normal, DIM))
    positive_frame = _frame("pos", len(positive), rng)
    for j, condition in enumerate(constants.ALL_COND):
        positive_frame[condition] = np.where(condition_of_row == j, 1.0, np.nan)
    normal_frame = _frame("norm", num_normal, rng)
    normal_frame["No Finding"] = 1.0
    os.makedirs(folder, exist_ok=True)
    paths = os.path.join(folder, "test_pos.csv"), os.path.join(folder, "test_norm.csv")
    write_pair(positive_frame, positive.astype(np.float32), paths[0])
    write_pair(normal_frame, normal.astype(np.float32), paths[1])
    return paths


def _frame(kind, rows, rng):
    return pd.DataFrame({"Path": [f"generated/{kind}/{i}.jpg" for i in range(rows)],
                         "Sex": rng.choice(["Female", "Male"], size=rows),
                         "Age": rng.integers(18, 90, size=rows),
                         "Frontal/Lateral": rng.choice(["Frontal", "Lateral"], size=rows, p=[0.8, 0.2])})


def positive_favouring_selector(input_size=DIM, hidden_size=4, strength=3.0):
    """A BiLSTM whose logit grows with coordinate 0 of each X-ray (independently of its neighbours).

    Input gate open, forget gate shut, output gate open, no recurrence: hidden unit 0 of each
    direction is tanh(tanh(strength * x_0)), and the linear layer adds both directions up.
    """
    selector = LSTMSelector(input_size, hidden_size=hidden_size)
    with torch.no_grad():
        for parameter in selector.parameters():
            parameter.zero_()
        for suffix in ("", "_reverse"):
            gates_bias = getattr(selector.LSTM, f"bias_ih_l0{suffix}")
            gates_bias[0:hidden_size] = 10.0  # input gate
            gates_bias[hidden_size:2 * hidden_size] = -10.0  # forget gate
            gates_bias[3 * hidden_size:] = 10.0  # output gate
            getattr(selector.LSTM, f"weight_ih_l0{suffix}")[2 * hidden_size, 0] = strength  # cell input, unit 0
        selector.linear.weight[0, 0] = selector.linear.weight[0, hidden_size] = strength
    return selector


def write_checkpoint(path, selector=None, settings=SETTINGS):
    """A run_selector.py-style checkpoint holding the selector and its configuration."""
    selector = selector or positive_favouring_selector()
    config = apply_overrides(default_config(), settings)
    torch.save({"epoch": 1, "model_state_dict": selector.state_dict(), "optimizer_state_dict": {},
                "config": config, "seed": 0}, path)
    return path
