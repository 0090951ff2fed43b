"""Checkpoints of the original code as users have them: saved under nn.DataParallel (parameter names
'module.*'), trained with USE_ASL without a record of it, and broken ones refused in one line."""
import logging
import os

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

import evaluate
import run_selector
import select_xrays
from medselect import select
from models.checkpoint import load_checkpoint
from tests.conftest import run_main
from tests.evaluate_helpers import SETTINGS, positive_favouring_selector, write_test_split
from tests.medselect_helpers import DIM, memoryless_selector, numpy_logits, write_pool
from utils.config import apply_overrides, default_config
from utils.logs import LOGGER_NAME


def data_parallel_state(selector):
    """The state dict the original saved from ``nn.DataParallel(selector)``: torch names it, not us."""
    state = nn.DataParallel(selector).state_dict()
    assert all(name.startswith("module.") for name in state)
    return state


def save_original(path, state):
    torch.save({"epoch": 5, "model_state_dict": state, "optimizer_state_dict": {}}, path)
    return str(path)


def asl_columns(frame):
    return np.stack([(frame["Sex"] == "Female").astype(float), (frame["Age"] - 60.33) / 17.92,
                     (frame["Frontal/Lateral"] == "Frontal").astype(float)], axis=1)


@pytest.fixture
def pool(tmp_path):
    return write_pool(tmp_path / "data")  # 70 X-rays of DIM 8, with Sex, Age, Frontal/Lateral


def test_data_parallel_checkpoint_loads_without_the_prefix_and_says_so_once(tmp_path, caplog):
    selector = memoryless_selector(DIM)
    path = save_original(tmp_path / "model_epoch5_iter150", data_parallel_state(selector))
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        checkpoint = load_checkpoint(path)
    state = checkpoint["model_state_dict"]
    assert set(state) == set(selector.state_dict())
    assert all(torch.equal(state[k], v) for k, v in selector.state_dict().items())
    said = [r.getMessage() for r in caplog.records if "DataParallel" in r.getMessage()]
    assert len(said) == 1 and path in said[0] and "'module.'" in said[0]


def test_select_xrays_and_the_api_read_a_data_parallel_checkpoint(tmp_path, pool, capsys):
    csv_path, frame, embeddings = pool
    selector = memoryless_selector(DIM)
    path = save_original(tmp_path / "dp.pt", data_parallel_state(selector))
    out = tmp_path / "to_label.csv"
    code, _, err = run_main(select_xrays.main, ["--checkpoint", path, "--pool_csv", csv_path, "-k", 6,
                                                "--selection", "topk", "--out", out], capsys)
    assert code == 0, err
    assert err.count("nn.DataParallel") == 1
    best = np.argsort(-numpy_logits(selector.state_dict(), embeddings))[:6]  # the same weights, in NumPy
    assert pd.read_csv(out)["Path"].tolist() == frame["Path"].iloc[best].tolist()
    assert select(csv_path, path, k=6, selection="topk")["Path"].tolist() == frame["Path"].iloc[best].tolist()


def test_evaluate_reads_a_data_parallel_checkpoint(tmp_path, capsys):
    positive_csv, normal_csv = write_test_split(str(tmp_path / "data"))
    selector = positive_favouring_selector()
    plain = save_original(tmp_path / "plain", selector.state_dict())
    wrapped = save_original(tmp_path / "wrapped", data_parallel_state(selector))
    common = ["--test_pos_csv", positive_csv, "--test_norm_csv", normal_csv, "--methods", "medselect-topk,random",
              "--num_tasks", 8, "--bootstrap", 10, *[a for s in SETTINGS for a in ("--set", s)]]
    results = {}
    for name, path in (("plain", plain), ("wrapped", wrapped)):
        code, _, err = run_main(evaluate.main, ["--checkpoint", path, "--out", tmp_path / f"{name}_out", *common],
                                capsys)
        assert code == 0, err
        assert err.count("nn.DataParallel") == (name == "wrapped")
        results[name] = pd.read_csv(tmp_path / f"{name}_out" / "per_task.csv")
    pd.testing.assert_frame_equal(results["plain"], results["wrapped"])


def test_resume_reads_a_data_parallel_checkpoint_and_asks_for_last_pt(tiny_data, tmp_path, capsys):
    path = save_original(tmp_path / "dp.pt", data_parallel_state(memoryless_selector(DIM)))
    code, _, err = run_main(run_selector.main, [*tiny_data, "--out", tmp_path / "run", "--resume", path], capsys)
    assert code == 2 and "holds weights but no training position" in err  # read, then refused for what it lacks
    assert not (tmp_path / "run").exists()


def test_original_asl_checkpoint_is_usable_with_set_use_asl(tmp_path, pool, capsys):
    """The original's checkpoints record no configuration: a selector of input size D + 3 asks for
    --set USE_ASL=True, and with it reads Sex, Age and Frontal/Lateral from the pool CSV."""
    csv_path, frame, embeddings = pool
    selector = memoryless_selector(DIM + 3)
    path = save_original(tmp_path / "asl.pt", data_parallel_state(selector))
    out = tmp_path / "to_label.csv"
    out.write_text("an earlier result\n")
    argv = ["--checkpoint", path, "--pool_csv", csv_path, "-k", 6, "--selection", "topk", "--out", out, "--overwrite"]
    code, _, err = run_main(select_xrays.main, argv, capsys)
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: {path}: selector was trained on inputs of size {DIM + 3}, but the data gives {DIM}")
    assert "--set USE_ASL=True" in last
    assert out.read_text() == "an earlier result\n"
    code, _, err = run_main(select_xrays.main, argv + ["--set", "USE_ASL=True"], capsys)
    assert code == 0, err
    inputs = np.concatenate([embeddings, asl_columns(frame)], axis=1)
    best = np.argsort(-numpy_logits(selector.state_dict(), inputs))[:6]
    assert pd.read_csv(out)["Path"].tolist() == frame["Path"].iloc[best].tolist()


def test_evaluate_uses_an_original_asl_checkpoint_with_set_use_asl(tmp_path, capsys):
    positive_csv, normal_csv = write_test_split(str(tmp_path / "data"))
    selector = positive_favouring_selector(input_size=DIM + 3)
    original = save_original(tmp_path / "original", selector.state_dict())
    ours = str(tmp_path / "ours")
    torch.save({"epoch": 1, "model_state_dict": selector.state_dict(), "optimizer_state_dict": {},
                "config": apply_overrides(default_config(), SETTINGS + ["USE_ASL=True"])}, ours)
    common = ["--test_pos_csv", positive_csv, "--test_norm_csv", normal_csv, "--methods", "medselect-topk",
              "--num_tasks", 8, "--bootstrap", 10]
    settings = [a for s in SETTINGS for a in ("--set", s)]
    code, _, err = run_main(evaluate.main, ["--checkpoint", original, "--out", tmp_path / "a", *common, *settings],
                            capsys)
    assert code == 2 and "--set USE_ASL=True" in err and not (tmp_path / "a").exists()
    code, _, err = run_main(evaluate.main, ["--checkpoint", original, "--out", tmp_path / "a", *common, *settings,
                                            "--set", "USE_ASL=True"], capsys)
    assert code == 0, err
    code, _, err = run_main(evaluate.main, ["--checkpoint", ours, "--out", tmp_path / "b", *common], capsys)
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "per_task.csv"),
                                  pd.read_csv(tmp_path / "b" / "per_task.csv"))


def broken_states():
    """(state, words the one-line error must contain) for checkpoints that are not a selector's."""
    good = data_parallel_state(memoryless_selector(DIM))
    extra_plain = {**good, "step": torch.tensor(3)}
    extra_prefixed = {**good, "module.head.weight": torch.zeros(1, 512)}
    narrow = {k: v for k, v in memoryless_selector(DIM).state_dict().items()}
    narrow["LSTM.weight_hh_l0"] = torch.zeros(64, 8)  # hidden size 8, but weight_ih_l0 says 16
    missing = {k: v for k, v in narrow.items() if k != "linear.bias"}
    missing["LSTM.weight_hh_l0"] = memoryless_selector(DIM).state_dict()["LSTM.weight_hh_l0"]
    return {"module. and other keys": (extra_plain, ["mixes parameter names saved under nn.DataParallel", "'step'"]),
            "module. and an unexpected parameter": (extra_prefixed, ["unexpected head.weight"]),
            "wrong LSTM shape": (narrow, ["LSTM.weight_hh_l0 is (64, 8), expected (64, 16)", "hidden size 16"]),
            "missing parameter": (missing, ["missing linear.bias"])}


@pytest.mark.parametrize("case", sorted(broken_states()))
@pytest.mark.parametrize("command", ["select_xrays", "evaluate"])
def test_broken_checkpoint_is_one_line_naming_the_file(tmp_path, pool, case, command, capsys):
    state, words = broken_states()[case]
    path = save_original(tmp_path / "broken.pt", state)
    if command == "select_xrays":
        csv_path = pool[0]
        out = tmp_path / "to_label.csv"
        out.write_text("an earlier result\n")
        code, _, err = run_main(select_xrays.main, ["--checkpoint", path, "--pool_csv", csv_path, "--out", out,
                                                    "--overwrite"], capsys)
        assert out.read_text() == "an earlier result\n"
    else:
        positive_csv, normal_csv = write_test_split(str(tmp_path / "data"))
        out = tmp_path / "results"
        code, _, err = run_main(evaluate.main, ["--checkpoint", path, "--test_pos_csv", positive_csv,
                                                "--test_norm_csv", normal_csv, "--out", out,
                                                *[a for s in SETTINGS for a in ("--set", s)]], capsys)
        assert not out.exists()
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == err.strip().splitlines()[-1]
    assert errors[0].startswith(f"error: {path}: ")
    for word in words:
        assert word in errors[0], errors[0]
