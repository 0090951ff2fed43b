"""The run configuration: the values of ``constants.py`` plus ``--set NAME=VALUE`` overrides.

Overrides use the same names as constants.py, are type-checked against the
default's type, and unknown names are refused with the list of valid ones.
``ALL_COND`` is not a setting: it is always ``NON_HOLD_OUT + HOLD_OUT``, derived
here whenever a configuration is made, so it can never disagree with them.
"""
import ast
import math
import shlex

import constants
from utils.errors import UserError

CONDITION_SETTINGS = ("NON_HOLD_OUT", "HOLD_OUT")  # the settings that name condition columns
DERIVED = "ALL_COND"  # NON_HOLD_OUT + HOLD_OUT, never set on its own
# BEST_CHECKPOINT_BY: the selection mode whose meta-val AUROC picks the best checkpoint -> its metrics.csv column.
# The keys are engine.py's SAMPLE and TOPK, written out because utils/ imports nothing above it
# (tests/test_run_selector.py checks that they stay engine's modes of run_selector.VALIDATION_MODES).
BEST_CHECKPOINT_COLUMNS = {"sample": "val_auroc", "topk": "val_topk_auroc"}
# The choices of the selector options, written out for the same reason (tests/test_selector_options.py checks
# them against models/selector.py's and engine.py's names).
SELECTOR_CHOICES = ("lstm", "attention")
POLICY_CHOICES = ("multinomial", "distinct")
REWARD_BASELINE_CHOICES = ("random", "leave-one-out")


def default_config():
    """Every upper-case value of constants.py, as a plain dict (lists copied)."""
    config = {name: (list(value) if isinstance(value, list) else value)
              for name, value in vars(constants).items() if name.isupper()}
    return with_all_conditions(config)


def with_all_conditions(config):
    """``config`` with ALL_COND set to NON_HOLD_OUT + HOLD_OUT (a stored ALL_COND is replaced, not trusted)."""
    config[DERIVED] = list(config["NON_HOLD_OUT"]) + list(config["HOLD_OUT"])
    return config


def apply_overrides(config, assignments):
    """Return a copy of ``config`` with each ``NAME=VALUE`` string applied and type-checked."""
    config = dict(config)
    for assignment in assignments or []:
        name, sep, text = assignment.partition("=")
        name = name.strip()
        if not sep:
            raise UserError(f"--set expects NAME=VALUE, got {assignment!r}")
        if name == DERIVED:
            example = shlex.quote(f"NON_HOLD_OUT={text.strip() or 'Pneumonia'}")
            raise UserError(f"--set {DERIVED}: not a setting; it is always NON_HOLD_OUT + HOLD_OUT. Name the "
                            f"conditions with those, e.g. --set {example} --set HOLD_OUT= (HOLD_OUT may be empty)")
        if name not in config:
            valid = sorted(n for n in config if n != DERIVED)
            raise UserError(f"--set: unknown name {name!r}; valid names: {', '.join(valid)}")
        config[name] = _parse_like(name, text.strip(), config[name])
    validate_config(with_all_conditions(config))
    return config


def overridden_names(assignments):
    """The names that ``NAME=VALUE`` strings set (unchecked), e.g. to tell whether conditions were given."""
    return {assignment.partition("=")[0].strip() for assignment in assignments or []}


def _parse_like(name, text, default):
    """Parse ``text`` as a value of the same type as ``default``."""
    if isinstance(default, bool):
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise UserError(f"--set {name}: expected True or False, got {text!r}")
    if isinstance(default, str):  # as written on the command line, or quoted as in constants.py
        return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text
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
    require(config["BEST_CHECKPOINT_BY"] in BEST_CHECKPOINT_COLUMNS,
            f"BEST_CHECKPOINT_BY must be one of {', '.join(BEST_CHECKPOINT_COLUMNS)}, got "
            f"{config['BEST_CHECKPOINT_BY']!r}")
    for name, choices in (("SELECTOR", SELECTOR_CHOICES), ("POLICY", POLICY_CHOICES),
                          ("REWARD_BASELINE", REWARD_BASELINE_CHOICES)):
        require(config[name] in choices, f"{name} must be one of {', '.join(choices)}, got {config[name]!r}")
    require(config["SAMPLES_PER_TASK"] >= 1, f"SAMPLES_PER_TASK must be at least 1, got {config['SAMPLES_PER_TASK']}")
    require(config["REWARD_BASELINE"] != "leave-one-out" or config["SAMPLES_PER_TASK"] >= 2,
            "REWARD_BASELINE=leave-one-out needs SAMPLES_PER_TASK of at least 2 (the baseline of a draw is the mean "
            "reward of the task's other draws)")
    require(config["LEARNING_RATE"] > 0, f"LEARNING_RATE must be positive, got {config['LEARNING_RATE']}")
    # HOLD_OUT may be empty: a dataset with one condition has nothing to hold out.
    require(len(config["NON_HOLD_OUT"]) > 0, "NON_HOLD_OUT must name at least one condition (the conditions of "
                                             "meta-training)")
    for name in CONDITION_SETTINGS:
        for i, condition in enumerate(config[name]):
            require(condition not in config[name][:i], f"{name} names {condition!r} twice")
    for condition in config["HOLD_OUT"]:
        require(condition not in config["NON_HOLD_OUT"],
                f"{condition!r} is in both NON_HOLD_OUT and HOLD_OUT; a held-out condition must not be seen in "
                "meta-training, or its 'unseen' result means nothing")
