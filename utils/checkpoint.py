"""Selector checkpoints: the original's format plus the configuration that produced them.

A checkpoint is a ``torch.save`` dict with ``epoch``, ``model_state_dict`` and
``optimizer_state_dict`` (the original's keys, so its tools read ours) and, in
ours, ``config``. Checkpoints of the original code have no ``config``; the
defaults of constants.py are assumed for them.
"""
import os

import torch

from models.lstm_selector import LSTMSelector
from utils.atomic import atomic_torch_save
from utils.config import default_config
from utils.errors import UserError

LSTM_INPUT_WEIGHT = "LSTM.weight_ih_l0"  # (4 * hidden, input_size): tells the input size and hidden size


def save_checkpoint(path, selector, optimizer, epoch, config, **extra):
    atomic_torch_save({"epoch": epoch, "model_state_dict": selector.state_dict(),
                       "optimizer_state_dict": optimizer.state_dict(), "config": config, **extra}, path)


def load_checkpoint(path):
    """The checkpoint dict at ``path``; a missing or foreign file is a one-line UserError."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise UserError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(checkpoint, dict) or LSTM_INPUT_WEIGHT not in checkpoint.get("model_state_dict", {}):
        raise UserError(f"{path}: not a MedSelect selector checkpoint (expected 'model_state_dict' "
                        f"with '{LSTM_INPUT_WEIGHT}')")
    return checkpoint


def checkpoint_config(checkpoint):
    """The configuration stored in the checkpoint; constants.py defaults for the original's checkpoints."""
    config = default_config()
    config.update(checkpoint.get("config") or {})
    return config


def checkpoint_seed(checkpoint, default):
    """The --seed of the run that saved the checkpoint (ours store it); ``default`` for the original's."""
    return checkpoint.get("seed", default)


def selector_from_checkpoint(checkpoint, input_size, path):
    """An LSTMSelector with the checkpoint's weights, refusing one made for another input size."""
    state = checkpoint["model_state_dict"]
    weight = state[LSTM_INPUT_WEIGHT]
    hidden_size, stored_input_size = weight.shape[0] // 4, weight.shape[1]
    if stored_input_size != input_size:
        raise UserError(f"{path}: selector was trained on inputs of size {stored_input_size}, but the data gives "
                        f"{input_size} (embedding size, + 3 with USE_ASL)")
    num_layers = sum(1 for key in state if key.startswith("LSTM.weight_ih_l") and not key.endswith("_reverse"))
    selector = LSTMSelector(input_size, hidden_size=hidden_size, num_layers=num_layers)
    try:
        selector.load_state_dict(state)
    except RuntimeError as err:
        raise UserError(f"{path}: selector weights do not fit an LSTMSelector ({str(err).splitlines()[0]})") from None
    return selector
