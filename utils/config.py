"""The run configuration: the values of ``constants.py`` plus ``--set NAME=VALUE`` overrides.

Overrides use the same names as constants.py, are type-checked against the
default's type, and unknown names are refused with the list of valid ones.
"""
import ast
import math

import constants
from utils.errors import UserError


def default_config():
    """Every upper-case value of constants.py, as a plain dict (lists copied)."""
    return {name: (list(value) if isinstance(value, list) else value)
            for name, value in vars(constants).items() if name.isupper()}


def apply_overrides(config, assignments):
    """Return a copy of ``config`` with each ``NAME=VALUE`` string applied and type-checked."""
    config = dict(config)
    for assignment in assignments or []:
        name, sep, text = assignment.partition("=")
        name = name.strip()
        if not sep:
            raise UserError(f"--set expects NAME=VALUE, got {assignment!r}")
        if name not in config:
            raise UserError(f"--set: unknown name {name!r}; valid names: {', '.join(sorted(config))}")
        config[name] = _parse_like(name, text.strip(), config[name])
    validate_config(config)
    return config


def _parse_like(name, text, default):
    """Parse ``text`` as a value of the same type as ``default``."""
    if isinstance(default, bool):
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise UserError(f"--set {name}: expected True or False, got {text!r}")
    if isinstance(default, list):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = [part.strip() for part in text.split(",") if part.strip()]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise UserError(f"--set {name}: expected a comma-separated list of names, got {text!r}")
        return list(value)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise UserError(f"--set {name}: expected a {type(default).__name__}, got {text!r}") from None
    if isinstance(default, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise UserError(f"--set {name}: expected a {type(default).__name__}, got {text!r}")


def validate_config(config):
    """Refuse values that cannot make a task or a training run, naming the setting."""
    def require(ok, message):
        if not ok:
            raise UserError(message)

    require(config["K"] >= 1, f"K must be at least 1, got {config['K']}")
    require(config["UNLABELED_POOL_SIZE"] >= 2, f"UNLABELED_POOL_SIZE must be at least 2, got "
                                                f"{config['UNLABELED_POOL_SIZE']}")
    require(config["QUERY_SET_SIZE"] >= 2, f"QUERY_SET_SIZE must be at least 2, got {config['QUERY_SET_SIZE']}")
    require(config["K"] <= config["UNLABELED_POOL_SIZE"],
            f"K={config['K']} is larger than UNLABELED_POOL_SIZE={config['UNLABELED_POOL_SIZE']} "
            "(the random baseline picks K distinct X-rays)")
    for name in ("UNLABELED_POS_FRAC", "QUERY_POS_FRAC"):
        require(0.0 <= config[name] <= 1.0, f"{name} must be between 0 and 1, got {config[name]}")
    query_positives = math.ceil(config["QUERY_SET_SIZE"] * config["QUERY_POS_FRAC"])
    require(0 < query_positives < config["QUERY_SET_SIZE"],
            f"QUERY_SET_SIZE={config['QUERY_SET_SIZE']} with QUERY_POS_FRAC={config['QUERY_POS_FRAC']} gives "
            f"{query_positives} positive(s) in the query set; it must hold both classes for its AUROC to exist")
    for name in ("NUM_META_TRAIN_TASKS", "NUM_META_TEST_TASKS", "NUM_EPOCHS", "BATCH_SIZE"):
        require(config[name] >= 1, f"{name} must be at least 1, got {config[name]}")
    require(config["LEARNING_RATE"] > 0, f"LEARNING_RATE must be positive, got {config['LEARNING_RATE']}")
    for name in ("HOLD_OUT", "NON_HOLD_OUT", "ALL_COND"):
        require(len(config[name]) > 0, f"{name} must name at least one condition")
