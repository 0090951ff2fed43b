"""Meta-train the MedSelect selector with REINFORCE (the paper's Methods: meta-training; docs/training.md).

    python3 run_selector.py --train_pos_csv P --train_norm_csv P --val_pos_csv P --val_norm_csv P --out DIR

Each CSV has its embeddings in the HDF5 file beside it (same name, .hdf5). The run
folder DIR receives config.json, train.log, metrics.csv (one row per
meta-validation), last.pt (to --resume from), the best checkpoints
model_epoch{E}_iter{I} and best.pt (the same file as the best of them by
BEST_CHECKPOINT_BY), and best_sample.pt / best_topk.pt (the best by each
meta-validation mode; every checkpoint records both modes' scores against random
selection, models/validation_record.py). It is locked for the whole run, so a
second run into it is refused.
"""
import argparse
import contextlib
import fnmatch
import glob
import math
import os
import time

import numpy as np
import torch

from data.data_record import check_same_inputs, record_inputs
from data.embedding_origin import check_same_encoder, known_origin
from data.input_checks import check_separate_splits
from data.prefetch import prefetched
from data.tasks import TRAIN_STREAM, VALIDATION_STREAM, FixedTaskSet, TaskSampler, TaskShape, to_task_batch
from data.validation_overlap import crowded_validation_warning
from data.xray_table import load_xray_table
from engine import (SAMPLE, TOPK, NonFiniteLoss, evaluate_random_selection, evaluate_selector, is_validation_step,
                    learning_rate_for_epoch, train_step)
from models.checkpoint import (BEST_CHECKPOINT, LAST_CHECKPOINT, RUN_CONFIG, checkpoint_config, checkpoint_origin,
                               load_checkpoint, save_checkpoint, selector_from_checkpoint)
from models.selector import build_selector
from models.classifier import MeanSimilarityClassifier
from models.validation_record import describe, no_gain_message, validation_record
from utils.atomic import WriteFailed, atomic_link_or_copy, atomic_write_json, atomic_write_text
from utils.config import BEST_CHECKPOINT_COLUMNS, apply_overrides, default_config
from utils.csv_text import csv_text
from utils.device import resolve_device, set_fp32_arithmetic
from utils.errors import UserError, run_cli, sigterm_as_ctrl_c
from utils.help_format import DefaultsHelpFormatter
from utils.logs import ORIGINAL_LINE, setup_logging
from utils.output_location import check_output_location
from utils.progress import progress_bar
from utils.run_lock import FOLDER_LOCK, check_unlocked, lock_folder
from utils.staging import discard, new_staging_folder, publish, remove_stale_staging
from utils.seeding import (RANDOM_BASELINE, SELECTION, VALIDATION_SELECTION, resumed_torch_generator, seed_everything,
                           torch_generator)

LOG_EVERY = 5  # steps between log lines (as the original)
BEST_BY_MODE = {SAMPLE: "best_sample.pt", TOPK: "best_topk.pt"}  # the same file as the best checkpoint of each mode
RUN_FILES = (RUN_CONFIG, "metrics.csv", "train.log", LAST_CHECKPOINT, BEST_CHECKPOINT, *BEST_BY_MODE.values())
ORIGINAL_CHECKPOINTS = "model_epoch*_iter*"  # the original code's names, kept for the best checkpoints
# val_auroc is the selector's in 'sample' mode (the original's meta-val AUROC), val_topk_auroc in 'topk' mode,
# val_random_auroc that of K random X-rays on the same tasks; the differences are per-task means of AUROC - random.
METRICS_COLUMNS = ("epoch", "iter", "step", "train_auroc", "train_baseline_auroc", "train_reward",
                   "val_auroc", "best_val_auroc", "learning_rate", "elapsed_s", "saved", "best_checkpoint",
                   "val_random_auroc", "val_topk_auroc", "val_diff_vs_random", "val_topk_diff_vs_random",
                   "val_diff_ci_low", "val_diff_ci_high", "val_topk_diff_ci_low", "val_topk_diff_ci_high",
                   "best_sample_checkpoint", "best_topk_checkpoint")
# The columns above of each mode's paired 95% interval of AUROC - random, and of its best checkpoint so far.
MODE_COLUMNS = {SAMPLE: ("val_diff_ci_low", "val_diff_ci_high", "best_sample_checkpoint"),
                TOPK: ("val_topk_diff_ci_low", "val_topk_diff_ci_high", "best_topk_checkpoint")}
VALIDATION_MODES = (SAMPLE, TOPK)  # the selection modes of meta-validation, from one BiLSTM pass per batch
DATA_ARGUMENTS = ("train_pos_csv", "train_norm_csv", "val_pos_csv", "val_norm_csv")
CPU_GENERATOR_STATE_BYTES = 5056  # len(torch.Generator().get_state()); a CUDA generator's is 16


def get_args_parser():
    parser = argparse.ArgumentParser(
        description="Meta-train the MedSelect selector (BiLSTM + REINFORCE). Hyperparameters come from "
                    "constants.py; override them for one run with --set NAME=VALUE.",
        formatter_class=DefaultsHelpFormatter)
    data = parser.add_argument_group("data (each CSV needs its embeddings in the .hdf5 file of the same name beside it)")
    data.add_argument("--train_pos_csv", required=True, help="meta-train X-rays positive for at least one condition")
    data.add_argument("--train_norm_csv", required=True, help="meta-train X-rays with No Finding")
    data.add_argument("--val_pos_csv", required=True, help="meta-validation positives")
    data.add_argument("--val_norm_csv", required=True, help="meta-validation normals")
    parser.add_argument("--out", required=True, help="run folder for checkpoints and metrics (created if missing)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="override a value of constants.py for this run, e.g. --set K=10 --set USE_ASL=True "
                             "(repeatable)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of every random choice: tasks, selections, initial weights")
    parser.add_argument("--device", default=None, help="torch device; default: cuda when available, else cpu")
    parser.add_argument("--resume", metavar="CKPT", default=None,
                        help=f"continue an interrupted run from its {LAST_CHECKPOINT}, in the folder that holds it "
                             "(--out must name that folder) and on the same data; the configuration and seed "
                             "stored in it are used")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new run in an --out folder that holds an earlier run; the new run is written "
                             "beside it and replaces it at its first saved checkpoint (a run that fails before "
                             "that leaves the earlier one as it was)")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    with contextlib.ExitStack() as on_exit:  # releases the run folder's lock however the run ends
        return meta_train(args, on_exit)


def meta_train(args, on_exit):
    log = setup_logging()
    resumed = load_checkpoint(args.resume) if args.resume else None
    if resumed is not None:
        if "progress" not in resumed:
            raise UserError(f"{args.resume}: holds weights but no training position; resume from the run's "
                            f"{LAST_CHECKPOINT}")
        if args.overrides:
            raise UserError("--set cannot be combined with --resume: the run continues with the configuration "
                            f"stored in {args.resume}")
        check_resume_folder(args.resume, args.out)
        config, seed = checkpoint_config(resumed), resumed.get("seed", args.seed)
    else:
        config, seed = apply_overrides(default_config(), args.overrides), args.seed
    check_run_folder(args.out, resuming=resumed is not None, overwrite=args.overwrite)
    # every step has the same shapes: let cuDNN pick its fastest LSTM
    device = resolve_device(args.device, benchmark_kernels=True)
    set_fp32_arithmetic(device)  # the cuDNN LSTM in fp32 on a GPU too, not TF32 (docs/training.md)

    # Read and validate all input before anything is written.
    shape = TaskShape.from_config(config)
    conditions = config["NON_HOLD_OUT"]
    train_table = load_xray_table(args.train_pos_csv, args.train_norm_csv, conditions, config["USE_ASL"],
                                  config["HOLD_OUT"])
    val_table = load_xray_table(args.val_pos_csv, args.val_norm_csv, conditions, config["USE_ASL"],
                                config["HOLD_OUT"])
    check_same_encoder(train_table.origin, val_table.origin)
    origin = known_origin(train_table.origin, val_table.origin)
    if resumed is not None:
        check_same_encoder(checkpoint_origin(resumed, args.resume), origin)
    if val_table.embedding_size != train_table.embedding_size:
        raise UserError(f"{args.val_pos_csv}: embeddings have size {val_table.embedding_size}, but the training "
                        f"embeddings have size {train_table.embedding_size}")
    split_notes = check_separate_splits({f"--{n}": getattr(args, n) for n in DATA_ARGUMENTS[:2]},
                                        {f"--{n}": getattr(args, n) for n in DATA_ARGUMENTS[2:]})
    data_record = record_inputs({name: getattr(args, name) for name in DATA_ARGUMENTS})
    data_notes = check_same_inputs(resumed.get("data"), data_record, args.resume) if resumed is not None else []
    train_sampler = TaskSampler(train_table, conditions, shape, seed, TRAIN_STREAM)
    val_tasks = FixedTaskSet(TaskSampler(val_table, conditions, shape, seed, VALIDATION_STREAM),
                             config["NUM_META_TEST_TASKS"])
    seed_everything(seed)
    if resumed is not None:
        selector = selector_from_checkpoint(resumed, train_table.selector_input_size, args.resume)
    else:
        selector = build_selector(config, train_table.selector_input_size, seed)
    lock_note, folder, earlier = prepare_run_folder(args.out, resuming=resumed is not None,
                                                    overwrite=args.overwrite, on_exit=on_exit)
    # A scheduler's SIGTERM stops the run like Ctrl-C: the resume hint is logged and the lock removed.
    on_exit.enter_context(sigterm_as_ctrl_c())

    log = setup_logging(os.path.join(folder, "train.log"))
    for note in filter(None, [lock_note, *data_notes]):
        log.info(note)
    for note in split_notes:
        log.warning("warning: %s", note)
    absent = [c for c in config["HOLD_OUT"] if c not in train_table.columns or c not in val_table.columns]
    if absent:
        log.info("HOLD_OUT condition(s) %s are not columns of %s / %s: fine here, held-out conditions are not "
                 "used in meta-training, but evaluate.py's test CSVs need them for the unseen group",
                 ", ".join(repr(c) for c in absent), args.train_pos_csv, args.val_pos_csv)
    log.info(train_table.describe_labels())
    log.info(val_table.describe_labels())
    crowded = crowded_validation_warning({c: len(val_table.positive_rows[c]) for c in conditions},
                                         val_table.num_normal_rows, shape, args.val_pos_csv)
    if crowded:
        log.warning("WARNING: %s", crowded)
    train_table.to(device)
    val_table.to(device)
    selector.to(device)
    optimizer = torch.optim.Adam(selector.parameters(), lr=config["LEARNING_RATE"])
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer_state_dict"])
    else:
        atomic_write_json({"config": config, "seed": seed, "device": str(device),
                           "data": {k: os.path.abspath(getattr(args, k)) for k in DATA_ARGUMENTS},
                           "embedding_origin": origin.to_dict() if origin else None},
                          os.path.join(folder, RUN_CONFIG))
    log.info("%s on %s: %d train positives / %d normals, %d val tasks, selector input size %d, K=%d; best "
             "checkpoint by meta-val %s AUROC (BEST_CHECKPOINT_BY)", "resuming" if resumed is not None else
             "meta-training", device, train_table.num_positive_csv_rows, train_table.num_normal_rows, len(val_tasks),
             train_table.selector_input_size, config["K"], config["BEST_CHECKPOINT_BY"])

    run = MetaTrainingRun(config, seed, device, folder, selector, optimizer, train_table, train_sampler,
                          val_table, val_tasks, log, embedding_origin=origin.to_dict() if origin else None,
                          data_record=data_record)
    if resumed is not None:
        run.restore(resumed["progress"])
    if folder != args.out:  # --overwrite: the new run replaces the earlier one at its first saved checkpoint
        run.on_first_checkpoint = lambda: publish_run(run, folder, args.out, earlier)
    try:
        best = run.train()
    except KeyboardInterrupt:
        if run.out != args.out:
            log.info("interrupted before the first checkpoint; the earlier run in %s is kept as it was", args.out)
        elif os.path.exists(os.path.join(args.out, LAST_CHECKPOINT)):
            log.info("interrupted; continue from the last validation with the same command plus --resume %s "
                     "(without --set)", os.path.join(args.out, LAST_CHECKPOINT))
        raise
    except WriteFailed as err:  # a full disk: the files written before are whole (utils/atomic.py)
        last = os.path.join(args.out, LAST_CHECKPOINT)
        if run.out != args.out:
            raise UserError(f"{err}; the earlier run in {args.out} is kept as it was") from None
        if os.path.exists(last):
            raise UserError(f"{err}; free space, then continue with the same command plus --resume {last} (without "
                            "--set)") from None
        raise
    except UserError as err:  # e.g. a non-finite loss before the first checkpoint of an --overwrite run
        if run.out != args.out:
            raise UserError(f"{err}; the earlier run in {args.out} is kept as it was") from None
        raise
    log.info("done: best meta-val %s AUROC %.4f in %s (= %s); metrics in %s", config["BEST_CHECKPOINT_BY"],
             best["best_val_auroc"], os.path.join(args.out, BEST_CHECKPOINT), best["best_checkpoint"],
             os.path.join(args.out, "metrics.csv"))
    run.report_verdict()
    return 0


class MetaTrainingRun:
    """The training loop with its position, best score and metrics, so that it can stop and resume."""

    def __init__(self, config, seed, device, out, selector, optimizer, train_table, train_sampler,
                 val_table, val_tasks, log, embedding_origin=None, data_record=None):
        self.config, self.seed, self.device, self.out, self.log = config, seed, device, out, log
        self.embedding_origin = embedding_origin  # stored in every checkpoint: which encoder the selector learnt
        # stored in every checkpoint: in last.pt a resume on other data is refused, from the best ones evaluate.py
        # names the dataset the selector was trained on
        self.data_record = data_record
        self.selector, self.optimizer = selector, optimizer
        self.train_table, self.train_sampler = train_table, train_sampler
        self.val_table, self.val_tasks = val_table, val_tasks
        self.classifier = MeanSimilarityClassifier("cosine")
        self.selection_generator = torch_generator(seed, SELECTION, device)
        self.baseline_generator = torch_generator(seed, RANDOM_BASELINE, device)
        self.steps_per_epoch = math.ceil(config["NUM_META_TRAIN_TASKS"] / config["BATCH_SIZE"])
        # best_val_auroc: the best meta-val AUROC of the BEST_CHECKPOINT_BY mode so far
        # best_by_mode: {mode: {'auroc', 'checkpoint', 'record': its validation record}} of each validation mode
        self.progress = {"epoch": 0, "iter": 0, "step": 0, "best_val_auroc": None, "best_checkpoint": None,
                         "elapsed_s": 0.0, "metrics": [], "val_random_auroc": None, "val_random_aurocs": None,
                         "best_by_mode": {}}
        self._since_log, self._since_validation = [], []
        self.on_first_checkpoint = None  # called once the first checkpoint and last.pt are saved

    def restore(self, progress):
        # a last.pt may predate the random baseline and the best checkpoint of each mode
        self.progress = {"val_random_auroc": None, "val_random_aurocs": None, "best_by_mode": {}, **progress}
        primary = self.config["BEST_CHECKPOINT_BY"]
        if primary not in self.progress["best_by_mode"] and self.progress["best_checkpoint"] is not None:
            self.progress["best_by_mode"][primary] = {"auroc": self.progress["best_val_auroc"],
                                                      "checkpoint": self.progress["best_checkpoint"], "record": None}
        states = progress["selection_generator"], progress["baseline_generator"]
        # A generator's state is of its device type (CPU 5,056 bytes, CUDA 16): one saved on another type
        # cannot be set here, so the draws continue from generators derived from the seed and the step.
        saved_on = progress.get("generator_device") or ("cpu" if len(states[0]) == CPU_GENERATOR_STATE_BYTES
                                                          else "cuda")
        if saved_on == self.device.type:
            self.selection_generator.set_state(states[0])
            self.baseline_generator.set_state(states[1])
            return
        step = progress["step"]
        self.selection_generator = resumed_torch_generator(self.seed, SELECTION, step, self.device)
        self.baseline_generator = resumed_torch_generator(self.seed, RANDOM_BASELINE, step, self.device)
        self.log.info("%s holds the random state of a %s run, and this run is on %s: the selection and baseline "
                      "draws continue from new generators seeded by the seed and step %d, so the run goes on "
                      "but is not identical to one that stayed on %s", LAST_CHECKPOINT, saved_on, self.device.type,
                      step, saved_on)

    def train(self):
        total_steps = self.steps_per_epoch * self.config["NUM_EPOCHS"]
        start_step = self.progress["step"]
        if start_step >= total_steps:
            self.log.info("this run is already complete (%d steps)", total_steps)
            return self.progress
        started = time.time() - self.progress["elapsed_s"]
        epoch, done_in_epoch = divmod(start_step, self.steps_per_epoch)
        # closed however the loop ends, so that nothing printed afterwards lands on the bar's line
        with progress_bar(total=total_steps, initial=start_step, desc="meta-training", unit="step") as bar:
            for epoch in range(epoch, self.config["NUM_EPOCHS"]):
                for group in self.optimizer.param_groups:
                    group["lr"] = learning_rate_for_epoch(self.config["LEARNING_RATE"], epoch)
                iterations = range(done_in_epoch + 1, self.steps_per_epoch + 1)
                for iteration, task_arrays in zip(iterations, prefetched(self._draw_arrays, iterations)):
                    stats = self._step(epoch, iteration, to_task_batch(task_arrays, self.device))
                    self.progress.update(epoch=epoch, iter=iteration, step=self.progress["step"] + 1,
                                         elapsed_s=time.time() - started)
                    bar.set_postfix(auroc=f"{stats['auroc']:.3f}", reward=f"{stats['reward']:+.3f}", refresh=False)
                    bar.update(1)
                    if iteration % LOG_EVERY == 0:
                        self._log_window(epoch, iteration, started)
                    if is_validation_step(iteration, self.progress["step"] == total_steps):
                        if self.progress["step"] == total_steps:
                            bar.close()  # the finished bar once: each line of the last validation would redraw it
                        self._validate_and_save(epoch, iteration)
                done_in_epoch = 0
        self._link_best()  # also for a run resumed from a last.pt made before best.pt existed
        return self.progress

    def _draw_arrays(self, iteration):
        """The tasks of step ``iteration`` of an epoch (every epoch holds the same tasks, as the original)."""
        batch_size, num_tasks = self.config["BATCH_SIZE"], self.config["NUM_META_TRAIN_TASKS"]
        first = (iteration - 1) * batch_size
        return self.train_sampler.draw_arrays(range(first, min(first + batch_size, num_tasks)))

    def _step(self, epoch, iteration, tasks):
        try:
            stats = train_step(self.selector, self.optimizer, self.classifier, self.train_table, tasks,
                               self.config["K"], self.selection_generator, self.baseline_generator,
                               policy=self.config["POLICY"], samples_per_task=self.config["SAMPLES_PER_TASK"],
                               reward_baseline=self.config["REWARD_BASELINE"])
        except NonFiniteLoss as err:
            last = os.path.join(self.out, LAST_CHECKPOINT)
            raise UserError(f"training stopped at epoch {epoch + 1} iter {iteration}: {err}; the last good state is "
                            f"{last if os.path.exists(last) else 'not saved yet'}") from None
        self._since_log.append(stats)
        self._since_validation.append(stats)
        return stats

    def _log_window(self, epoch, iteration, started):
        mean = _means(self._since_log)
        # On stdout, led by the original's line 'epoch %d, iter %d, avg_reward %.3f, time_elapsed %.3f sec'
        # (its avg_reward is the mean query AUROC, not the reward); our fields follow.
        self.log.info("epoch %d, iter %d, avg_reward %.3f, time_elapsed %.3f sec | random-baseline AUROC %.4f, "
                      "reward %+.4f", epoch + 1, iteration, mean["auroc"], time.time() - started,
                      mean["baseline_auroc"], mean["reward"], extra=ORIGINAL_LINE)
        self._since_log = []

    def _validate_and_save(self, epoch, iteration):
        generator = torch_generator(self.seed, VALIDATION_SELECTION, self.device)
        aurocs = evaluate_selector(self.selector, self.classifier, self.val_table, self.val_tasks, self.config["K"],
                                   self.config["BATCH_SIZE"], generator, modes=VALIDATION_MODES)
        sample_auroc, topk_auroc = float(aurocs[SAMPLE].mean()), float(aurocs[TOPK].mean())
        random_auroc = self._random_baseline_auroc()
        # both modes against the same random draws, paired per task: stored in every checkpoint saved here
        record = validation_record({mode: aurocs[mode] for mode in VALIDATION_MODES},
                                   self.progress["val_random_aurocs"], self.seed)
        scores = {"val_auroc": sample_auroc, "val_random_auroc": random_auroc, "val_topk_auroc": topk_auroc,
                  "val_diff_vs_random": sample_auroc - random_auroc,
                  "val_topk_diff_vs_random": topk_auroc - random_auroc}
        for mode, (low, high, _) in MODE_COLUMNS.items():
            scores.update({low: record["modes"][mode]["diff_ci_low"], high: record["modes"][mode]["diff_ci_high"]})
        score = scores[BEST_CHECKPOINT_COLUMNS[self.config["BEST_CHECKPOINT_BY"]]]
        progress = self.progress
        best_by_mode = progress["best_by_mode"]
        improved = [mode for mode in VALIDATION_MODES if mode not in best_by_mode
                    or record["modes"][mode]["auroc"] > best_by_mode[mode]["auroc"]]
        # On stdout, led by the original's lines 'Meta-val average AUROC: %.4f' and 'saving new best network!'.
        self.log.info("Meta-val average AUROC: %.4f | %d tasks; topk %.4f, random %.4f; minus random: sample %+.4f, "
                      "topk %+.4f", sample_auroc, len(self.val_tasks), topk_auroc, random_auroc,
                      scores["val_diff_vs_random"], scores["val_topk_diff_vs_random"], extra=ORIGINAL_LINE)
        saved = ""  # as the original: the checkpoint saved because the BEST_CHECKPOINT_BY mode improved
        name = f"model_epoch{epoch + 1}_iter{iteration}"
        primary_improved = progress["best_val_auroc"] is None or score > progress["best_val_auroc"]
        if primary_improved or improved:
            if primary_improved:
                saved = name
                self.log.info("saving new best network! | %s", os.path.join(self.out, saved), extra=ORIGINAL_LINE)
            others = [mode for mode in improved if mode != self.config["BEST_CHECKPOINT_BY"]]
            if others:
                self.log.info("new best meta-val %s AUROC: %s", " and ".join(others), os.path.join(self.out, name))
            save_checkpoint(os.path.join(self.out, name), self.selector, self.optimizer, epoch + 1, self.config,
                            seed=self.seed, val_auroc=sample_auroc, val_topk_auroc=topk_auroc,
                            val_random_auroc=random_auroc, step=progress["step"],
                            embedding_origin=self.embedding_origin, data=self.data_record, validation=record)
            if primary_improved:
                progress.update(best_val_auroc=score, best_checkpoint=saved)
            for mode in improved:
                best_by_mode[mode] = {"auroc": record["modes"][mode]["auroc"], "checkpoint": name,
                                      "record": record["modes"][mode]}
            self._link_best()
        scores.update({MODE_COLUMNS[mode][2]: best_by_mode[mode]["checkpoint"] for mode in best_by_mode})
        train = _means(self._since_validation)
        self._since_validation = []
        progress["metrics"].append({
            "epoch": epoch + 1, "iter": iteration, "step": progress["step"], "train_auroc": train["auroc"],
            "train_baseline_auroc": train["baseline_auroc"], "train_reward": train["reward"],
            "best_val_auroc": progress["best_val_auroc"], "learning_rate": self.optimizer.param_groups[0]["lr"],
            "elapsed_s": progress["elapsed_s"], "saved": saved, "best_checkpoint": progress["best_checkpoint"],
            **scores})
        self._write_metrics()
        progress["selection_generator"] = self.selection_generator.get_state()
        progress["baseline_generator"] = self.baseline_generator.get_state()
        progress["generator_device"] = self.device.type  # which device's generators the two states belong to
        save_checkpoint(os.path.join(self.out, LAST_CHECKPOINT), self.selector, self.optimizer, epoch + 1,
                        self.config, seed=self.seed, progress=progress, embedding_origin=self.embedding_origin,
                        data=self.data_record)
        if self.on_first_checkpoint is not None:
            self.on_first_checkpoint()
            self.on_first_checkpoint = None

    def _random_baseline_auroc(self):
        """Mean meta-val AUROC of K X-rays drawn uniformly at random per task (evaluate.py's 'random').

        The tasks and the draws are fixed, so it is computed at the run's first validation only and kept in
        last.pt with the per-task values (progress 'val_random_aurocs', for the paired intervals): a resumed
        run reports the same number, even on another device.
        """
        if self.progress["val_random_aurocs"] is None:  # also for a last.pt that kept the mean only
            aurocs = evaluate_random_selection(self.classifier, self.val_table, self.val_tasks, self.config["K"],
                                               self.config["BATCH_SIZE"], self.seed)
            self.progress["val_random_aurocs"] = aurocs.tolist()
        if self.progress["val_random_auroc"] is None:
            self.progress["val_random_auroc"] = float(np.mean(self.progress["val_random_aurocs"]))
            self.log.info("meta-val random-selection AUROC %.4f: K random X-rays per task, the same draws for every "
                          "validation of this run", self.progress["val_random_auroc"])
        return self.progress["val_random_auroc"]

    def _link_best(self):
        """best.pt: the same file as the best model_epoch{E}_iter{I}, so nobody has to search for it."""
        if self.progress["best_checkpoint"] is not None:
            atomic_link_or_copy(os.path.join(self.out, self.progress["best_checkpoint"]),
                                os.path.join(self.out, BEST_CHECKPOINT))
        for mode, best in self.progress["best_by_mode"].items():
            atomic_link_or_copy(os.path.join(self.out, best["checkpoint"]), os.path.join(self.out, BEST_BY_MODE[mode]))

    def verdict(self):
        """The plain statement that the selector learned nothing usable (neither mode's best checkpoint beat
        random beyond its paired 95% interval), or None when one did (or nothing was validated)."""
        records = {mode: best["record"] for mode, best in self.progress["best_by_mode"].items()
                   if best.get("record") is not None}
        return no_gain_message(records, len(self.val_tasks))

    def report_verdict(self):
        """Log where each mode's best checkpoint is, and whether the selector beat random selection at all."""
        best_by_mode = self.progress["best_by_mode"]
        if not best_by_mode:
            return
        self.log.info("best checkpoint of each meta-validation mode: %s", "; ".join(
            f"{os.path.join(self.out, BEST_BY_MODE[mode])} = {best['checkpoint']}"
            + (f" (AUROC minus random {describe(mode, best['record'])})" if best.get("record") else "")
            for mode, best in best_by_mode.items()))
        message = self.verdict()
        if message:
            self.log.warning("WARNING: %s", message)

    def _write_metrics(self):
        atomic_write_text(csv_text(self.progress["metrics"], METRICS_COLUMNS), os.path.join(self.out, "metrics.csv"))


def _means(stats):
    return {key: sum(s[key] for s in stats) / len(stats) for key in stats[0]}


def check_resume_folder(resume, out):
    """--resume continues the run where its last.pt is: refuse an --out that names another folder."""
    folder = os.path.dirname(resume) or "."
    if not (os.path.isdir(out) and os.path.samefile(out, folder)):
        raise UserError(f"--out {out}: --resume {resume} continues the run in the folder that holds it; "
                        f"pass --out {folder}")


def check_run_folder(out, resuming, overwrite):
    """Refuse, before any work, an --out that cannot be written, is in use, or holds another run. Reads only.

    Unlike the other commands' outputs (utils/output_location.refuse_replacing), a run folder may be
    continued with --resume, so its refusal names that option (or the original's checkpoint folder).
    """
    check_output_location(out, "--out", folder=True)
    check_unlocked(os.path.join(out, FOLDER_LOCK), f"--out {out}")
    _refuse_mixing(out, _earlier_run_files(out), resuming, overwrite)


def prepare_run_folder(out, resuming, overwrite, on_exit):
    """Create --out and lock it until ``on_exit`` closes. With --overwrite over an earlier run, the new run goes
    to a staging folder inside --out (utils/staging.py) until its first checkpoint (``publish_run``).

    Returns (the lock's note about a stale lock it took over or None, the folder to write the run to, the
    earlier run's file names that the new run replaces).
    """
    note = lock_folder(out, f"--out {out}", on_exit)
    remove_stale_staging(out)  # of a run killed before its first checkpoint
    earlier = _earlier_run_files(out)
    _refuse_mixing(out, earlier, resuming, overwrite)  # again under the lock: a run may have ended here meanwhile
    if resuming or not earlier:
        return note, out, []
    staging = new_staging_folder(out)
    on_exit.callback(discard, staging)  # before the lock's release; nothing left once published
    return note, staging, earlier


def publish_run(run, staging, out, earlier):
    """The new run has its first checkpoint: its files replace the earlier run's in ``out``, and it goes on there
    (train.log keeps being written: a rename keeps the open file)."""
    publish(staging, out, earlier)
    run.out = out
    run.log.info("the new run replaced the earlier one in %s (--overwrite)", out)


def _earlier_run_files(out):
    earlier = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
    return earlier + sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, ORIGINAL_CHECKPOINTS)))


def _refuse_mixing(out, earlier, resuming, overwrite):
    """A new run never writes among another run's files unless --overwrite lets it remove them."""
    if not earlier or resuming or overwrite:
        return
    shown = ", ".join(earlier[:3]) + (", ..." if len(earlier) > 3 else "")
    if all(fnmatch.fnmatch(name, ORIGINAL_CHECKPOINTS) for name in earlier):  # the original code's run folder
        raise UserError(f"--out {out}: holds checkpoints ({shown}) but no config.json, as the original code leaves "
                        "them; a new run is not mixed into them: choose a fresh folder, or pass --overwrite to "
                        "delete them")
    resume = f"continue it with --resume {os.path.join(out, LAST_CHECKPOINT)}, " if LAST_CHECKPOINT in earlier else ""
    raise UserError(f"--out {out}: already holds a run ({shown}); {resume or 'choose a fresh folder, '}or pass "
                    "--overwrite to replace it")


if __name__ == "__main__":
    run_cli(main)
