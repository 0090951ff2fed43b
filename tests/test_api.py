"""The Python API (from medselect import select, classify): same results as the CLIs, and the large-pool rule."""
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import select_xrays
from medselect import classify, ground_truth_auroc, select
from medselect.selection import choose_with_selector, chunk_sizes, proportional_quotas
from tests.medselect_helpers import DIM, memoryless_selector, numpy_logits, softmax, write_checkpoint, write_pool
from utils.errors import UserError


@pytest.fixture
def pool(tmp_path):
    return write_pool(tmp_path / "data")  # 70 X-rays


def test_the_whole_path_select_label_classify(tmp_path, pool):
    csv_path, frame, _ = pool
    checkpoint = write_checkpoint(tmp_path / "sel.pt", memoryless_selector(DIM))
    to_label = select(csv_path, checkpoint, k=10)
    assert len(to_label) == 10 and to_label["Path"].isin(frame["Path"]).all()
    # The CLI writes exactly what the API returns.
    select_xrays.main(["--checkpoint", checkpoint, "--pool_csv", csv_path, "-k", "10",
                       "--out", str(tmp_path / "to_label.csv")])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "to_label.csv"), to_label, check_dtype=False)
    # The "radiologist" labels them from the synthetic truth; a DataFrame works as well as a CSV.
    labeled = to_label.assign(Edema=to_label["Edema"].isin([1, -1]).astype(int))
    labeled.loc[0, "Edema"], labeled.loc[1, "Edema"] = 1, 0  # make sure both classes are present
    before = labeled.copy()
    predictions = classify(labeled, "Edema", csv_path)
    pd.testing.assert_frame_equal(labeled, before)  # the caller's frame is left as it was
    assert len(predictions) == 60 and not predictions["Path"].isin(to_label["Path"]).any()
    estimate = ground_truth_auroc(predictions, csv_path, "Edema", resamples=100)
    truth = predictions["Edema"].isin([1, -1])
    assert estimate.auroc == pytest.approx(roc_auc_score(truth, predictions["score"]), abs=1e-12)
    assert estimate.num_xrays == 60 and estimate.num_positive == truth.sum()
    assert estimate.ci_low <= estimate.auroc <= estimate.ci_high


def test_exclude_accepts_a_dataframe_and_errors_are_user_errors(tmp_path, pool):
    csv_path, frame, _ = pool
    chosen = select(csv_path, method="random", k=65, exclude=frame.iloc[:5][["Path"]], seed=1)
    assert set(chosen["Path"]) == set(frame["Path"].iloc[5:])
    with pytest.raises(UserError, match="K=66 but .* only 65 X-ray"):
        select(csv_path, method="random", k=66, exclude=frame.iloc[:5][["Path"]])
    with pytest.raises(UserError, match="needs a checkpoint"):
        select(csv_path)
    with pytest.raises(UserError, match="selection must be one of sample, topk"):
        select(csv_path, method="random", selection="best")


def test_chunk_sizes_and_proportional_quotas():
    assert chunk_sizes(70, 20) == [18, 18, 17, 17]
    assert chunk_sizes(20, 20) == [20] and chunk_sizes(7, 20) == [7] and chunk_sizes(41, 20) == [14, 14, 13]
    assert proportional_quotas(5, [18, 18, 17, 17]) == [2, 1, 1, 1]
    assert proportional_quotas(20, [14, 14, 13]) == [7, 7, 6]
    assert proportional_quotas(2, [18, 18, 17, 17]) == [1, 1, 0, 0]
    assert proportional_quotas(3, [10]) == [3]


@pytest.mark.parametrize("num_xrays,k", [(70, 5), (70, 20), (41, 3)])
def test_chunks_are_read_separately_and_pick_their_share(num_xrays, k):
    """Recompute the chunked selection by hand: random order, near-equal chunks, per-chunk softmax and top share."""
    selector = memoryless_selector(DIM, seed=3)
    inputs = np.random.default_rng(5).normal(size=(num_xrays, DIM)).astype(np.float32)
    chosen, scores = choose_with_selector(selector, torch.from_numpy(inputs), k, 20, "topk", "chunks",
                                          torch.Generator().manual_seed(11))
    order = torch.randperm(num_xrays, generator=torch.Generator().manual_seed(11)).numpy()  # the reading order
    logits = numpy_logits(selector.state_dict(), inputs)
    sizes = chunk_sizes(num_xrays, 20)
    expected_scores, expected_picks, start = np.empty(num_xrays), [], 0
    for size, quota in zip(sizes, proportional_quotas(k, sizes)):
        members = order[start:start + size]
        expected_scores[members] = softmax(logits[members]) * size / num_xrays
        expected_picks += list(members[np.argsort(-logits[members])[:quota]])
        start += size
    np.testing.assert_allclose(scores.numpy(), expected_scores, rtol=1e-4)
    assert scores.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert sorted(chosen.tolist()) == sorted(expected_picks)
    assert chosen.tolist() == sorted(expected_picks, key=lambda i: -expected_scores[i])


def test_sample_draws_follow_the_selector_softmax():
    selector = memoryless_selector(DIM, seed=4)
    inputs = np.random.default_rng(6).normal(size=(4, DIM)).astype(np.float32)
    probabilities = softmax(numpy_logits(selector.state_dict(), inputs))
    generator = torch.Generator().manual_seed(0)
    draws = [choose_with_selector(selector, torch.from_numpy(inputs), 1, 20, "sample", "chunks", generator)[0].item()
             for _ in range(300)]
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / 300, probabilities, atol=0.09)  # 3 std. errors
    # K draws are K distinct X-rays: a label is never spent twice on one X-ray.
    chosen, _ = choose_with_selector(selector, torch.from_numpy(inputs), 4, 20, "sample", "chunks", generator)
    assert sorted(chosen.tolist()) == [0, 1, 2, 3]
