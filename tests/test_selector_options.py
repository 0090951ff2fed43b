"""The selector options (POOL_FEATURES, SELECTOR, POLICY, SAMPLES_PER_TASK, REWARD_BASELINE), each against an
independent computation, a short training run with each, and old checkpoints still loading as the paper's."""
import itertools
import math

import numpy as np
import pytest
import torch

import engine
import run_selector
from models import attention_selector, pool_features, selector as selectors
from models.attention_selector import AttentionSelector
from models.checkpoint import load_checkpoint, selector_from_checkpoint
from models.lstm_selector import LSTMSelector, initial_selector
from tests.conftest import TINY_SETTINGS
from tests.test_run_selector import ORIGINAL_KEYS, OriginalSelector
from utils import config as config_module
from utils.config import apply_overrides, default_config
from utils.errors import UserError, run_cli


def numpy_pool_features(embeddings):
    """The three features of one pool (P, D), computed X-ray by X-ray with plain loops, then standardised."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    pool = len(unit)
    similarity = unit @ unit.T
    pairs = [similarity[i, j] for i in range(pool) for j in range(pool) if i != j]
    radius = np.quantile(pairs, pool_features.COVERAGE_QUANTILE, method="inverted_cdf")
    rows = []
    for i in range(pool):
        others = np.array([similarity[i, j] for j in range(pool) if j != i])
        nearest = np.sort(others)[::-1][:min(pool_features.NEIGHBOURS, pool - 1)]
        rows.append([others.mean(), nearest.mean(), (others >= radius).sum() / (pool - 1)])
    rows = np.array(rows)
    return (rows - rows.mean(0)) / (rows.std(0) + pool_features.STANDARDISE_EPS)


@pytest.mark.parametrize("pool", [7, 30])  # fewer and more X-rays than the 20 neighbours
def test_pool_features_match_a_plain_loop(pool):
    rng = np.random.default_rng(pool)
    embeddings = rng.normal(size=(3, pool, 5)).astype(np.float64)
    embeddings[:, :4] += 3.0  # a dense group beside the rest, so the features differ between X-rays
    got = pool_features.pool_features(torch.from_numpy(embeddings)).numpy()
    for task in range(3):
        np.testing.assert_allclose(got[task], numpy_pool_features(embeddings[task]), atol=1e-8)


def test_pool_features_ignore_scale_and_asl_columns():
    rng = np.random.default_rng(0)
    embeddings = torch.from_numpy(rng.normal(size=(2, 12, 6)))
    scaled = embeddings * torch.from_numpy(rng.uniform(0.5, 3, size=(2, 12, 1)))  # cosine: length does not matter
    torch.testing.assert_close(pool_features.pool_features(scaled), pool_features.pool_features(embeddings))
    with_asl = torch.cat([embeddings, torch.from_numpy(rng.normal(size=(2, 12, 3)))], -1)
    appended = pool_features.with_pool_features(with_asl, 6)
    assert appended.shape == (2, 12, 12)
    torch.testing.assert_close(appended[..., :9], with_asl)
    torch.testing.assert_close(appended[..., 9:], pool_features.pool_features(embeddings))


def test_plackett_luce_log_prob_matches_enumerated_orders():
    logits = torch.tensor([[0.3, -1.2, 2.0, 0.0, 0.7]], dtype=torch.float64)
    weights = logits[0].exp().tolist()
    total = 0.0
    for order in itertools.permutations(range(5), 3):
        by_hand, left = 1.0, list(range(5))
        for position in order:  # draw without replacement, one after another
            by_hand *= weights[position] / sum(weights[i] for i in left)
            left.remove(position)
        got = engine.plackett_luce_log_prob(logits, torch.tensor([order])).exp().item()
        assert got == pytest.approx(by_hand, rel=1e-12)
        total += got
    assert total == pytest.approx(1.0, rel=1e-12)  # the ordered draws of 3 of 5 are every outcome


def test_gumbel_top_k_draws_follow_plackett_luce():
    logits = torch.tensor([1.0, 0.0, -0.5, 0.8])
    draws = 40000
    generator = torch.Generator().manual_seed(0)
    idx, log_prob = engine.plackett_luce_selection(logits.expand(draws, 4), 2, generator)
    assert all(len(set(row)) == 2 for row in idx[:200].tolist())
    counts = {}
    for row in map(tuple, idx.tolist()):
        counts[row] = counts.get(row, 0) + 1
    weights = logits.exp()
    for (first, second), count in counts.items():
        expected = weights[first] / weights.sum() * weights[second] / (weights.sum() - weights[first])
        assert count / draws == pytest.approx(expected.item(), abs=0.01)
    torch.testing.assert_close(log_prob, engine.plackett_luce_log_prob(logits.expand(draws, 4), idx))


def test_attention_selector_is_invariant_to_the_pool_order():
    torch.manual_seed(0)
    for features_of in (None, 6):
        input_size = 6 + (pool_features.POOL_FEATURE_SIZE if features_of else 0)
        selector = AttentionSelector(input_size, pool_features_of=features_of).eval()
        pool = torch.randn(2, 15, 6)
        order = torch.randperm(15)
        with torch.no_grad():
            torch.testing.assert_close(selector(pool[:, order]), selector(pool)[:, order], atol=1e-5, rtol=1e-5)
    lstm = LSTMSelector(6).eval()  # the BiLSTM is not: the premise of the option
    with torch.no_grad():
        assert not torch.allclose(lstm(pool[:, order]), lstm(pool)[:, order], atol=1e-4)


def test_leave_one_out_baseline_matches_a_hand_loop():
    """train_step's rewards with S draws per task and the leave-one-out baseline, recomputed draw by draw."""
    torch.manual_seed(0)
    k, draws = 3, 4

    class Recorder(torch.nn.Module):  # fixed logits, and the loss's inputs kept for the check
        def __init__(self):
            super().__init__()
            self.logits = torch.nn.Parameter(torch.randn(2, 10))

        def forward(self, pool):
            return self.logits * 1.0

    table, tasks, classifier = tiny_table_and_tasks()
    selector = Recorder()
    optimizer = torch.optim.SGD(selector.parameters(), lr=0.0)
    generator = torch.Generator().manual_seed(5)
    stats = engine.train_step(selector, optimizer, classifier, table, tasks, k, generator, None,
                              samples_per_task=draws, reward_baseline=engine.LEAVE_ONE_OUT)
    # the same draws again, from the same generator state
    selection, log_prob = engine.sample_selection(selector.logits.detach().repeat_interleave(draws, 0), k,
                                                  torch.Generator().manual_seed(5))
    loss = 0.0
    for task in range(2):
        aurocs = [engine.selection_auroc(table, tasks, selection[task * draws + s][None].expand(2, k),
                                         classifier)[task].item() for s in range(draws)]
        for s in range(draws):
            others = [aurocs[r] for r in range(draws) if r != s]
            loss -= (aurocs[s] - sum(others) / len(others)) * log_prob[task * draws + s].item()
    assert stats["loss"] == pytest.approx(loss / (2 * draws), rel=1e-5)
    assert stats["reward"] == pytest.approx(0.0, abs=1e-6)  # leave-one-out rewards of a task sum to 0


def tiny_table_and_tasks():
    from data.tasks import TaskSampler, TaskShape
    from data.xray_table import XrayTable
    from models.classifier import MeanSimilarityClassifier
    rng = np.random.default_rng(0)
    embeddings = torch.from_numpy(rng.normal(size=(60, 4)).astype(np.float32))
    table = XrayTable(embeddings, None, {"A": np.arange(30)}, {"A": 0}, 30, 30, "p.csv", "n.csv")
    tasks = TaskSampler(table, ["A"], TaskShape(10, 5, 8, 4), seed=0, stream=0).draw(range(2))
    return table, tasks, MeanSimilarityClassifier("cosine")


def test_default_step_is_the_papers_step():
    """With the defaults, train_step draws and weighs exactly as the paper's step (one draw, random baseline)."""
    table, tasks, classifier = tiny_table_and_tasks()
    logits = torch.randn(2, 10)

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.logits = torch.nn.Parameter(logits.clone())

        def forward(self, pool):
            return self.logits * 1.0

    stats = engine.train_step(Fixed(), torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0), classifier,
                              table, tasks, 4, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2))
    selection, log_prob = engine.sample_selection(logits, 4, torch.Generator().manual_seed(1))
    baseline = engine.random_selection(2, 10, 4, torch.Generator().manual_seed(2))
    reward = engine.selection_auroc(table, tasks, selection, classifier) - engine.selection_auroc(
        table, tasks, baseline, classifier)
    assert stats["loss"] == pytest.approx(-(reward * log_prob).mean().item(), rel=1e-6)


def test_setting_choices_are_those_of_the_code():
    assert config_module.SELECTOR_CHOICES == tuple(selectors.SELECTOR_CLASSES)
    assert config_module.POLICY_CHOICES == engine.POLICIES
    assert config_module.REWARD_BASELINE_CHOICES == engine.REWARD_BASELINES
    defaults = default_config()
    assert (defaults["POOL_FEATURES"], defaults["SELECTOR"], defaults["POLICY"], defaults["SAMPLES_PER_TASK"],
            defaults["REWARD_BASELINE"]) == (False, "lstm", "multinomial", 1, "random")  # the paper's
    for bad in (["SELECTOR=gru"], ["POLICY=greedy"], ["REWARD_BASELINE=leave-one-out"], ["SAMPLES_PER_TASK=0"]):
        with pytest.raises(UserError):
            apply_overrides(defaults, bad)


def test_default_selector_is_the_papers_with_its_initial_weights():
    built = selectors.build_selector(default_config(), 8, seed=3)
    assert type(built) is LSTMSelector and built.pool_features_of is None
    paper = initial_selector(8, 3)
    for (name, value), (paper_name, paper_value) in zip(built.state_dict().items(), paper.state_dict().items()):
        assert name == paper_name and torch.equal(value, paper_value)


OPTION_RUNS = {  # option settings -> (selector class, network input size for dim-8 embeddings)
    "pool-features": (["POOL_FEATURES=True"], LSTMSelector, 11),
    "attention": (["SELECTOR=attention"], AttentionSelector, 8),
    "distinct": (["POLICY=distinct"], LSTMSelector, 8),
    "leave-one-out": (["SAMPLES_PER_TASK=3", "REWARD_BASELINE=leave-one-out"], LSTMSelector, 8),
    "combined": (["POOL_FEATURES=True", "SELECTOR=attention", "POLICY=distinct", "SAMPLES_PER_TASK=2",
                  "REWARD_BASELINE=leave-one-out"], AttentionSelector, 11),
}


@pytest.mark.parametrize("option", OPTION_RUNS)
def test_short_training_run_with_each_option(option, tiny_data, tmp_path):
    extra, cls, network_input = OPTION_RUNS[option]
    out = tmp_path / option
    settings = [*TINY_SETTINGS, "NUM_META_TRAIN_TASKS=16", "NUM_EPOCHS=1", *extra]
    assert run_cli(run_selector.main, [*tiny_data, "--out", str(out),
                                       *[a for s in settings for a in ("--set", s)]]) == 0
    metrics = (out / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 2 and all(math.isfinite(float(v)) for v in metrics[1].split(",")[3:6])
    checkpoint = load_checkpoint(str(out / "best.pt"))
    for name, value in (s.split("=") for s in extra):
        assert str(checkpoint["config"][name]) == value
    selector = selector_from_checkpoint(checkpoint, 8, str(out / "best.pt"))
    assert type(selector) is cls and selector.input_size == network_input and selector.data_input_size == 8
    with torch.no_grad():  # the reloaded selector gives the logits of the one saved
        pool = torch.randn(2, 20, 8)
        assert selector(pool).shape == (2, 20)
    untrained = selectors.untrained_like(selector, 0)
    assert type(untrained) is cls and untrained.input_size == network_input


def test_old_checkpoints_load_as_the_papers_selector(tmp_path):
    original = OriginalSelector(8)  # the original's format: no config, no new keys
    path = tmp_path / "original.pt"
    torch.save({"epoch": 1, "model_state_dict": original.state_dict(), "optimizer_state_dict": {}}, path)
    ours_before = tmp_path / "ours_before.pt"  # ours before the options: a config without them
    config = {k: v for k, v in default_config().items()
              if k not in ("POOL_FEATURES", "SELECTOR", "POLICY", "SAMPLES_PER_TASK", "REWARD_BASELINE")}
    torch.save({"epoch": 1, "model_state_dict": original.state_dict(), "optimizer_state_dict": {},
                "config": config}, ours_before)
    pool = torch.randn(2, 12, 8)
    for file in (path, ours_before):
        checkpoint = load_checkpoint(str(file))
        selector = selector_from_checkpoint(checkpoint, 8, str(file))
        assert type(selector) is LSTMSelector and selector.pool_features_of is None
        assert set(selector.state_dict()) == ORIGINAL_KEYS
        with torch.no_grad():
            features, _ = original.LSTM(pool)
            torch.testing.assert_close(selector(pool), original.linear(features).squeeze(-1))


def test_pool_feature_checkpoint_refuses_other_embedding_sizes(tmp_path):
    config = apply_overrides(default_config(), ["POOL_FEATURES=True", "SELECTOR=attention"])
    selector = selectors.build_selector(config, 8, 0)
    path = tmp_path / "attention.pt"
    torch.save({"epoch": 1, "model_state_dict": selector.state_dict(), "optimizer_state_dict": {},
                "config": config}, path)
    with pytest.raises(UserError, match="inputs of size 8 \\+ 3 pool features, but the data gives 11"):
        selector_from_checkpoint(load_checkpoint(str(path)), 11, str(path))
    assert attention_selector.INPUT_WEIGHT in selector.state_dict()


def test_select_xrays_and_evaluate_rebuild_an_attention_selector_with_pool_features(tmp_path, capsys):
    """The checkpoint's settings are read back: select() picks the top-K of the attention selector's logits
    over the pool (computed here directly, in file order: it is order-free), and evaluate.py runs it."""
    import evaluate
    from medselect import select
    from tests.conftest import run_main
    from tests.evaluate_helpers import DIM as TEST_DIM, SETTINGS, write_test_split
    from tests.medselect_helpers import DIM, write_pool
    config = apply_overrides(default_config(), ["POOL_FEATURES=True", "SELECTOR=attention", "K=5"])
    selector = selectors.build_selector(config, DIM, 0).eval()
    path = tmp_path / "attention.pt"
    torch.save({"epoch": 1, "model_state_dict": selector.state_dict(), "optimizer_state_dict": {},
                "config": config}, path)
    pool_csv, frame, embeddings = write_pool(tmp_path / "pool")
    chosen = select(pool_csv, checkpoint=str(path), selection="topk")
    with torch.no_grad():
        logits = selector(torch.from_numpy(embeddings)[None])[0]
    assert set(chosen["Path"]) == set(frame["Path"].iloc[logits.topk(5).indices.numpy()])

    assert TEST_DIM == DIM
    positive_csv, normal_csv = write_test_split(str(tmp_path / "test"))
    code, _, err = run_main(evaluate.main, ["--checkpoint", path, "--out", tmp_path / "out", "--test_pos_csv",
                                            positive_csv, "--test_norm_csv", normal_csv, "--methods",
                                            "medselect-topk,random", "--num_tasks", 8, "--bootstrap", 10,
                                            *[a for s in SETTINGS for a in ("--set", s)]], capsys)
    assert code == 0, err
