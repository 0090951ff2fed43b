"""Each X-ray's relations to the rest of its pool, appended to the selector's input with POOL_FEATURES=True.

The strategies that win label-free selection where there is room for it (ProbCover, TypiClust, facility
location) rank an X-ray by how it sits among the other X-rays of the pool. A BiLSTM reading the pool as a
shuffled sequence can hardly compute that, so these three numbers are handed to the selector instead
(docs/training.md#selector-options). All are computed on the cosine similarities of the L2-normalised image
embeddings, batched over tasks, on the device of the embeddings:

* ``mean similarity``: the mean cosine similarity to the pool's other X-rays;
* ``typicality``: the mean similarity to its ``NEIGHBOURS`` nearest other X-rays (TypiClust's density);
* ``coverage``: the fraction of the pool's other X-rays within a cosine radius, the radius set per task as
  the ``COVERAGE_QUANTILE`` quantile of the pool's own pairwise similarities (inverted-CDF quantile of the
  P (P - 1) ordered pairs), so that an X-ray's ball holds on average 1 - COVERAGE_QUANTILE of the pool
  whatever the embedding's similarity scale (ProbCover's coverage degree).

Each feature is then standardised within its pool (zero mean, unit standard deviation over the pool's
X-rays): what the selector needs is which X-rays are more typical than their pool-mates, and the absolute
similarity level differs from one embedding to another. The classifier never sees these features.
"""
import math

import torch
import torch.nn.functional as F

POOL_FEATURE_SIZE = 3  # mean similarity, typicality, coverage
NEIGHBOURS = 20  # nearest neighbours of the typicality (TypiClust's 20); fewer in pools of 20 X-rays or less
COVERAGE_QUANTILE = 0.9  # the radius: this quantile of the pool's pairwise cosine similarities
STANDARDISE_EPS = 1e-6  # keeps a feature that is constant over a pool at 0 instead of dividing by 0


def pool_features(embeddings):
    """(B, P, D) image embeddings of each task's pool -> (B, P, POOL_FEATURE_SIZE) standardised features."""
    batch, pool, _ = embeddings.shape
    if pool < 2:  # no other X-ray to relate to
        return embeddings.new_zeros(batch, pool, POOL_FEATURE_SIZE)
    unit = F.normalize(embeddings, dim=-1)
    similarity = unit @ unit.transpose(1, 2)  # (B, P, P)
    others = ~torch.eye(pool, dtype=torch.bool, device=embeddings.device)  # (P, P) off the diagonal
    mean_similarity = similarity.masked_fill(~others, 0).sum(-1) / (pool - 1)  # (B, P)
    neighbours = min(NEIGHBOURS, pool - 1)
    nearest = similarity.masked_fill(~others, -math.inf).topk(neighbours, dim=-1).values  # (B, P, n)
    typicality = nearest.mean(-1)  # (B, P)
    pairs = similarity[:, others]  # (B, P (P - 1))
    rank = max(1, math.ceil(COVERAGE_QUANTILE * pairs.shape[1]))  # inverted-CDF quantile: the rank-th smallest
    radius = pairs.kthvalue(rank, dim=-1).values  # (B,)
    within = (similarity >= radius[:, None, None]) & others  # (B, P, P)
    coverage = within.sum(-1).to(embeddings.dtype) / (pool - 1)  # (B, P)
    features = torch.stack([mean_similarity, typicality, coverage], dim=-1)  # (B, P, 3)
    centred = features - features.mean(1, keepdim=True)
    return centred / (centred.std(1, unbiased=False, keepdim=True) + STANDARDISE_EPS)


def with_pool_features(pool, embedding_size):
    """The selector's input (B, P, D') with the pool features of its first ``embedding_size`` columns (the image
    embedding; Age/Sex/Laterality, if any, follow it) appended: (B, P, D' + POOL_FEATURE_SIZE)."""
    return torch.cat([pool, pool_features(pool[..., :embedding_size])], dim=-1)
