"""The selector a configuration names (SELECTOR, POOL_FEATURES), with the initial weights of a seed.

``SELECTOR="lstm"`` without POOL_FEATURES is the paper's BiLSTM exactly as models/lstm_selector.py builds
it (same parameters, same initial weights for a seed); the other settings are options
(docs/training.md#selector-options).
"""
import torch

from data.asl import ASL_SIZE
from models.attention_selector import AttentionSelector
from models.lstm_selector import LSTMSelector
from models.pool_features import POOL_FEATURE_SIZE

LSTM, ATTENTION = "lstm", "attention"
SELECTOR_CLASSES = {LSTM: LSTMSelector, ATTENTION: AttentionSelector}


def pool_features_of(config, data_input_size):
    """The embedding size whose pool features the selector appends (POOL_FEATURES), or None."""
    if not config.get("POOL_FEATURES", False):
        return None
    return data_input_size - (ASL_SIZE if config.get("USE_ASL", False) else 0)


def network_input_size(config, data_input_size):
    """What the selector's network reads per X-ray: the data's input plus the pool features when used."""
    return data_input_size + (POOL_FEATURE_SIZE if config.get("POOL_FEATURES", False) else 0)


def build_selector(config, data_input_size, seed):
    """The selector of ``config`` for inputs of ``data_input_size`` (embedding size, + 3 with USE_ASL), with
    PyTorch's default initialisation drawn right after ``torch.manual_seed(seed)`` (global state restored):
    the selector meta-training with ``--seed seed`` starts from."""
    kind = config.get("SELECTOR", LSTM)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SELECTOR_CLASSES[kind](network_input_size(config, data_input_size),
                                      pool_features_of=pool_features_of(config, data_input_size))


def untrained_like(selector, seed):
    """A selector of the same class and shape as ``selector``, with the initial weights of ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(selector, AttentionSelector):
            return AttentionSelector(selector.input_size, selector.width, selector.heads, selector.num_layers,
                                     pool_features_of=selector.pool_features_of)
        return LSTMSelector(selector.input_size, hidden_size=selector.hidden_size, num_layers=selector.num_layers,
                            pool_features_of=selector.pool_features_of)


def parameter_count(selector):
    return sum(p.numel() for p in selector.parameters())
