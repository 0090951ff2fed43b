"""Tiny pools and selector checkpoints for the tests of select_xrays.py, classify_xrays.py and medselect."""
import os

import numpy as np
import pandas as pd
import torch

from data.synthetic import synthetic_centres, synthetic_split, write_pair
from models.lstm_selector import LSTMSelector
from utils.config import default_config

DIM = 8
HIDDEN = 16
TRAINED_POOL_SIZE = 20  # the pool size stored in the test checkpoints
TRAINED_K = 5


def write_pool(folder, name="my_xrays", num_positive=40, num_normal=30, dim=DIM, seed=0):
    """A shuffled pool of positives and normals in one CSV + HDF5; returns (csv path, frame, embeddings)."""
    rng = np.random.default_rng(seed)
    pos, pos_emb, norm, norm_emb = synthetic_split(num_positive, num_normal, dim, rng,
                                                   centres=synthetic_centres(dim, np.random.default_rng(99)))
    order = rng.permutation(num_positive + num_normal)
    frame = pd.concat([pos, norm], ignore_index=True).iloc[order].reset_index(drop=True)
    embeddings = np.concatenate([pos_emb, norm_emb])[order]
    os.makedirs(folder, exist_ok=True)
    csv_path = os.path.join(folder, f"{name}.csv")
    write_pair(frame, embeddings, csv_path)
    return csv_path, pd.read_csv(csv_path), embeddings


def memoryless_selector(input_size, seed=0):
    """A BiLSTM whose logit for an X-ray depends on that X-ray alone, not on the rest of the sequence.

    No recurrent weights, and a forget gate shut (bias -1e4): the cell state is rebuilt from the
    current input at every step. Its logits can then be recomputed per X-ray with NumPy
    (:func:`numpy_logits`), whatever order the pool is read in.
    """
    torch.manual_seed(seed)
    selector = LSTMSelector(input_size, hidden_size=HIDDEN)
    with torch.no_grad():
        for suffix in ("", "_reverse"):
            getattr(selector.LSTM, f"weight_hh_l0{suffix}").zero_()
            getattr(selector.LSTM, f"weight_ih_l0{suffix}").normal_()
            getattr(selector.LSTM, f"bias_ih_l0{suffix}")[HIDDEN:2 * HIDDEN] = -1e4  # gates i, f, g, o
        selector.linear.weight.normal_()
    return selector


def numpy_logits(state, inputs):
    """The memoryless selector's logits, one X-ray at a time in NumPy: (N, D) -> (N,)."""
    def sigmoid(z):
        return 1.0 / (1.0 + np.exp(-z))

    states = []
    for suffix in ("", "_reverse"):
        weight = state[f"LSTM.weight_ih_l0{suffix}"].double().numpy()
        bias = (state[f"LSTM.bias_ih_l0{suffix}"] + state[f"LSTM.bias_hh_l0{suffix}"]).double().numpy()
        i, _, g, o = np.split(inputs.astype(np.float64) @ weight.T + bias, 4, axis=1)
        states.append(sigmoid(o) * np.tanh(sigmoid(i) * np.tanh(g)))
    hidden = np.concatenate(states, axis=1)  # (N, 2H)
    return hidden @ state["linear.weight"].double().numpy()[0] + state["linear.bias"].double().numpy()[0]


def write_checkpoint(path, selector, config_updates=None, original_format=False):
    """Save ``selector`` like run_selector.py (with its config), or like the original code (no config)."""
    checkpoint = {"epoch": 1, "model_state_dict": selector.state_dict(), "optimizer_state_dict": {}}
    if not original_format:
        config = default_config()
        config.update({"UNLABELED_POOL_SIZE": TRAINED_POOL_SIZE, "K": TRAINED_K, **(config_updates or {})})
        checkpoint["config"] = config
    torch.save(checkpoint, path)
    return str(path)


def softmax(logits):
    z = np.exp(logits - logits.max())
    return z / z.sum()


LABELLED = [3, 11, 20, 31, 47, 52, 60]  # pool rows a "radiologist" labelled in the classify tests


def write_labelled_pool(tmp_path):
    """(pool csv, pool frame, embeddings, labeled.csv path, 0/1 labels of LABELLED for Edema) under tmp_path."""
    csv_path, frame, embeddings = write_pool(tmp_path / "data")
    labeled = frame.iloc[LABELLED][["Path", "Edema"]].copy()
    labeled["Edema"] = labeled["Edema"].isin([1, -1]).astype(int)
    labeled.loc[labeled.index[:2], "Edema"] = [1, 0]  # both classes, whatever the data
    labeled_csv = tmp_path / "labeled.csv"
    labeled.to_csv(labeled_csv, index=False)
    return csv_path, frame, embeddings, labeled_csv, labeled["Edema"].to_numpy(copy=True)
