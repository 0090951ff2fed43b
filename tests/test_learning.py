"""REINFORCE moves the selector towards X-rays that make a better classifier (the sign and the wiring are right)."""
import torch

from data.tasks import TaskBatch
from data.xray_table import XrayTable
from engine import train_step
from models.lstm_selector import LSTMSelector
from models.classifier import MeanSimilarityClassifier


def make_tasks(generator, num_tasks=16, pool=20, query=10, dim=8):
    """Half of each pool is 'clean' (label signal, flag 0), half is 'junk' (label noise, flag 1).

    A classifier built from clean X-rays separates the query set; junk X-rays are mislabelled
    stand-ins. A working selector learns to draw clean ones: the flag in the last dimension tells them apart.
    """
    labels = torch.randint(0, 2, (num_tasks, pool + query), generator=generator)
    labels[:, :2] = torch.tensor([1, 0])
    labels[:, pool:pool + 2] = torch.tensor([1, 0])
    direction = torch.zeros(dim)
    direction[0] = 1.0
    sign = (2 * labels - 1).unsqueeze(-1).float()
    features = sign * direction + 0.3 * torch.randn(num_tasks, pool + query, dim, generator=generator)
    junk = torch.zeros(num_tasks, pool + query, dtype=torch.bool)
    junk[:, 1:pool:2] = True  # odd pool positions are junk
    features[junk] = -features[junk]  # their embedding says the opposite class
    features[..., -1] = junk.float() * 3.0
    embeddings = features.reshape(-1, dim)
    rows = torch.arange(num_tasks * (pool + query)).reshape(num_tasks, pool + query)
    table = XrayTable(embeddings, None, {}, {}, len(embeddings), 0, "pos.csv", "norm.csv")
    tasks = TaskBatch(torch.zeros(num_tasks, dtype=torch.long), rows[:, :pool], labels[:, :pool],
                      rows[:, pool:], labels[:, pool:])
    return table, tasks, junk[:, :pool]


def junk_probability(selector, generator):
    table, tasks, junk = make_tasks(generator)
    with torch.no_grad():
        probabilities = torch.softmax(selector(table.selector_input(tasks.pool_rows)), dim=-1)
    return float(probabilities[junk].sum() / len(tasks))


def test_training_learns_to_avoid_junk():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    selector = LSTMSelector(8, hidden_size=16)
    optimizer = torch.optim.Adam(selector.parameters(), lr=3e-2)
    classifier = MeanSimilarityClassifier()
    assert 0.35 < junk_probability(selector, generator) < 0.65  # untrained: about half on junk
    rewards = []
    for _ in range(80):
        table, tasks, _ = make_tasks(generator)
        rewards.append(train_step(selector, optimizer, classifier, table, tasks, 4, generator, generator)["reward"])
    assert junk_probability(selector, generator) < 0.2
    assert sum(rewards[-20:]) / 20 > 0.1  # its draws now beat random draws from the same pools
