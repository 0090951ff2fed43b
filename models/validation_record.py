"""What a checkpoint records of its meta-validation, and what is read from it (docs/training.md#both-modes).

run_selector.py validates the selector in both selection modes on the same tasks, beside K random
X-rays, and stores in every checkpoint it saves (key ``validation``)::

    {"num_tasks": N, "random_auroc": mean AUROC of K random X-rays,
     "modes": {"sample" | "topk": {"auroc", "diff_vs_random", "diff_ci_low", "diff_ci_high"}}}

where diff_vs_random is the mean over tasks of AUROC - random and the interval its paired 95 %
bootstrap interval. From it select_xrays.py takes the mode that validated better when no
--selection is given, and says when the selector beat random in neither mode. Checkpoints saved
before the record hold only ``val_auroc``, ``val_topk_auroc`` and ``val_random_auroc`` (enough
for the mode, not for the interval); the original's hold none of these.
"""
from utils.stats import paired_difference

VALIDATION_KEY = "validation"
MODES = ("sample", "topk")  # engine.py's SAMPLE and TOPK, the modes of meta-validation (first wins a tie)
# the older flat keys of our checkpoints: mode -> its meta-val AUROC key; and the random selection's
MODE_AUROC_KEYS = {"sample": "val_auroc", "topk": "val_topk_auroc"}
RANDOM_AUROC_KEY = "val_random_auroc"
CI_RESAMPLES = 2000  # bootstrap resamples of the paired interval, at every validation


def validation_record(aurocs_by_mode, random_aurocs, seed, num_resamples=CI_RESAMPLES):
    """The record of one meta-validation from per-task AUROCs: {mode: (N,)} and the random selection's (N,)."""
    modes = {}
    for mode, aurocs in aurocs_by_mode.items():
        paired = paired_difference(aurocs, random_aurocs, num_resamples, seed)
        modes[mode] = {"auroc": float(sum(aurocs) / len(aurocs)), "diff_vs_random": paired["diff"],
                       "diff_ci_low": paired["diff_ci_low"], "diff_ci_high": paired["diff_ci_high"]}
    return {"num_tasks": len(random_aurocs), "random_auroc": float(sum(random_aurocs) / len(random_aurocs)),
            "modes": modes}


def mode_differences(checkpoint):
    """{mode: meta-val AUROC - random} recorded in ``checkpoint``, or None if it does not record both modes."""
    record = checkpoint.get(VALIDATION_KEY)
    if isinstance(record, dict) and all(m in record.get("modes", {}) for m in MODES):
        return {m: record["modes"][m]["diff_vs_random"] for m in MODES}
    if all(checkpoint.get(key) is not None for key in (*MODE_AUROC_KEYS.values(), RANDOM_AUROC_KEY)):
        return {m: checkpoint[key] - checkpoint[RANDOM_AUROC_KEY] for m, key in MODE_AUROC_KEYS.items()}
    return None


def preferred_mode(checkpoint):
    """(mode, why): the mode whose meta-val AUROC minus random was higher for this checkpoint, and a sentence
    saying so; (None, why) when the checkpoint does not record both modes (the original's)."""
    differences = mode_differences(checkpoint)
    if differences is None:
        return None, "the checkpoint records no meta-validation of both selection modes"
    mode = max(MODES, key=lambda m: differences[m])  # a tie keeps 'sample', the policy training optimises
    other = next(m for m in MODES if m != mode)
    return mode, (f"it validated better for this checkpoint: meta-val AUROC minus random {differences[mode]:+.4f} "
                  f"in {mode} vs {differences[other]:+.4f} in {other}")


def beats_random(mode_record):
    """True when a mode's paired 95 % interval of AUROC - random lies above 0."""
    return mode_record["diff_ci_low"] > 0


def describe(mode, mode_record):
    return (f"{mode} {mode_record['diff_vs_random']:+.4f} [{mode_record['diff_ci_low']:+.4f}, "
            f"{mode_record['diff_ci_high']:+.4f}]")


def no_gain_message(records, num_tasks):
    """The plain statement that the selector learned nothing usable, given {mode: that mode's record} (of the
    checkpoint kept for it); None when some mode beat random beyond its paired 95 % interval."""
    if not records or any(beats_random(r) for r in records.values()):
        return None
    return (f"the selector did not beat random selection on its {num_tasks} meta-validation tasks in either mode "
            f"(AUROC minus random, paired 95% CI: {'; '.join(describe(m, r) for m, r in records.items())}): it "
            "learned nothing usable on this data. Which label-free baseline to use instead (select_xrays.py "
            "--method) is what evaluate.py measures")


def checkpoint_no_gain_message(checkpoint):
    """no_gain_message for the record of one checkpoint (both its modes); None without a record."""
    record = checkpoint.get(VALIDATION_KEY)
    if not isinstance(record, dict) or not record.get("modes"):
        return None
    return no_gain_message(record["modes"], record.get("num_tasks"))
