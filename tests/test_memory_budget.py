"""select_xrays.py's memory budget (--max_memory), --subsample, and the new baselines through the command."""
import os

import numpy as np
import pandas as pd
import pytest
import torch

import select_xrays
from medselect.memory_budget import check_memory
from models.baseline_memory import peak_bytes
from models.baselines import select_baseline
from tests.conftest import ROOT, run_main
from tests.medselect_helpers import DIM, write_pool
from utils.errors import UserError
from utils.memory import available_bytes, parse_size
from utils.seeding import SUBSAMPLE, derived_seed


@pytest.fixture
def pool(tmp_path):
    return write_pool(tmp_path / "data")  # 70 X-rays


def run(argv, capsys):
    code, _, err = run_main(select_xrays.main, argv, capsys)
    return code, err


def test_a_method_over_the_budget_stops_in_one_line_naming_a_subsample_that_fits(tmp_path, pool, capsys):
    csv_path, frame, _ = pool
    out = tmp_path / "to_label.csv"
    budget = peak_bytes("kmedoids", 50, DIM)  # 70 X-rays do not fit, 50 do
    code, err = run(["--method", "kmedoids", "--pool_csv", csv_path, "-k", 5, "--out", out,
                     "--max_memory", budget], capsys)
    last = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err
    assert last.startswith("error: method 'kmedoids' on 70 X-rays") and "--max_memory" in last
    assert f"{peak_bytes('kmedoids', 70, DIM) / 2**30:.1f} GB" in last
    assert "--subsample 50," in last  # the largest pool within the budget
    assert not out.exists()
    # The advice works: with it the same budget suffices.
    code, err = run(["--method", "kmedoids", "--pool_csv", csv_path, "-k", 5, "--out", out,
                     "--max_memory", budget, "--subsample", 50], capsys)
    assert code == 0, err
    assert pd.read_csv(out)["Path"].is_unique and len(pd.read_csv(out)) == 5


def test_subsample_selects_among_a_seeded_random_subset(tmp_path, pool, capsys):
    csv_path, frame, embeddings = pool
    out = tmp_path / "to_label.csv"
    code, err = run(["--method", "coreset", "--pool_csv", csv_path, "-k", 4, "--seed", 2, "--subsample", 30,
                     "--out", out], capsys)
    assert code == 0, err
    rows = np.sort(np.random.default_rng(derived_seed(2, SUBSAMPLE)).choice(70, size=30, replace=False))
    expected = rows[select_baseline("coreset", torch.from_numpy(embeddings[rows])[None], 4, 2)[0].numpy()]
    assert pd.read_csv(out)["Path"].tolist() == frame["Path"].iloc[expected].tolist()


@pytest.mark.parametrize("method", ["facility-location", "kmeans-nearest"])
def test_new_baselines_run_from_the_command_line(tmp_path, pool, method, capsys):
    csv_path, frame, embeddings = pool
    out = tmp_path / "to_label.csv"
    code, err = run(["--method", method, "--pool_csv", csv_path, "-k", 6, "--seed", 1, "--out", out], capsys)
    assert code == 0, err
    expected = select_baseline(method, torch.from_numpy(embeddings)[None], 6, 1)[0].numpy()
    assert pd.read_csv(out)["Path"].tolist() == frame["Path"].iloc[expected].tolist()


def test_bad_max_memory_is_one_line(tmp_path, pool, capsys):
    code, err = run(["--method", "coreset", "--pool_csv", pool[0], "-k", 3, "--out", tmp_path / "o.csv",
                     "--max_memory", "lots"], capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: --max_memory must be a size")


def test_sizes_as_users_write_them():
    assert parse_size("8G") == parse_size("8GB") == parse_size("8GiB") == 8 * 2**30
    assert parse_size("500m") == 500 * 2**20 and parse_size("1.5G") == int(1.5 * 2**30) and parse_size(4096) == 4096
    for bad in ("", "G", "-1G", "0"):
        with pytest.raises(UserError):
            parse_size(bad)
    assert 0 < available_bytes()


def test_the_refusal_quoted_in_own_xrays_md_is_the_one_the_code_gives():
    # docs/own_xrays.md shows the message for typiclust on 300,000 X-rays of size 1024 with --max_memory 6G;
    # the estimate's constants change with new measurements, and the quoted message must change with them.
    with open(os.path.join(ROOT, "docs", "own_xrays.md"), encoding="utf-8") as f:
        quoted = next(line.strip() for line in f if line.strip().startswith("error: method 'typiclust' on 300,000"))
    with pytest.raises(UserError) as refused:
        check_memory("typiclust", 300_000, 1024, parse_size("6G"))
    assert quoted == f"error: {refused.value}"
