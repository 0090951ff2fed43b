"""data/planted.py plants what bench/selector_options.py says it does (docs/evaluation.md, selector options)."""
import numpy as np

from data.planted import planted_split
from data.synthetic import synthetic_centres

CONDITIONS = ["A", "B", "C"]


def cosine(a, b):
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)) @ (b / np.linalg.norm(b, axis=-1, keepdims=True)).T


def test_bursts_are_near_copies_of_one_patient_with_its_labels():
    rng = np.random.default_rng(0)
    pos, pos_emb, norm, norm_emb = planted_split(CONDITIONS, synthetic_centres(16, rng, 3), rng, num_positive=50,
                                                 num_normal=40, positive_bursts=2, normal_bursts=3, burst_size=5)
    assert (len(pos), len(norm)) == (50 + 2 * 5, 40 + 3 * 5)
    for frame, embeddings, bursts in ((pos, pos_emb, 2), (norm, norm_emb, 3)):
        patients = frame["Path"].str.extract(r"/(burst-patient\d+)/")[0]
        assert patients.notna().sum() == bursts * 5 and patients.dropna().value_counts().tolist() == [5] * bursts
        for patient in patients.dropna().unique():
            rows = np.flatnonzero(patients == patient)
            assert cosine(embeddings[rows], embeddings[rows]).min() > 0.99  # near-copies
            singles = np.flatnonzero(patients.isna())
            assert cosine(embeddings[rows[:1]], embeddings[singles]).max() < 0.99  # no single is a copy
            assert frame.iloc[rows][CONDITIONS].nunique(dropna=False).max() == 1  # the same labels
        assert frame["Path"].is_unique


def test_normals_are_denser_than_positives_and_sites_differ_per_split():
    rng = np.random.default_rng(1)
    centres = synthetic_centres(16, rng, 3)
    splits = [planted_split(CONDITIONS, centres, rng, num_positive=200, num_normal=200, positive_bursts=0,
                            normal_bursts=0) for _ in range(2)]
    _, pos_emb, _, norm_emb = splits[0]
    spread = [np.linalg.norm(e - e.mean(0), axis=1).mean() for e in (pos_emb, norm_emb)]
    assert spread[1] < spread[0]
    shift = np.linalg.norm(splits[0][3].mean(0) - splits[1][3].mean(0))  # normals of two splits: other sites
    assert shift > 0.5 * np.linalg.norm(splits[0][3].std(0))
