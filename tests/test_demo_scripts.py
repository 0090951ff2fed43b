"""The demo's stand-ins (scripts/demo_pool.py) and its summary table (scripts/demo_report.py)."""
import numpy as np
import pandas as pd

from scripts import demo_pool, demo_report
from tests.conftest import run_main


def test_pool_is_a_sample_of_the_test_split(tmp_path, capsys):
    pd.DataFrame({"Path": [f"p{i}.jpg" for i in range(6)], "Edema": [1.0] * 6}).to_csv(tmp_path / "test_pos.csv")
    pd.DataFrame({"Path": [f"n{i}.jpg" for i in range(4)]}).to_csv(tmp_path / "test_norm.csv")
    code, _, err = run_main(demo_pool.main, ["pool", "--splits", tmp_path, "--size", 7, "--out", tmp_path / "x.csv"],
                            capsys)
    assert code == 0, err
    pool = pd.read_csv(tmp_path / "x.csv")
    assert len(pool) == 7 and pool["Path"].is_unique
    assert set(pool["Path"]) <= {f"p{i}.jpg" for i in range(6)} | {f"n{i}.jpg" for i in range(4)}
    code, _, err = run_main(demo_pool.main, ["pool", "--splits", tmp_path, "--size", 11, "--out", tmp_path / "y.csv"],
                            capsys)
    assert code == 2 and "has 10 X-rays" in err and not (tmp_path / "y.csv").exists()


def test_label_follows_chexpert_uncertain_counts_as_positive(tmp_path, capsys):
    pd.DataFrame({"Path": list("abcde"), "Edema": [1.0, -1.0, 0.0, np.nan, 1.0], "rank": range(1, 6)}).to_csv(
        tmp_path / "to_label.csv", index=False)
    code, _, err = run_main(demo_pool.main, ["label", "--to_label", tmp_path / "to_label.csv", "--label_column",
                                             "Edema", "--out", tmp_path / "labeled.csv"], capsys)
    assert code == 0, err
    labeled = pd.read_csv(tmp_path / "labeled.csv")
    assert labeled["Edema"].tolist() == [1, 1, 0, 0, 1] and labeled["rank"].tolist() == [1, 2, 3, 4, 5]
    code, _, err = run_main(demo_pool.main, ["label", "--to_label", tmp_path / "to_label.csv", "--label_column",
                                             "Atelectasis", "--out", tmp_path / "other.csv"], capsys)
    assert code == 2 and "no column 'Atelectasis'" in err and not (tmp_path / "other.csv").exists()


def test_summary_table_takes_each_difference_from_its_reference():
    def row(group, method, mean, reference=None, diff=None):
        return {"group": group, "condition": "overall", "method": method, "num_tasks": 10, "mean_auroc": mean,
                "ci_low": mean - 0.01, "ci_high": mean + 0.01, "reference": reference, "diff_vs_medselect": diff,
                "diff_ci_low": None if diff is None else diff - 0.02,
                "diff_ci_high": None if diff is None else diff + 0.02}
    rows = []
    for group, shift in (("seen", 0.0), ("unseen", 0.1)):
        rows += [row(group, "medselect-sample", 0.6 + shift), row(group, "medselect-topk", 0.7 + shift,
                                                                    "medselect-sample", -0.1 + shift),
                 row(group, "random", 0.5 + shift, "medselect-sample", 0.1 + shift),
                 row(group, "random", 0.5 + shift, "medselect-topk", 0.2 + shift)]
    results = pd.DataFrame(rows)
    evaluation = {"config": {"K": 5, "UNLABELED_POOL_SIZE": 20, "QUERY_SET_SIZE": 10},
                  "conditions": {"seen": ["Consolidation"], "unseen": ["Edema"]}}
    lines = demo_report.comparison_table(results, evaluation)
    assert lines[2] == "| method | seen | held out | held out: medselect-sample − method | " \
                       "held out: medselect-topk − method |"
    by_method = {line.split(" | ")[0][2:]: line for line in lines[4:]}
    assert by_method["random"] == ("| random | 0.500 [0.490, 0.510] | 0.600 [0.590, 0.610] | "
                                   "+0.200 [+0.180, +0.220] | +0.300 [+0.280, +0.320] |")
    assert by_method["medselect-topk"].endswith("| +0.000 [-0.020, +0.020] |  |")
