"""Meta-test: MedSelect against baseline selections on the same tasks (the paper's Experiments; docs/evaluation.md).

    python3 evaluate.py --checkpoint CKPT --test_pos_csv P --test_norm_csv P --out DIR

Every method selects K X-rays from the pools of the same deterministic meta-test tasks
(same pools, same query sets); the cosine classifier built from each selection is scored by
its query AUROC. Conditions seen in meta-training (NON_HOLD_OUT) and held out (HOLD_OUT) form
separate groups of tasks. DIR receives results.md / .csv / .json (mean AUROC with a 95%
bootstrap CI per method x condition and group, and each MedSelect variant's paired difference to
every other method), per_task.csv, auroc_by_condition.png and, with --analysis,
selection_analysis.csv/.png. Two reference rows (kind 'reference', not methods to run) come with
every evaluation: all-pool-labels and best-of-random, the headroom they give and each method's share
of it, and each method's fraction of positives among the selected X-rays (evaluation/references.py).
Nothing is written until everything is computed; DIR is locked
meanwhile, so a second evaluation into it is refused.

MedSelect is evaluated as separate methods, because its selection mode changes the result:
medselect-sample (K multinomial draws, as in training), medselect-topk (the K highest logits),
medselect (the mode of --selection) and, when asked, medselect-sample-distinct (K distinct
draws: select_xrays.py's 'sample') and medselect-untrained (the same architecture with the
initial weights of the training run's seed: what training bought; in each selection mode of the
trained variants beside it, e.g. medselect-untrained-topk).

Another dataset: the test CSVs may come from another dataset than the selector's training data;
--condition_map renames the checkpoint's conditions to the test CSV's columns (each keeps its
group), and --conditions may name test columns the checkpoint does not know (unseen). The results
name the dataset the selector was trained on (recorded in the checkpoint) and the one it is tested on.

Classifiers: --classifiers cosine,logistic,label-spreading,self-training scores every selection with each
(models/classifiers.py) on the same tasks; results.md gets one section per classifier and each one's paired
difference to cosine (also classifier_differences.csv). The default is the paper's cosine classifier alone.

Curves: --k 5,10,20,50 or --pos_frac 0.5,0.2,0.1 evaluate every method at each value on the same
tasks (evaluation/curves.py) and write one table with the value as its first column and budget_curve.png or
prevalence_curve.png in place of auroc_by_condition.png.
"""
import argparse
import contextlib
import os


from data.conditions import NOT_CONDITIONS, evaluation_suggestion, parse_condition_map, rename_conditions
from data.csv_hdf5 import read_csv
from data.embedding_origin import check_same_encoder
from data.provenance import dataset_of, found_moved, is_transfer, provenance_line, training_dataset
from data.xray_table import load_xray_table
from engine import SAMPLE, SELECTION_MODES
from evaluation import curves
from evaluation.classifier_comparison import (CLASSIFIER_FILES, DIFFERENCE_COLUMNS, classifier_results,
                                              one_class_lines, parse_classifiers)
from evaluation.meta_test import (ALL_GROUPS, GROUPS, MEDSELECT_MODES, METHODS, OVERALL, RESULT_COLUMNS,
                                  UNTRAINED_VARIANTS, Evaluation, analyse_selections, evaluate_methods, load_selectors,
                                  meta_test_tasks, selection_mode, summarize, with_untrained_modes)
from evaluation.references import REFERENCES, evaluate_references, with_references
from evaluation.report import markdown_report, per_task_csv
from evaluation.selection_analysis import QUANTITIES, read_demographics
from models.baselines import BASELINE_METHODS
from models.checkpoint import (TRAINING_DATA, TRAINING_POSITIVES, checkpoint_config, checkpoint_in,
                               checkpoint_origin, checkpoint_seed, checkpoint_training_csv, load_checkpoint)
from models.classifiers import CLASSIFIERS, COSINE
from models.encoders.trained_labels import leakage_warning, unknown_labels_note
from utils import plots
from utils.atomic import atomic_write_json, atomic_write_text
from utils.config import apply_overrides, default_config
from utils.csv_text import csv_text
from utils.device import resolve_device, set_fp32_arithmetic
from utils.errors import UserError, run_cli
from utils.help_format import DefaultsHelpFormatter
from utils.logs import setup_logging
from utils.name_lists import parse_names
from utils.output_location import check_output_location, refuse_replacing
from utils.staging import remove_stale_staging, staged_result
from utils.run_lock import FOLDER_LOCK, check_unlocked, lock_folder
from utils.seeding import EVALUATION_BOOTSTRAP, derived_seed
from utils.stats import CONFIDENCE

DEFAULT_METHODS = ("medselect-sample", "medselect-topk") + BASELINE_METHODS
ANALYSED_BASELINE = "kmedoids"  # the paper compares what MedSelect selects with what its k-medoids selects
RESULT_FILES = ("results.md", "results.csv", "results.json", "per_task.csv", "auroc_by_condition.png",
                "selection_analysis.csv", "selection_analysis.png", *CLASSIFIER_FILES, *curves.CURVE_FILES)


def get_args_parser():
    parser = argparse.ArgumentParser(
        description="Compare MedSelect with baseline selections on identical meta-test tasks, for conditions "
                    "seen in meta-training and held out. Task shape and K come from the checkpoint's stored "
                    "configuration (constants.py defaults for the original's checkpoints) unless --set.",
        formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--checkpoint", default=None,
                        help="selector checkpoint of run_selector.py (or the original code), or a run folder "
                             "(its best.pt); required with the medselect methods")
    parser.add_argument("--test_pos_csv", required=True,
                        help="meta-test positives (embeddings in the .hdf5 of the same name beside it)")
    parser.add_argument("--test_norm_csv", required=True, help="meta-test normals")
    parser.add_argument("--out", required=True, help="folder for the results (created if missing)")
    parser.add_argument("--conditions", default="all",
                        help="'seen' (NON_HOLD_OUT), 'unseen' (HOLD_OUT), 'all' (both), or a comma-separated "
                             "list of condition names: the checkpoint's, or other condition columns of the test CSV "
                             "(evaluated as unseen)")
    parser.add_argument("--condition_map", action="append", default=[], metavar="OLD=NEW,...",
                        help="evaluate a selector on a dataset whose columns are named differently: each condition "
                             "OLD of the checkpoint (NON_HOLD_OUT / HOLD_OUT) is the test CSV's column NEW and keeps "
                             "its group, e.g. 'Infiltration=Lung Opacity' (repeatable; default: no renaming)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated methods to compare, from: {', '.join(METHODS)}")
    parser.add_argument("--classifiers", default=COSINE, metavar="NAME,...",
                        help=f"score every selection with each of these classifiers (comma-separated, from: "
                             f"{', '.join(CLASSIFIERS)}; docs/evaluation.md#classifiers) on the same tasks: one table "
                             "per classifier and each one's paired difference to cosine, which is always included")
    parser.add_argument("--selection", choices=SELECTION_MODES, default=SAMPLE,
                        help="selection of the methods 'medselect' and 'medselect-untrained': K multinomial draws "
                             "from softmax(logits), seeded (the original's behaviour), the K highest logits, or K "
                             "distinct draws (select_xrays.py's 'sample')")
    parser.add_argument("--num_tasks", type=int, default=None,
                        help="tasks per condition group; default: NUM_META_TEST_TASKS")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the tasks, selections and bootstrap; also of medselect-untrained's initial "
                             "weights when the checkpoint does not record its run's seed (the original's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="override a value of the checkpoint's configuration, e.g. --set K=10, or --set "
                             "USE_ASL=True for a checkpoint of the original code trained with Age/Sex/Laterality "
                             "(its checkpoints record no configuration) (repeatable)")
    parser.add_argument("--k", default=None, metavar="K,K,...",
                        help="budget curve: evaluate at each of these K (comma-separated, e.g. 5,10,20,50) on the same "
                             "tasks, and draw budget_curve.png; default: the configuration's K only")
    parser.add_argument("--pos_frac", default=None, metavar="F,F,...",
                        help="prevalence curve: evaluate with each of these fractions of positives in the pool "
                             "(comma-separated, e.g. 0.5,0.2,0.1; the query set keeps QUERY_POS_FRAC), and draw "
                             "prevalence_curve.png; default: the configuration's UNLABELED_POS_FRAC only")
    parser.add_argument("--batch_size", type=int, default=None, help="tasks per batch; default: BATCH_SIZE")
    # Resamples of tasks; classify_xrays.py's bootstrap of X-rays defaults to 1000 (medselect/classification.py).
    parser.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples for the 95%% CIs")
    parser.add_argument("--analysis", action="store_true",
                        help="also compare what the first trained MedSelect variant of --methods and kmedoids "
                             "select (distances among the selected embeddings, fraction positive, age, sex, view)")
    parser.add_argument("--device", default=None, help="torch device; default: cuda when available, else cpu")
    parser.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    args.checkpoint = checkpoint_in(args.checkpoint)  # a run folder means its best.pt
    with contextlib.ExitStack() as on_exit:  # releases the --out folder's lock however the evaluation ends
        return compare_methods(args, on_exit)


def compare_methods(args, on_exit):
    log = setup_logging()
    methods = with_untrained_modes(parse_methods(args.methods), args.selection)
    sweep = curves.parse_sweep(args.k, args.pos_frac)
    if sweep is not None and args.analysis:
        raise UserError(f"--analysis compares the selections of one evaluation; run it without --{sweep.parameter}")
    analysed = analysed_methods(methods) if args.analysis else ()
    classifiers = parse_classifiers(args.classifiers)
    if sweep is not None and len(classifiers) > 1:
        raise UserError(f"--classifiers compares classifiers at one K and prevalence; run it without --{sweep.parameter}")
    variants = [m for m in methods if m in MEDSELECT_MODES]
    if variants and args.checkpoint is None:
        raise UserError(f"--checkpoint is required to evaluate {', '.join(variants)} (or leave "
                        f"{'it' if len(variants) == 1 else 'them'} out of --methods)")
    for name, value, least in (("--num_tasks", args.num_tasks, 1), ("--batch_size", args.batch_size, 1),
                               ("--bootstrap", args.bootstrap, 1)):
        if value is not None and value < least:
            raise UserError(f"{name} must be at least {least}, got {value}")
    checkpoint = load_checkpoint(args.checkpoint) if args.checkpoint else None
    config = apply_overrides(checkpoint_config(checkpoint) if checkpoint else default_config(), args.overrides)
    test_columns = read_csv(args.test_pos_csv, header_only=True).columns
    condition_map = parse_condition_map(args.condition_map)
    config = rename_conditions(config, condition_map, test_columns, args.test_pos_csv)
    groups, absent = parse_conditions(args.conditions, config, test_columns, args.test_pos_csv, condition_map)
    points = curves.sweep_points(sweep, config)  # [(value, its configuration)]; one point without a sweep
    check_output_folder(args.out, args.overwrite)
    device = resolve_device(args.device, benchmark_kernels=True)  # the BiLSTM runs the same shapes each task
    set_fp32_arithmetic(device)  # the BiLSTM and the classifier in fp32 on a GPU too, as in training

    # Read and validate every input before the long part.
    conditions = [c for group in groups.values() for c in group]
    table = load_xray_table(args.test_pos_csv, args.test_norm_csv, conditions, config["USE_ASL"], config["HOLD_OUT"])
    if checkpoint is not None:
        check_same_encoder(checkpoint_origin(checkpoint, args.checkpoint), table.origin)
    # Held-out conditions whose labels trained the encoder make the 'unseen' results meaningless.
    leakage = leakage_warning(table.origin, groups.get("unseen", []))
    unknown = unknown_labels_note(table.origin, groups.get("unseen", []))
    if leakage:
        log.warning("WARNING: %s", leakage)
    if unknown:
        log.info(unknown)
    selectors = load_selectors(checkpoint, args.checkpoint, variants, table.selector_input_size, args.seed, log)
    selectors = {m: selector.to(device).eval() for m, selector in selectors.items()}
    num_tasks = args.num_tasks or config["NUM_META_TEST_TASKS"]
    points_by_shape = curves.by_task_shape(points)  # the points that share their tasks: they differ in K only
    if checkpoint is None:
        log.info("no --checkpoint: the task size is constants.py's: %s", TASK_SIZE_SETTINGS.format(**config))
    try:
        task_sets = {shape: meta_test_tasks(table, groups, shape, args.seed, num_tasks) for shape in points_by_shape}
    except UserError as err:
        if checkpoint is not None:
            raise
        raise UserError(f"{err}; without --checkpoint the task size is constants.py's "
                        f"({TASK_SIZE_SETTINGS.format(**config)}): set one that fits, e.g. --set "
                        "UNLABELED_POOL_SIZE=... --set QUERY_SET_SIZE=... --set K=...") from None
    demographics = read_demographics(args.test_pos_csv, args.test_norm_csv) if args.analysis else None
    datasets = {"trained_on": training_dataset(checkpoint_training_csv(checkpoint, args.checkpoint),
                                               checkpoint.get("config") is None) if checkpoint else None,
                "tested_on": dataset_of(args.test_pos_csv)}
    if checkpoint:  # a moved or copied project is the same dataset: decided by the recorded content
        datasets["trained_on"] = found_moved(datasets["trained_on"], (checkpoint.get(TRAINING_DATA) or {}).get(
            TRAINING_POSITIVES), datasets["tested_on"])
    if absent:
        log.info("%s has no column for %s: evaluating the conditions it has", args.test_pos_csv,
                 ", ".join(f"{c!r} ({setting})" for c, setting in absent.items()))
    new_conditions = [c for c in groups.get("unseen", []) if c not in config["HOLD_OUT"]]
    if new_conditions:
        log.info("%s: not condition(s) of the checkpoint, evaluated as unseen (never met in meta-training)",
                 ", ".join(repr(c) for c in new_conditions))
    note = lock_output_folder(args.out, args.overwrite, on_exit)
    if note:
        log.info(note)
    table.to(device)
    log.info("meta-test on %s: %s; K=%s, pool %d, query %d, %d tasks per group; methods %s", device,
             ", ".join(f"{g}: {', '.join(c)}" for g, c in groups.items()),
             ",".join(str(k) for k in dict.fromkeys(c["K"] for _, c in points)), config["UNLABELED_POOL_SIZE"],
             config["QUERY_SET_SIZE"], num_tasks, ", ".join(methods))
    renamed = {new: group for group, key in GROUPS.items() for new in config[key] if new in condition_map.values()}
    log.info(provenance_line(args.checkpoint, datasets, condition_map, renamed))

    bootstrap_seed = derived_seed(args.seed, EVALUATION_BOOTSTRAP)
    evaluations = []  # one per point, in their order
    for shape, shape_points in points_by_shape.items():
        description = "meta-test" + (f" {sweep.parameter}={shape_points[0][0]:g}"
                                     if sweep is not None and sweep.parameter != "k" else "")
        outcomes = evaluate_methods(methods, task_sets[shape], table, selectors, [c["K"] for _, c in shape_points],
                                    args.batch_size or config["BATCH_SIZE"], args.selection, args.seed, device,
                                    analysed, description, classifiers)
        # The reference rows (evaluation/references.py) on the same tasks: headroom, not methods to run.
        outcomes = with_references(outcomes, evaluate_references(
            task_sets[shape], table, [c["K"] for _, c in shape_points], args.batch_size or config["BATCH_SIZE"],
            args.seed, device))
        for value, point_config in shape_points:
            outcome = outcomes[point_config["K"]]
            rows = summarize(outcome, task_sets[shape], [*methods, *REFERENCES], args.bootstrap, bootstrap_seed)
            evaluations.append(Evaluation(value, point_config, task_sets[shape], outcome, rows))
    if sweep is None:
        report, files, figures, rows, analysis_rows = one_evaluation_results(
            evaluations[0], methods, num_tasks, args, analysed, demographics, table.embeddings)
        differences = None
        if len(classifiers) > 1:
            report, rows, differences, files["per_task.csv"] = classifier_results(
                evaluations[0], methods, classifiers, num_tasks, args.selection, args.seed, args.bootstrap,
                bootstrap_seed, report)
            files["results.csv"] = csv_text(rows, ("classifier", *RESULT_COLUMNS))
            files[CLASSIFIER_FILES[0]] = csv_text(differences, DIFFERENCE_COLUMNS)
    else:
        report, files, figures, rows = curve_results(sweep, evaluations, methods, num_tasks, groups, args)
        analysis_rows = differences = None
    if is_transfer(datasets, condition_map):
        report = provenance_line(args.checkpoint, datasets, condition_map, renamed) + "\n\n" + report
    if leakage:
        report = f"**WARNING: {leakage}**\n\n{report}"
    files["results.md"] = report
    summary = {
        "note": "mean query AUROC per method on identical meta-test tasks; diff_vs_medselect = reference - method "
                "on the same tasks, reference being a MedSelect variant; "
                f"{int(CONFIDENCE * 100)}% percentile bootstrap CIs over tasks; paired t-test",
        "checkpoint": os.path.abspath(args.checkpoint) if args.checkpoint else None,
        "data": {"test_pos_csv": os.path.abspath(args.test_pos_csv),
                 "test_norm_csv": os.path.abspath(args.test_norm_csv)},
        **datasets, "condition_map": condition_map,
        "config": config, "seed": args.seed, "selection": args.selection, "methods": list(methods),
        "references": list(REFERENCES),
        "selection_modes": {m: selection_mode(m, args.selection) for m in variants},
        "untrained_seed": checkpoint_seed(checkpoint, args.seed) if set(variants) & set(UNTRAINED_VARIANTS) else None,
        "conditions": groups, "num_tasks_per_group": num_tasks, "bootstrap_resamples": args.bootstrap,
        "device": str(device),
        "seconds_per_task": evaluations[0].outcome["seconds_per_task"] if sweep is None else
        {str(e.value): e.outcome["seconds_per_task"] for e in evaluations},
        "curve": {"parameter": sweep.parameter, "setting": sweep.setting, "values": list(sweep.values)}
        if sweep is not None else None,
        "classifiers": classifiers,
        "classifier_seconds_per_task": evaluations[0].outcome["classifier_seconds_per_task"] if sweep is None else
        {str(e.value): e.outcome["classifier_seconds_per_task"] for e in evaluations},
        "one_class_tasks": evaluations[0].outcome["one_class_tasks"] if sweep is None else
        {str(e.value): e.outcome["one_class_tasks"] for e in evaluations},
        "results": rows, "classifier_differences": differences, "selection_analysis": analysis_rows,
        "embedding_origin": table.origin.to_dict() if table.origin else None, "warnings": [leakage] if leakage else []}

    write_results(args.out, files, figures, summary)
    print(report)
    log.info("results in %s", args.out)
    for e in evaluations:  # once per method, over all its tasks, after the tables
        for line in one_class_lines(e.outcome["one_class_tasks"], num_tasks * len(groups),
                                    e.config["K"] if sweep is not None else None):
            log.warning(line)
    if leakage:
        log.warning("WARNING: %s", leakage)  # again after the tables, where it is read
    return 0


def one_evaluation_results(evaluation, methods, num_tasks, args, analysed, demographics, embeddings):
    """(report, files, figures, result rows, selection-analysis rows) of an evaluation at one K and prevalence."""
    config, task_sets, outcome, rows = evaluation.config, evaluation.task_sets, evaluation.outcome, evaluation.rows
    report = markdown_report(rows, methods, outcome["seconds_per_task"], num_tasks, config, args.selection, args.seed)
    figures = {"auroc_by_condition.png": plots.auroc_bar_chart(
        rows, methods, f"query AUROC, K={config['K']}, {num_tasks} tasks per group")}
    files = {"results.csv": csv_text(rows, RESULT_COLUMNS),
             "per_task.csv": per_task_csv([(None, outcome, task_sets)], [*methods, *REFERENCES])}
    analysis_rows = None
    if analysed:
        analysis_rows, plotted, values = analyse_selections(outcome, task_sets, demographics, embeddings, analysed)
        files["selection_analysis.csv"] = csv_text(analysis_rows, list(analysis_rows[0]))
        wasserstein = {r["quantity"]: r["wasserstein"] for r in analysis_rows if r["group"] == plotted}
        figures["selection_analysis.png"] = plots.selection_histograms(
            values, {q: QUANTITIES[q] for q in QUANTITIES if q in wasserstein}, wasserstein)
        report += (f"\nSelection analysis ({' vs. '.join(analysed)}: distances among the selected embeddings, "
                   "fraction positive, age, sex, view; Wasserstein distances): selection_analysis.csv and "
                   f"selection_analysis.png in {args.out}\n")
    return report, files, figures, rows, analysis_rows


def curve_results(sweep, evaluations, methods, num_tasks, groups, args):
    """(report, files, figures, table rows) of a curve: one table with the value as its first column, the
    curve of each group's overall mean AUROC, and each point's full report."""
    rows = curves.table_rows(sweep, [(e.value, e.rows) for e in evaluations])
    overall = [r for r in rows if r["condition"] == OVERALL]
    shown = [g for g in (*groups, ALL_GROUPS) if any(r["group"] == g for r in overall)]
    sections = [f"## {sweep.label(e.value, e.config)}\n\n"
                + markdown_report(e.rows, methods, e.outcome["seconds_per_task"], num_tasks, e.config, args.selection,
                                  args.seed)
                for e in evaluations]
    report = "\n".join([curves.overview_markdown(sweep, overall, methods, shown), *sections])
    panels = {group: {m: curves.curve_points(overall, sweep, group, m) for m in methods} for group in groups}
    figures = {sweep.figure: plots.curve_chart(
        panels, sweep.axis_label, f"mean query AUROC: pool {evaluations[0].config['UNLABELED_POOL_SIZE']}, query "
                                  f"{evaluations[0].config['QUERY_SET_SIZE']}, {num_tasks} tasks per group, seed "
                                  f"{args.seed}",
        log_x=sweep.parameter == "k")}
    files = {"results.csv": csv_text(rows, (sweep.parameter, *RESULT_COLUMNS)),
             "per_task.csv": per_task_csv([(e.value, e.outcome, e.task_sets) for e in evaluations],
                                          [*methods, *REFERENCES], sweep.parameter)}
    return report, files, figures, rows


TASK_SIZE_SETTINGS = "UNLABELED_POOL_SIZE={UNLABELED_POOL_SIZE}, QUERY_SET_SIZE={QUERY_SET_SIZE}, K={K}"


def parse_methods(text):
    return parse_names(text, "--methods", METHODS, "method")


def analysed_methods(methods):
    """(the trained MedSelect variant, k-medoids) whose selections --analysis compares."""
    trained = [m for m in methods if m in MEDSELECT_MODES and m not in UNTRAINED_VARIANTS]
    if not trained or ANALYSED_BASELINE not in methods:
        raise UserError(f"--analysis compares a trained MedSelect variant "
                        f"({', '.join(m for m in MEDSELECT_MODES if m not in UNTRAINED_VARIANTS)}) with "
                        f"{ANALYSED_BASELINE}; "
                        "include both in --methods")
    return trained[0], ANALYSED_BASELINE


def parse_conditions(text, config, columns, csv_path, condition_map=None):
    """--conditions -> ({group: [conditions]}, {absent condition: its setting}).

    'seen' (NON_HOLD_OUT), 'unseen' (HOLD_OUT) and 'all' (both, the default) keep the conditions that
    are columns of the test CSV, and report the others as absent; a group asked for by name that has
    none is an error, as is a condition named explicitly that the CSV lacks. A name that is not a
    condition of the checkpoint but a condition column of the test CSV (another dataset's finding) joins
    the unseen group: the selector never met it in meta-training.
    """
    names = [c.strip() for c in text.split(",") if c.strip()]
    explicit_groups = names != [ALL_GROUPS]
    if names == [ALL_GROUPS]:
        names = list(GROUPS)
    if names and all(n in GROUPS for n in names):
        wanted = {group: list(config[GROUPS[group]]) for group in GROUPS if group in names}
        absent = {c: GROUPS[group] for group, wanted_conditions in wanted.items() for c in wanted_conditions
                  if c not in columns}
        groups = {group: [c for c in wanted_conditions if c in columns] for group, wanted_conditions in wanted.items()}
        for group, kept in groups.items():
            if explicit_groups and not wanted[group]:
                raise UserError(f"--conditions {group}: {GROUPS[group]} is empty in the checkpoint's configuration, "
                                f"so there is no {group} condition to evaluate")
            if explicit_groups and not kept:
                raise UserError(f"--conditions {group}: none of {GROUPS[group]} ({', '.join(wanted[group])}) is a "
                                f"column of {csv_path}; {evaluation_suggestion(read_csv(csv_path))}")
        groups = {group: kept for group, kept in groups.items() if kept}
        if not groups:
            raise UserError(f"{csv_path}: none of the checkpoint's conditions ({', '.join(config['ALL_COND'])}) is "
                            f"a column; {evaluation_suggestion(read_csv(csv_path))}")
        return groups, absent
    group_of = {c: group for group, key in GROUPS.items() for c in config[key]}
    renamed = [n for n in names if n not in group_of and n in (condition_map or {})]
    if renamed:
        raise UserError(f"--conditions: --condition_map renames {renamed[0]!r} to {condition_map[renamed[0]]!r}; name "
                        "the test CSV's column")
    other_columns = [n for n in names if n not in group_of and n in columns and n not in NOT_CONDITIONS]
    unknown = [n for n in names if n not in group_of and n not in other_columns]
    if unknown or not names:
        raise UserError(f"--conditions: unknown condition(s) {', '.join(repr(n) for n in unknown) or '(none)'}; "
                        f"valid: seen, unseen, all, or names from {', '.join(group_of)}, or another condition column "
                        f"of {csv_path} (evaluated as unseen)")
    missing = [n for n in names if n not in columns]
    if missing:
        raise UserError(f"--conditions: {csv_path} has no column for {', '.join(repr(n) for n in missing)}; "
                        f"{evaluation_suggestion(read_csv(csv_path))}")
    group_of.update(dict.fromkeys(other_columns, "unseen"))
    return {group: [n for n in dict.fromkeys(names) if group_of[n] == group]
            for group in GROUPS if any(group_of[n] == group for n in names)}, {}


def check_output_folder(out, overwrite):
    """Refuse an --out that cannot be created, is in use, or holds results (without --overwrite). Reads only."""
    check_output_location(out, "--out", folder=True)
    check_unlocked(os.path.join(out, FOLDER_LOCK), f"--out {out}")
    refuse_replacing(out, "--out", RESULT_FILES, overwrite, "results")


def lock_output_folder(out, overwrite, on_exit):
    """Create --out and lock it until ``on_exit`` closes; a folder created here and left empty is removed then.

    Returns the lock's note about a stale lock it took over, or None.
    """
    if not os.path.exists(out):
        on_exit.callback(_remove_if_empty, out)  # runs after the lock's release, which removes the lock file
    note = lock_folder(out, f"--out {out}", on_exit)
    remove_stale_staging(out)  # of an evaluation killed before its results were whole
    # Again under the lock: another evaluation may have written here meanwhile.
    refuse_replacing(out, "--out", RESULT_FILES, overwrite, "results")
    return note


def _remove_if_empty(folder):
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def write_results(out, files, figures, summary):
    """Write every result file into a staging folder in --out, then move them all into place (utils/staging.py):
    the results of one evaluation appear together or not at all, and earlier results stay until then."""
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        raise UserError(f"--out {out}: cannot create it ({err.strerror})") from None
    with staged_result(out, earlier=RESULT_FILES) as staging:
        for name, text in files.items():
            atomic_write_text(text, os.path.join(staging, name))
        for name, figure in figures.items():
            plots.save_png(figure, os.path.join(staging, name))
        atomic_write_json(summary, os.path.join(staging, "results.json"))


if __name__ == "__main__":
    run_cli(main)
