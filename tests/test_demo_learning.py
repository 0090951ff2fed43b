"""On the demo's planted data, meta-training raises the held-out AUROC above the untrained selector's.

The planted structure is the demo's (data/synthetic.py, as scripts/make_demo_images.py plants it in
images): 30 % of the X-rays, whatever their labels, come from a "poor acquisition" source whose
embeddings carry a shared artefact and no finding signal. The selector is meta-trained with REINFORCE
on the seen conditions of one split and scored on the held-out conditions (HOLD_OUT) of another, on
identical tasks, against the same selector before training and against the planted truth.
"""
import copy

import numpy as np
import pytest
import torch

import constants
from data.synthetic import ACQUISITION_COLUMN, POOR, synthetic_artefact, synthetic_centres, synthetic_split, write_pair
from data.tasks import HELD_OUT_TEST_STREAM, TRAIN_STREAM, FixedTaskSet, TaskSampler, TaskShape
from data.xray_table import load_xray_table
from engine import SAMPLE, evaluate_selector, selector_positions, train_step
from models.lstm_selector import LSTMSelector
from models.classifier import MeanSimilarityClassifier

# 16-D embeddings whose noise leaves uniform selections an AUROC near the demo's (about 0.6), and the
# demo's task shape. A 32-unit selector at a high learning rate learns in 80 steps (a few seconds).
DIM, NOISE, POOR_FRACTION, ARTEFACT_SIZE = 16, 0.3, 0.3, 4.0
SHAPE = TaskShape(pool_size=20, pool_positives=10, query_size=10, query_positives=5)
K, BATCH_SIZE, STEPS, LEARNING_RATE = 5, 16, 80, 3e-2
EVALUATION_TASKS = 400
SEED = 0  # of the data, the initial weights and the task streams


def planted_split(folder, name, seed, centres, artefact):
    """Write a split's CSV/HDF5 pairs with the planted poor source; return its table and poor-row mask."""
    rng = np.random.default_rng(seed)
    positive, positive_embeddings, normal, normal_embeddings = synthetic_split(
        400, 200, DIM, rng, centres=centres, noise=NOISE, poor_fraction=POOR_FRACTION, artefact=artefact)
    paths = [str(folder / f"{name}_pos.csv"), str(folder / f"{name}_norm.csv")]
    write_pair(positive, positive_embeddings, paths[0])
    write_pair(normal, normal_embeddings, paths[1])
    table = load_xray_table(*paths, constants.ALL_COND)
    poor = np.concatenate([positive[ACQUISITION_COLUMN] == POOR, normal[ACQUISITION_COLUMN] == POOR])
    return table, torch.from_numpy(poor)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny LSTM steps run several times faster in one thread than in two on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    folder = tmp_path_factory.mktemp("planted")
    rng = np.random.default_rng(SEED)
    centres, artefact = synthetic_centres(DIM, rng), synthetic_artefact(DIM, rng, ARTEFACT_SIZE)
    train_table, _ = planted_split(folder, "train", SEED + 1, centres, artefact)
    test_table, test_poor = planted_split(folder, "test", SEED + 2, centres, artefact)

    torch.manual_seed(SEED)
    selector = LSTMSelector(DIM, hidden_size=32)
    untrained = copy.deepcopy(selector)
    optimizer = torch.optim.Adam(selector.parameters(), lr=LEARNING_RATE)
    classifier = MeanSimilarityClassifier()
    sampler = TaskSampler(train_table, constants.NON_HOLD_OUT, SHAPE, 0, TRAIN_STREAM)
    selection, baseline = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    for step in range(STEPS):
        tasks = sampler.draw(range(step * BATCH_SIZE, (step + 1) * BATCH_SIZE))
        train_step(selector, optimizer, classifier, train_table, tasks, K, selection, baseline)

    held_out = FixedTaskSet(TaskSampler(test_table, constants.HOLD_OUT, SHAPE, 0, HELD_OUT_TEST_STREAM),
                            EVALUATION_TASKS)
    return {"selector": selector, "untrained": untrained, "table": test_table, "poor": test_poor,
            "tasks": held_out, "classifier": classifier}


def held_out_auroc(run, selector, mode):
    """Per-task query AUROC (numpy) on the held-out conditions, the same draws for every selector."""
    return evaluate_selector(selector, run["classifier"], run["table"], run["tasks"], K, EVALUATION_TASKS,
                             torch.Generator().manual_seed(3), modes=(mode,))[mode]


@pytest.mark.parametrize("mode", ["sample", "topk"])
def test_training_raises_held_out_auroc_above_untrained(trained, mode):
    gain = held_out_auroc(trained, trained["selector"], mode) - held_out_auroc(trained, trained["untrained"], mode)
    standard_error = gain.std(ddof=1) / np.sqrt(len(gain))
    print(f"{mode}: held-out AUROC gain of training {gain.mean():+.4f} (s.e. {standard_error:.4f})")
    assert gain.mean() > 0.02 and gain.mean() > 2.5 * standard_error  # paired, one-sided p < 0.01


def test_trained_selector_avoids_the_planted_poor_source(trained):
    """The mechanism, checked against the planted truth the selector never saw."""
    tasks = next(trained["tasks"].batches(EVALUATION_TASKS, torch.device("cpu")))
    poor_in_pool = trained["poor"][tasks.pool_rows]  # (B, P)

    def poor_share(selector):
        selector.eval()
        chosen = selector_positions(selector, trained["table"], tasks, K, SAMPLE, torch.Generator().manual_seed(3))
        return float(poor_in_pool.gather(1, chosen).float().mean())

    pool_share = float(poor_in_pool.float().mean())
    assert abs(poor_share(trained["untrained"]) - pool_share) < 0.1  # untrained: about the pool's share
    assert poor_share(trained["selector"]) < pool_share / 3
