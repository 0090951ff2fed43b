"""Selector checkpoints: the original's format plus the configuration that produced them.

A checkpoint is a ``torch.save`` dict with ``epoch``, ``model_state_dict`` and
``optimizer_state_dict`` (the original's keys, so its tools read ours) and, in
ours, ``config``, ``seed``, ``embedding_origin`` (the encoder of the training
embeddings) and ``data`` (data/data_record.py's record of the CSVs the selector
was meta-trained on: a resume on other data is refused, and an evaluation says
which dataset the selector comes from). Checkpoints of the original code have
none of these; the defaults of constants.py are assumed for them, and a user
says otherwise with ``--set`` (e.g. ``--set USE_ASL=True``). The original saved
some checkpoints from a selector wrapped in ``nn.DataParallel``, whose parameter
names start with ``module.``; they are read with that prefix removed.
"""
import logging
import os

import torch

from data.asl import ASL_SIZE
from data.embedding_origin import ORIGIN_KEY, origin_from_dict
from models.attention_selector import ATTENTION_HEADS, AttentionSelector
from models.attention_selector import INPUT_WEIGHT as ATTENTION_INPUT_WEIGHT
from models.lstm_selector import LSTMSelector
from models.pool_features import POOL_FEATURE_SIZE
from models.selector import pool_features_of
from utils.atomic import atomic_torch_save
from utils.config import default_config, with_all_conditions
from utils.errors import UserError
from utils.json_files import read_json_object
from utils.logs import LOGGER_NAME
from utils.torch_files import unreadable_reason

LSTM_INPUT_WEIGHT = "LSTM.weight_ih_l0"  # (4 * hidden, input_size): tells the input size and hidden size
DATA_PARALLEL_PREFIX = "module."  # nn.DataParallel saves the wrapped selector's parameters under this prefix

TRAINING_DATA = "data"  # {data argument: record} in our checkpoints (data/data_record.py), {argument: path} in config.json
TRAINING_POSITIVES = "train_pos_csv"  # the data argument that names the training dataset
# A run folder of run_selector.py: its record of the run, and the checkpoints it keeps beside the per-epoch ones
RUN_CONFIG = "config.json"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"  # the same file as the best model_epoch{E}_iter{I} (a hard link, or a copy)

log = logging.getLogger(LOGGER_NAME)


def save_checkpoint(path, selector, optimizer, epoch, config, **extra):
    atomic_torch_save({"epoch": epoch, "model_state_dict": selector.state_dict(),
                       "optimizer_state_dict": optimizer.state_dict(), "config": config, **extra}, path)


def load_checkpoint(path):
    """The checkpoint dict at ``path``, parameter names without ``module.``; a foreign file is a UserError."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise UserError(f"{path}: not a readable checkpoint ({unreadable_reason(path, err)})") from None
    state = checkpoint.get("model_state_dict") if isinstance(checkpoint, dict) else None
    if isinstance(state, dict):
        state = checkpoint["model_state_dict"] = _without_data_parallel_prefix(state, path)
    if not isinstance(state, dict) or (LSTM_INPUT_WEIGHT not in state and ATTENTION_INPUT_WEIGHT not in state):
        raise UserError(f"{path}: not a MedSelect selector checkpoint (expected 'model_state_dict' "
                        f"with '{LSTM_INPUT_WEIGHT}')")
    return checkpoint


def _without_data_parallel_prefix(state, path):
    """``state`` with the ``module.`` prefix of nn.DataParallel removed from every name (said once in the log)."""
    prefixed = [name for name in state if name.startswith(DATA_PARALLEL_PREFIX)]
    if not prefixed:
        return state
    others = [name for name in state if not name.startswith(DATA_PARALLEL_PREFIX)]
    if others:
        raise UserError(f"{path}: mixes parameter names saved under nn.DataParallel ('{prefixed[0]}', ...) with "
                        f"others ({', '.join(repr(n) for n in others[:3])}); expected the selector's parameters only")
    log.info("%s: saved from nn.DataParallel; removed the '%s' prefix of its %d parameter names", path,
             DATA_PARALLEL_PREFIX, len(prefixed))
    return {name[len(DATA_PARALLEL_PREFIX):]: value for name, value in state.items()}


def checkpoint_config(checkpoint):
    """The configuration stored in the checkpoint; constants.py defaults for the original's checkpoints.

    A stored ALL_COND (earlier checkpoints of this project hold one) is replaced by NON_HOLD_OUT + HOLD_OUT.
    """
    config = default_config()
    config.update(checkpoint.get("config") or {})
    return with_all_conditions(config)


def checkpoint_seed(checkpoint, default):
    """The --seed of the run that saved the checkpoint (ours store it); ``default`` for the original's."""
    return checkpoint.get("seed", default)


def checkpoint_origin(checkpoint, path):
    """The EmbeddingOrigin of the embeddings the selector was trained on; None when not recorded (the original's
    checkpoints, ours from before it was recorded)."""
    return origin_from_dict(checkpoint.get(ORIGIN_KEY), f"the training data of selector {path}")


def checkpoint_training_csv(checkpoint, path):
    """The --train_pos_csv the checkpoint's selector was meta-trained on, or None when nothing records it.

    Read from the checkpoint's ``data``, else, for our checkpoints saved before they recorded their data,
    from the run folder's config.json when that file belongs to the run that saved the checkpoint (same
    configuration and seed). A value of ``data`` is a record holding the path as 'csv' (the checkpoint's)
    or the path itself (config.json's).
    """
    data = checkpoint.get(TRAINING_DATA)
    if data is None and checkpoint.get("config") is not None:
        run_config = read_json_object(os.path.join(os.path.dirname(os.path.abspath(path)), RUN_CONFIG))
        if run_config.get("config") == checkpoint["config"] and run_config.get("seed") == checkpoint.get("seed"):
            data = run_config.get(TRAINING_DATA)
    entry = data.get(TRAINING_POSITIVES) if isinstance(data, dict) else None
    return entry.get("csv") if isinstance(entry, dict) else entry


def selector_from_checkpoint(checkpoint, input_size, path, config=None):
    """The checkpoint's selector (LSTMSelector or AttentionSelector, read from its parameter names) with its
    weights and shape, refusing one made for another input size.

    The sizes are read from the weights; every parameter must be present with the shape they imply, and
    nothing else may be there. ``input_size`` is what the data gives (embedding size, + 3 with USE_ASL);
    ``config`` (default: the checkpoint's, constants.py's for the original's) says whether the selector
    appends the pool features (POOL_FEATURES), which a checkpoint without that setting does not.
    """
    config = checkpoint_config(checkpoint) if config is None else config
    state = checkpoint["model_state_dict"]
    features_of = pool_features_of(config, input_size)
    selector = (_attention_shaped_like(state, path, features_of) if ATTENTION_INPUT_WEIGHT in state
                else _selector_shaped_like(state, path, features_of))
    pool_note = f" + {POOL_FEATURE_SIZE} pool features" if features_of is not None else ""
    stored_input_size = selector.data_input_size
    if stored_input_size != input_size:
        raise UserError(f"{path}: selector was trained on inputs of size {stored_input_size}{pool_note}, but the "
                        f"data gives {input_size}{pool_note} (embedding size, + {ASL_SIZE} with USE_ASL)"
                        + _asl_hint(stored_input_size, input_size, has_config=bool(checkpoint.get("config"))))
    selector.load_state_dict(state)
    return selector


def _selector_shaped_like(state, path, features_of=None):
    """An (untrained) LSTMSelector with the sizes of ``state``, after checking every name and shape."""
    weight = state[LSTM_INPUT_WEIGHT]
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[0] % 4:
        raise UserError(f"{path}: {LSTM_INPUT_WEIGHT} has shape {_shape(weight)}, expected (4 * hidden size, "
                        "input size)")
    hidden_size, input_size = weight.shape[0] // 4, weight.shape[1]
    num_layers = sum(1 for name in state if name.startswith("LSTM.weight_ih_l") and not name.endswith("_reverse"))
    expected = LSTMSelector(input_size, hidden_size=hidden_size, num_layers=num_layers, pool_features_of=features_of)
    _check_parameters(state, expected, path, "a MedSelect BiLSTM selector",
                      f"a BiLSTM selector with input size {input_size} and hidden size {hidden_size} (read from "
                      f"{LSTM_INPUT_WEIGHT})")
    return expected


def _attention_shaped_like(state, path, features_of=None):
    """An (untrained) AttentionSelector with the sizes of ``state`` (SELECTOR=attention), after the same checks."""
    weight = state[ATTENTION_INPUT_WEIGHT]
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[0] % ATTENTION_HEADS:
        raise UserError(f"{path}: {ATTENTION_INPUT_WEIGHT} has shape {_shape(weight)}, expected (width, input size)")
    width, input_size = weight.shape
    num_layers = sum(1 for name in state if name.startswith("encoder.layers.") and name.endswith("in_proj_weight"))
    expected = AttentionSelector(input_size, width=width, num_layers=num_layers, pool_features_of=features_of)
    _check_parameters(state, expected, path, "a MedSelect attention selector",
                      f"an attention selector with input size {input_size} and width {width} (read from "
                      f"{ATTENTION_INPUT_WEIGHT})")
    return expected


def _check_parameters(state, expected, path, what, shaped):
    """Every parameter of ``expected`` in ``state`` with its shape, and nothing else: else a UserError."""
    wanted = expected.state_dict()
    unexpected = [name for name in state if name not in wanted]
    missing = [name for name in wanted if name not in state]
    if unexpected or missing:
        problems = ([f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}"]
                    if unexpected else []) + ([f"missing {', '.join(missing[:4])}"
                                               f"{' ...' if len(missing) > 4 else ''}"] if missing else [])
        raise UserError(f"{path}: not the parameters of {what} ({'; '.join(problems)})")
    wrong = [f"{name} is {_shape(state[name])}, expected {_shape(value)}" for name, value in wanted.items()
             if _shape(state[name]) != _shape(value)]
    if wrong:
        raise UserError(f"{path}: parameter shapes do not fit {shaped}: {'; '.join(wrong[:3])}"
                        f"{' ...' if len(wrong) > 3 else ''}")


def _shape(value):
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _asl_hint(stored_input_size, input_size, has_config):
    """What to do when the input sizes differ by exactly the Age/Sex/Laterality features."""
    if stored_input_size == input_size + ASL_SIZE:
        if has_config:
            return "; the data's embeddings are smaller than those the selector was trained on"
        return (f"; this looks like a selector trained with USE_ASL (embedding + {ASL_SIZE} Age/Sex/Laterality "
                "features) in a checkpoint that does not record its configuration (the original code's): pass "
                "--set USE_ASL=True")
    if stored_input_size == input_size - ASL_SIZE:
        return "; the selector was trained without USE_ASL (embeddings only): leave USE_ASL off"
    return ""


def checkpoint_in(path):
    """``path`` itself, or for a run folder of run_selector.py its best checkpoint (DIR/best.pt)."""
    if path and os.path.isdir(path):
        best = os.path.join(path, BEST_CHECKPOINT)
        if not os.path.isfile(best):
            raise UserError(f"{path}: a folder without {BEST_CHECKPOINT} (not a finished run_selector.py run); "
                            "give a checkpoint file")
        return best
    return path
