"""run_selector.py's run folder as one run: locked, readable by colleagues, best.pt, progress, and safe resumes."""
import csv
import os
import re
import shutil
import signal
import stat

import h5py
import pandas as pd
import pytest
import torch

import run_selector
from tests.conftest import TINY_SETTINGS, run_main, write_tiny_split
from tests.output_helpers import lock_held_by_other_process, plain_open_mode, stale_lock, umask
from utils.errors import run_cli

SPLITS = ("train", "val")


def settings(*extra):
    return [arg for item in (*TINY_SETTINGS, *extra) for arg in ("--set", item)]


def data_args(folder):
    return [arg for split in SPLITS for kind in ("pos", "norm")
            for arg in (f"--{split}_{kind}_csv", os.path.join(folder, f"{split}_{kind}.csv"))]


def write_data(folder):
    for seed, split in enumerate(SPLITS, start=1):
        write_tiny_split(folder, split, seed=seed)
    return data_args(folder)


def snapshot(folder):
    """Every file of ``folder`` with its bytes (hidden ones too): to show that nothing changed."""
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def one_line_error(code, err):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def read_metrics(out):
    with open(os.path.join(out, "metrics.csv")) as f:
        return list(csv.DictReader(f))


def test_a_run_is_locked_readable_shows_progress_and_names_its_best_model(tmp_path, monkeypatch, capsys):
    data = write_data(tmp_path / "data")
    out = tmp_path / "run"
    # 32 steps per epoch, 2 epochs: validations at iter 30 of each epoch and at the last step.
    argv = [*data, "--out", out, *settings("NUM_META_TRAIN_TASKS=128")]
    real_step, second_run = run_selector.train_step, {}

    def step_with_a_second_run_starting(*args, **kwargs):
        if not second_run:  # while the first run trains, the same command with --overwrite is started
            capsys.readouterr()
            second_run["code"], _, second_run["err"] = run_main(run_selector.main, [*argv, "--overwrite"], capsys)
            second_run["files"] = sorted(os.listdir(out))
        return real_step(*args, **kwargs)

    monkeypatch.setattr(run_selector, "train_step", step_with_a_second_run_starting)
    with umask(0o022):
        code, stdout, stderr = run_main(run_selector.main, argv, capsys)
    assert code == 0, stderr

    refusal = one_line_error(second_run["code"], second_run["err"])
    assert refusal.startswith(f"error: --out {out}: in use by process {os.getpid()} on ")
    assert f"(lock {out / '.lock'})" in refusal
    assert second_run["files"] == [".lock", "config.json", "train.log"]  # the first run's files, nothing removed

    rows = read_metrics(out)
    files = os.listdir(out)  # the lock is gone: released on exit
    assert set(files) == {"best.pt", "best_sample.pt", "best_topk.pt", "config.json", "last.pt", "metrics.csv",
                          "train.log"} | {r["saved"] for r in rows if r["saved"]} | {r["best_topk_checkpoint"] for r in rows}
    expected_mode = plain_open_mode(tmp_path, 0o022)  # 0644: colleagues can read the checkpoints and metrics
    assert {name: stat.S_IMODE(os.stat(out / name).st_mode) for name in files} == dict.fromkeys(files, expected_mode)

    assert [(r["epoch"], r["iter"]) for r in rows] == [("1", "30"), ("2", "30"), ("2", "32")]
    val = [float(r["val_auroc"]) for r in rows]
    best_row = rows[val.index(max(val))]  # the first validation reaching the maximum saved the best model
    assert rows[-1]["best_checkpoint"] == best_row["saved"] == f"model_epoch{best_row['epoch']}_iter{best_row['iter']}"
    assert open(out / "best.pt", "rb").read() == open(out / best_row["saved"], "rb").read()
    assert torch.load(out / "best.pt", weights_only=False)["val_auroc"] == pytest.approx(max(val))

    # A progress bar over all 64 steps with the time left, on stderr; stdout is left to the log lines scripts read.
    assert re.search(r"meta-training: +100%\|[^|]*\| 64/64 \[\d\d:\d\d<\d\d:\d\d", stderr), stderr[-2000:]
    assert "meta-training:" not in stdout and "\r" not in stdout


def test_sigterm_stops_the_run_like_ctrl_c_and_releases_the_lock(tmp_path, monkeypatch, capsys):
    data = write_data(tmp_path / "data")
    out = tmp_path / "run"

    def stopped_by_the_scheduler(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(run_selector, "train_step", stopped_by_the_scheduler)
    handler = signal.getsignal(signal.SIGTERM)
    code, _, err = run_main(run_selector.main, [*data, "--out", out, *settings()], capsys)
    assert code == 130 and err.strip().endswith("interrupted")
    assert not (out / ".lock").exists() and signal.getsignal(signal.SIGTERM) == handler


def test_a_live_lock_is_refused_before_any_work_and_a_stale_one_taken_over(tmp_path, capsys):
    data = write_data(tmp_path / "data")
    out = tmp_path / "run"
    out.mkdir()
    with lock_held_by_other_process(out / ".lock") as pid:
        before = snapshot(out)
        code, _, err = run_main(run_selector.main, [*data, "--out", out, *settings()], capsys)
        assert one_line_error(code, err).startswith(f"error: --out {out}: in use by process {pid} on ")
        assert snapshot(out) == before

    dead = stale_lock(out / ".lock")  # a run killed with SIGKILL (or by the OOM killer) left its lock file
    code, _, err = run_main(run_selector.main, [*data, "--out", out, *settings("NUM_META_TRAIN_TASKS=16",
                                                                               "NUM_EPOCHS=1")], capsys)
    assert code == 0, err
    note = f"took over the lock left by process {dead} "
    assert note in err and note in (out / "train.log").read_text()
    assert not (out / ".lock").exists()


def test_a_folder_of_the_original_codes_checkpoints_is_never_mixed_into(tmp_path, capsys):
    data = write_data(tmp_path / "data")
    out = tmp_path / "original_run"
    out.mkdir()
    for name in ("model_epoch1_iter30", "model_epoch2_iter60"):  # what the original code leaves: no config.json
        torch.save({"epoch": 1, "model_state_dict": {}, "optimizer_state_dict": {}}, out / name)
    before = snapshot(out)
    code, _, err = run_main(run_selector.main, [*data, "--out", out, *settings()], capsys)
    line = one_line_error(code, err)
    assert "model_epoch1_iter30, model_epoch2_iter60" in line and "no config.json" in line
    assert "choose a fresh folder" in line and "--overwrite" in line and "--resume" not in line
    assert snapshot(out) == before

    code, _, err = run_main(run_selector.main, [*data, "--out", out, "--overwrite",
                                                *settings("NUM_META_TRAIN_TASKS=16", "NUM_EPOCHS=1")], capsys)
    assert code == 0, err
    assert not {"model_epoch1_iter30", "model_epoch2_iter60"} & set(os.listdir(out))
    assert read_metrics(out)[-1]["best_checkpoint"] == "model_epoch1_iter4"


# --- --resume: the same folder, the same data ------------------------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run and its data: {'data': folder, 'out': run folder}."""
    root = tmp_path_factory.mktemp("resume")
    data = write_data(root / "data")
    assert run_cli(run_selector.main, [str(a) for a in [*data, "--out", root / "run", *settings()]]) == 0
    return {"data": root / "data", "out": root / "run"}


def copy_data(finished, folder):
    shutil.copytree(finished["data"], folder)
    return folder


def resume(finished, data_folder, capsys, out=None):
    out = out or finished["out"]
    return run_main(run_selector.main, [*data_args(data_folder), "--out", out,
                                        "--resume", finished["out"] / "last.pt"], capsys)


def test_last_pt_records_its_data(finished):
    record = torch.load(finished["out"] / "last.pt", weights_only=False)["data"]
    assert set(record) == {f"{split}_{kind}_csv" for split in SPLITS for kind in ("pos", "norm")}
    for argument, entry in record.items():
        csv_path = finished["data"] / f"{argument[:-4]}.csv"
        assert entry["csv"] == str(csv_path) and entry["hdf5"] == str(csv_path.with_suffix(".hdf5"))
        assert entry["csv_rows"] == len(pd.read_csv(csv_path))
        assert len(entry["csv_sha256"]) == 64 and len(entry["hdf5_fingerprint"]) == 16


def test_resume_into_another_folder_is_refused(finished, tmp_path, capsys):
    before = snapshot(finished["out"])
    code, _, err = resume(finished, finished["data"], capsys, out=tmp_path / "elsewhere")
    line = one_line_error(code, err)
    assert line == (f"error: --out {tmp_path / 'elsewhere'}: --resume {finished['out'] / 'last.pt'} continues the run "
                    f"in the folder that holds it; pass --out {finished['out']}")
    assert not (tmp_path / "elsewhere").exists() and snapshot(finished["out"]) == before


def test_resume_on_a_changed_csv_is_refused_naming_it(finished, tmp_path, capsys):
    data = copy_data(finished, tmp_path / "data")
    frame = pd.read_csv(data / "train_norm.csv")
    frame.loc[7, "Age"] += 1  # same rows, one value changed
    frame.to_csv(data / "train_norm.csv", index=False)
    before = snapshot(finished["out"])
    code, _, err = resume(finished, data, capsys)
    line = one_line_error(code, err)
    assert line.startswith(f"error: --train_norm_csv {data / 'train_norm.csv'}: differs from the CSV this run was "
                           f"trained on ({finished['data'] / 'train_norm.csv'}, same 60 rows, other content)")
    assert snapshot(finished["out"]) == before


def test_resume_on_changed_embeddings_is_refused_naming_the_hdf5(finished, tmp_path, capsys):
    data = copy_data(finished, tmp_path / "data")
    with h5py.File(data / "val_pos.hdf5", "r+") as f:
        f["dataset"][-1] *= 2  # e.g. one X-ray embedded again with another encoder
    before = snapshot(finished["out"])
    code, _, err = resume(finished, data, capsys)
    line = one_line_error(code, err)
    assert line.startswith(f"error: {data / 'val_pos.hdf5'}: embeddings differ from those this run was trained on "
                           f"({finished['data'] / 'val_pos.hdf5'})")
    assert snapshot(finished["out"]) == before


def test_resume_with_the_same_data_moved_elsewhere_is_accepted(finished, tmp_path, capsys):
    data = copy_data(finished, tmp_path / "moved")
    code, _, err = resume(finished, data, capsys)
    assert code == 0, err
    assert f"--train_pos_csv: {data / 'train_pos.csv'} has the same content as" in err
    assert "this run is already complete" in err
