"""A faithful re-creation of the original MedSelect code's per-task path, for side-by-side measurement.

This is the slow reference the benchmarks time against and the tests compare
numbers with. It follows the original's logic step by step: pandas masks and
Python sets over every CSV row to draw each task, a global ``np.random.seed``
per task, ``torch.stack`` collation, ``Multinomial.sample`` followed by a
Python loop that turns counts into indices, a Python loop to gather the
selection, a classifier over the whole pool with a mask for the random
baseline, and one ``roc_auc_score`` call per task. It is not used by the
product.

(The original's classifier also computed distance statistics for every task
when ``save_metrics`` was on, its default; that extra work is left out here,
which makes the reference faster than the original and our ratios conservative.)
"""
import numpy as np
import torch
from sklearn.metrics import roc_auc_score


class ReferenceTaskDataset:
    """The original RandomTaskDataset (deterministic mode, no ASL): one task per index."""

    def __init__(self, positive_csv, normal_csv, positive_hdf5, normal_hdf5, unlabeled_pool_size,
                 unlabeled_pos_frac, query_set_size, query_pos_frac, conditions_used):
        self.positive_csv = positive_csv  # pandas DataFrames, as the original held them
        self.normal_csv = normal_csv
        self.positive_hdf5 = positive_hdf5  # numpy arrays of embeddings
        self.normal_hdf5 = normal_hdf5
        self.unlabeled_pool_size = unlabeled_pool_size
        self.unlabeled_pos_frac = unlabeled_pos_frac
        self.query_set_size = query_set_size
        self.query_pos_frac = query_pos_frac
        self.conditions_used = conditions_used

    def __getitem__(self, idx):
        np.random.seed(idx)
        cond = self.conditions_used[np.random.choice(len(self.conditions_used))]

        mask = (self.positive_csv[cond] == 1.0).tolist()
        pos_idx = np.argwhere(mask).flatten()
        num_pos = int(np.ceil(self.unlabeled_pool_size * self.unlabeled_pos_frac))
        pos_idx = np.random.choice(pos_idx, size=num_pos, replace=False)
        pos_embedding = self.positive_hdf5[pos_idx]
        num_neg = self.unlabeled_pool_size - num_pos
        neg_idx = np.random.choice(len(self.normal_csv), size=num_neg, replace=False)
        neg_embedding = self.normal_hdf5[neg_idx]
        pool = np.concatenate([pos_embedding, neg_embedding], axis=0)
        pool_labels = np.concatenate([np.ones([num_pos]), np.zeros([num_neg])], axis=0)
        order = np.random.permutation(np.arange(pool.shape[0]))
        pool, pool_labels = pool[order], pool_labels[order]

        mask = (self.positive_csv[cond] == 1.0).tolist()
        idx = list(set(np.argwhere(mask).flatten()).difference(set(pos_idx)))
        num_pos = int(np.ceil(self.query_set_size * self.query_pos_frac))
        idx = np.random.choice(idx, size=num_pos, replace=False)
        pos_embedding = self.positive_hdf5[idx]
        num_neg = self.query_set_size - num_pos
        idx = list(set(range(len(self.normal_csv))).difference(set(neg_idx)))
        idx = np.random.choice(idx, size=num_neg, replace=False)
        neg_embedding = self.normal_hdf5[idx]
        query = np.concatenate([pos_embedding, neg_embedding], axis=0)
        query_labels = np.concatenate([np.ones([num_pos]), np.zeros([num_neg])], axis=0)
        order = np.random.permutation(np.arange(query.shape[0]))
        query, query_labels = query[order], query_labels[order]

        return {"pool": torch.Tensor(pool), "pool_labels": torch.LongTensor(pool_labels),
                "query": torch.Tensor(query), "query_labels": torch.LongTensor(query_labels), "cond": cond}


def reference_collate(task_list):
    batch = {"cond": [s["cond"] for s in task_list]}
    for key in ("pool", "pool_labels", "query", "query_labels"):
        batch[key] = torch.stack([s[key] for s in task_list], dim=0)
    batch["pool_labels"] = batch["pool_labels"].long()
    batch["query_labels"] = batch["query_labels"].long()
    return batch


def reference_sample_once(logits, k):
    """Multinomial sample, its log-probability, and a Python loop from counts to indices."""
    dist = torch.distributions.multinomial.Multinomial(total_count=k, logits=logits)
    x = dist.sample()
    log_prob = dist.log_prob(x)
    x = x.cpu().numpy().astype(int)
    idx = np.array([np.concatenate([[j] * x[i][j] for j in range(len(x[i]))]) for i in range(len(x))]).astype(int)
    return idx, log_prob


def reference_gather(pool, pool_labels, idx):
    """The original's Python loop over tasks to collect the selected embeddings and labels."""
    pool, pool_labels = pool.numpy(), pool_labels.numpy()
    selected = [pool[p][idx[p]] for p in range(len(idx))]
    selected_labels = [pool_labels[p][idx[p]] for p in range(len(idx))]
    return torch.Tensor(np.array(selected)), torch.LongTensor(np.array(selected_labels))


def reference_scores(selected, selected_labels, query, mask=None):
    """The original meanPred.forward_selected, cosine mode (norms, matmul, masked means)."""
    deno = torch.matmul(torch.norm(query, dim=2, keepdim=True),
                        torch.transpose(torch.norm(selected, dim=2, keepdim=True), 1, 2))
    metric = torch.div(torch.matmul(query, torch.transpose(selected, 1, 2)), deno)

    def masked_mean(label):
        if mask is None:
            not_mask = torch.logical_not(selected_labels == label)
        else:
            not_mask = torch.logical_or(mask == 0, selected_labels == 1 - label)
        not_mask = not_mask.reshape(not_mask.shape[0], 1, not_mask.shape[1])
        count = torch.sum(not_mask == False, dim=2, keepdim=True)  # noqa: E712 (as the original)
        mean = torch.div(torch.sum(torch.masked_fill(metric, not_mask, 0.0), dim=2, keepdim=True), count)
        return torch.masked_fill(mean, mean.isnan(), 0.0)

    return torch.sub(masked_mean(1), masked_mean(0)).squeeze(2)


def reference_aurocs(query_labels, scores):
    """One scikit-learn call per task, as the original."""
    return torch.Tensor(np.array([roc_auc_score(query_labels[p, :], scores[p, :])
                                  for p in range(query_labels.shape[0])], dtype=float))


def reference_random_baseline(batch, k, pool_size, rng=np.random):
    """K random distinct X-rays per task as a mask, the classifier over the whole pool, AUROC per task."""
    selected = np.zeros(batch["pool_labels"].shape)
    for row in range(batch["pool"].shape[0]):
        selected[row, rng.choice(range(pool_size), k, replace=False)] = 1
    mask = torch.Tensor(selected)
    scores = reference_scores(batch["pool"], batch["pool_labels"], batch["query"], mask=mask)
    return reference_aurocs(batch["query_labels"], scores), mask
