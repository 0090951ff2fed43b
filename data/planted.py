"""SYNTHETIC data whose right selection needs the relations inside a pool (bench/selector_options.py).

Not X-rays: random vectors in MedSelect's file formats, built on data/synthetic.py's structure (normals
around one centre, each condition's positives moved towards one of its sub-types). Three things are planted:

1. **Near-duplicate bursts**: a few patients are imaged many times. Each burst is one synthetic X-ray
   repeated ``burst_size`` times with a small jitter and the same labels (Paths of one patient, several
   studies). A pool then holds several copies of one patient, and every label spent on a second copy is
   wasted. A single embedding does not tell that it belongs to a burst; only its near-copies in the same
   pool do.
2. **A dense normal majority beside sparse positives**: normals scatter tightly (``normal_noise``),
   positives widely (``positive_noise`` plus their sub-type offsets), and the benchmark's pools hold few
   positives (UNLABELED_POS_FRAC 0.25), so K random labels often catch one positive or none.
3. **A site shift per split**: every X-ray comes from one of ``sites`` acquisition sites, each adding its
   own offset to the embedding, and each split (train, val, test) has sites of its own. Where the normals
   lie therefore differs between meta-training and meta-test: a selector that memorised positions does not
   carry over, while the relations inside a pool (the dense normals, the bursts) do.
"""
import os

import numpy as np
import pandas as pd

from data.synthetic import SPLITS, SYNTHETIC_NOTE, synthetic_centres, synthetic_split, write_pair

PLANTED_NOTE = (SYNTHETIC_NOTE + "; planted near-duplicate bursts, dense normals, a site shift per split "
                "(data/planted.py)")


def planted_split(conditions, centres, rng, num_positive=500, num_normal=300, positive_bursts=6,
                  normal_bursts=4, burst_size=40, positive_noise=1.0, normal_noise=0.4, burst_jitter=0.05,
                  sites=3, site_offset=1.5):
    """(positive frame, positive embeddings, normal frame, normal embeddings) of one split, with every plant.

    ``num_positive`` / ``num_normal`` single X-rays, then ``positive_bursts`` / ``normal_bursts`` patients
    imaged ``burst_size`` times each (a burst copies one more X-ray of the class, labels included).
    """
    dim = centres[0].shape[0]
    pos, pos_emb, norm, _ = synthetic_split(num_positive + positive_bursts, num_normal + normal_bursts, dim, rng,
                                            centres=centres, conditions=conditions, noise=positive_noise)
    norm_emb = centres[0] + normal_noise * rng.normal(size=(len(norm), dim))  # denser than the positives
    # each patient at one site: the offset is added before a burst copies its patient
    offsets = site_offset * rng.normal(size=(sites, dim)) / np.sqrt(dim) * np.linalg.norm(centres[0])
    pos_emb = pos_emb + offsets[rng.integers(sites, size=len(pos))]
    norm_emb = norm_emb + offsets[rng.integers(sites, size=len(norm))]
    pos, pos_emb = _with_bursts(pos, pos_emb, positive_bursts, burst_size, burst_jitter, rng)
    norm, norm_emb = _with_bursts(norm, norm_emb, normal_bursts, burst_size, burst_jitter, rng)
    return pos, pos_emb.astype(np.float32), norm, norm_emb.astype(np.float32)


def _with_bursts(frame, embeddings, bursts, burst_size, jitter, rng):
    """The last ``bursts`` rows each replaced by ``burst_size`` near-copies (one patient, several studies)."""
    singles = len(frame) - bursts
    seeds = np.repeat(np.arange(singles, len(frame)), burst_size)  # (bursts * burst_size,) row copied
    scale = np.linalg.norm(embeddings, axis=1).mean() / np.sqrt(embeddings.shape[1])
    copies = embeddings[seeds] + jitter * scale * rng.normal(size=(len(seeds), embeddings.shape[1]))
    burst_frame = frame.iloc[seeds].reset_index(drop=True)
    study = np.tile(np.arange(burst_size), bursts)
    burst_frame["Path"] = [path.replace("/study1/", f"/study{s + 1}/").replace("/patient", "/burst-patient")
                           for path, s in zip(burst_frame["Path"], study)]
    return (pd.concat([frame.iloc[:singles], burst_frame], ignore_index=True),
            np.concatenate([embeddings[:singles], copies]))


def write_planted_dataset(out, conditions, dim=32, seed=0, **split_options):
    """Write {train,val,test}_{pos,norm}.csv/.hdf5 into ``out`` (sites differ per split, the condition centres
    are shared); returns {"train_pos": path, ...}."""
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = synthetic_centres(dim, rng, len(conditions))
    paths = {}
    for split in SPLITS:
        pos, pos_emb, norm, norm_emb = planted_split(conditions, centres, rng, **split_options)
        for kind, frame, embeddings in (("pos", pos, pos_emb), ("norm", norm, norm_emb)):
            paths[f"{split}_{kind}"] = os.path.join(out, f"{split}_{kind}.csv")
            write_pair(frame, embeddings, paths[f"{split}_{kind}"])
    with open(os.path.join(out, "README.txt"), "w") as f:
        f.write(PLANTED_NOTE + "\n")
    return paths
