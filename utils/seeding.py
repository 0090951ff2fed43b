"""One --seed drives every random source; each purpose gets its own independent generator."""
import numpy as np
import torch

# Purposes of the torch generators derived from the run's seed.
SELECTION, RANDOM_BASELINE, VALIDATION_SELECTION = 0, 1, 2
# select_xrays.py (pool order, draws) and classify_xrays.py (bootstrap of the AUROC).
SELECT_XRAYS, CLASSIFY_BOOTSTRAP = 3, 4
TEST_SELECTION, BASELINE_SELECTION, EVALUATION_BOOTSTRAP = 5, 6, 7  # evaluate.py and models/baselines.py
SUBSAMPLE = 8  # select_xrays.py --subsample: which X-rays of a large pool are considered


def derived_seed(seed, purpose):
    """A 63-bit seed for ``purpose``, independent of the seeds of other purposes."""
    return int(np.random.SeedSequence([seed, purpose]).generate_state(1, dtype=np.uint64)[0]) >> 1


def torch_generator(seed, purpose, device="cpu"):
    return torch.Generator(device=device).manual_seed(derived_seed(seed, purpose))


def resumed_torch_generator(seed, purpose, step, device="cpu"):
    """A generator for ``purpose`` from ``step`` on, for a run resumed on another device type, whose saved
    generator state cannot be set (a CUDA state is not a CPU one): seeded by the seed, purpose and step."""
    seed_63 = int(np.random.SeedSequence([seed, purpose, step]).generate_state(1, dtype=np.uint64)[0]) >> 1
    return torch.Generator(device=device).manual_seed(seed_63)


def seed_everything(seed):
    """Seed torch's global generator (model initialisation); NumPy's global one is never used."""
    torch.manual_seed(seed)
