"""Training curves and evaluation charts: the plotted numbers are the ones in the files."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from utils import plots
from utils.errors import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METRICS_COLUMNS = ("epoch", "iter", "step", "train_auroc", "train_baseline_auroc", "train_reward",
                   "val_auroc", "best_val_auroc", "learning_rate", "elapsed_s", "saved")


def write_metrics(folder, rows=4):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"epoch": 1, "iter": np.arange(1, rows + 1) * 30, "step": np.arange(1, rows + 1) * 30,
                          "train_auroc": rng.uniform(0.7, 0.8, rows), "train_baseline_auroc": rng.uniform(0.7, 0.8, rows),
                          "train_reward": rng.normal(0, 0.01, rows), "val_auroc": rng.uniform(0.7, 0.8, rows),
                          "best_val_auroc": 0.8, "learning_rate": 1e-4, "elapsed_s": np.arange(rows) * 10.0,
                          "saved": ["model_epoch1_iter30"] + [""] * (rows - 1)})[list(METRICS_COLUMNS)]
    frame.to_csv(os.path.join(folder, "metrics.csv"), index=False)
    return frame


def run_module(*args):
    return subprocess.run([sys.executable, "-m", "utils.plots", *args], cwd=ROOT, capture_output=True, text=True)


def test_training_curves_plot_the_metrics(tmp_path):
    frame = write_metrics(tmp_path)
    figure = plots.training_curves(plots.read_metrics(str(tmp_path / "metrics.csv")))
    reward_axis, auroc_axis = figure.axes
    np.testing.assert_allclose(reward_axis.lines[0].get_xydata(), frame[["step", "train_reward"]].to_numpy())
    np.testing.assert_allclose(auroc_axis.lines[0].get_xydata(), frame[["step", "val_auroc"]].to_numpy())
    np.testing.assert_allclose(auroc_axis.lines[1].get_xydata(), frame[["step", "train_auroc"]].to_numpy())
    np.testing.assert_allclose(auroc_axis.collections[0].get_offsets(), [[30, frame["val_auroc"][0]]])


def test_training_curves_show_topk_and_random_beside_sample(tmp_path):
    frame = write_metrics(tmp_path)
    rng = np.random.default_rng(1)
    frame["val_random_auroc"] = 0.7
    frame["val_topk_auroc"] = rng.uniform(0.7, 0.9, len(frame))
    frame["val_diff_vs_random"] = frame["val_auroc"] - 0.7
    frame["val_topk_diff_vs_random"] = frame["val_topk_auroc"] - 0.7
    frame["saved"] = ["model_epoch1_iter30", "", "model_epoch1_iter90", ""]
    frame.to_csv(tmp_path / "metrics.csv", index=False)
    (tmp_path / "config.json").write_text('{"config": {"BEST_CHECKPOINT_BY": "topk"}}')
    assert plots.main([str(tmp_path)]) == 0
    figure = plots.training_curves(plots.read_metrics(str(tmp_path / "metrics.csv")),
                                   best_by=plots.read_best_checkpoint_by(str(tmp_path)))
    reward_axis, auroc_axis = figure.axes
    lines = {line.get_label(): line.get_xydata() for axis in figure.axes for line in axis.lines}
    for label, column in (("meta-val AUROC (MedSelect sample)", "val_auroc"),
                          ("meta-val AUROC (MedSelect topk)", "val_topk_auroc"),
                          ("meta-val AUROC (random)", "val_random_auroc"),
                          ("meta-val AUROC − random (MedSelect sample)", "val_diff_vs_random"),
                          ("meta-val AUROC − random (MedSelect topk)", "val_topk_diff_vs_random")):
        np.testing.assert_allclose(lines[label], frame[["step", column]].to_numpy(), err_msg=label)
    # the checkpoints were chosen by the topk AUROC: their stars sit on that line
    np.testing.assert_allclose(auroc_axis.collections[0].get_offsets(),
                               [[30, frame["val_topk_auroc"][0]], [90, frame["val_topk_auroc"][2]]])


def test_command_line_writes_the_png(tmp_path):
    write_metrics(tmp_path)
    result = run_module(str(tmp_path))
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "training_curves.png", "rb") as f:
        assert f.read(8) == PNG_MAGIC
    assert plots.main([str(tmp_path), "--out", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").exists()


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    ("epoch,iter\n1,30\n", "missing column"),
    (",".join(METRICS_COLUMNS) + "\n", "no rows yet"),
])
def test_bad_metrics_file_is_one_line_exit_2(tmp_path, capsys, content, message):
    if content is not None:
        (tmp_path / "metrics.csv").write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(plots.main, [str(tmp_path)])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert message in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "training_curves.png").exists()


def test_bar_chart_heights_and_error_bars_are_the_results():
    rows = [{"group": "seen", "condition": c, "method": m, "mean_auroc": mean, "ci_low": mean - 0.01,
             "ci_high": mean + 0.02}
            for c, base in (("Edema", 0.7), ("overall", 0.75)) for m, mean in (("medselect", base + 0.05),
                                                                              ("random", base))]
    figure = plots.auroc_bar_chart(rows, ["medselect", "random"], "test")
    axis = figure.axes[0]
    heights = [patch.get_height() for patch in axis.patches]
    assert heights == pytest.approx([0.75, 0.8, 0.7, 0.75])  # medselect's bars, then random's
    error_segments = np.concatenate([c.get_segments() for c in axis.collections])  # (bars, 2, 2)
    np.testing.assert_allclose(sorted(s[1][1] - s[0][1] for s in error_segments), [0.03] * 4)


def test_selection_histograms_one_panel_per_quantity(tmp_path):
    rng = np.random.default_rng(0)
    values = {m: {"age": rng.uniform(20, 80, 100), "positive_fraction": rng.uniform(0, 1, 30)}
              for m in ("medselect", "kmedoids")}
    figure = plots.selection_histograms(values, {"age": "age", "positive_fraction": "fraction"},
                                        {"age": 1.5, "positive_fraction": 0.1})
    titled = [a for a in figure.axes if a.get_title()]
    assert [a.get_title().split("\n")[0] for a in titled] == ["age", "positive_fraction"]
    assert "Wasserstein 1.5" in titled[0].get_title()
    plots.save_png(figure, str(tmp_path / "h.png"))
    with open(tmp_path / "h.png", "rb") as f:
        assert f.read(8) == PNG_MAGIC
