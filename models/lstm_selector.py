"""The MedSelect selector: a bidirectional LSTM that scores every X-ray of a pool (the paper's Methods: selector)."""
import torch
import torch.nn as nn

from models.pool_features import POOL_FEATURE_SIZE, with_pool_features


class LSTMSelector(nn.Module):
    """Reads the unlabeled pool as a sequence and gives one selection logit per X-ray.

    The attribute names ``LSTM`` and ``linear`` are part of the checkpoint format:
    they make the parameter names ``LSTM.weight_ih_l0`` ... ``linear.bias`` of the
    original code, so its checkpoints load unchanged and ours load into it.

    Args:
        input_size: embedding size D (D + 3 when Age/Sex/Laterality are appended).
        hidden_size: hidden units per direction.
        num_layers: stacked BiLSTM layers.
        pool_features_of: None (the paper's), or the embedding size D: the selector then appends to its
            input the pool features of its first D columns (models/pool_features.py, POOL_FEATURES=True),
            and ``input_size`` includes them.
    """

    def __init__(self, input_size, hidden_size=256, num_layers=1, pool_features_of=None):
        super().__init__()
        self.input_size = input_size
        self.pool_features_of = pool_features_of
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.LSTM = nn.LSTM(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
                            batch_first=True, bidirectional=True)
        self.linear = nn.Linear(2 * hidden_size, 1)

    def forward(self, pool):
        """pool: (batch, pool, data_input_size) -> logits: (batch, pool)."""
        if self.pool_features_of is not None:
            pool = with_pool_features(pool, self.pool_features_of)  # (batch, pool, input_size)
        features, _ = self.LSTM(pool)  # (batch, pool, 2 * hidden)
        return self.linear(features).squeeze(-1)  # (batch, pool)

    @property
    def data_input_size(self):
        """The size of the input it is given: embedding size (+ 3 with USE_ASL), without the pool features."""
        return self.input_size - (POOL_FEATURE_SIZE if self.pool_features_of is not None else 0)


def initial_selector(input_size, seed, hidden_size=256, num_layers=1):
    """The selector as meta-training with ``--seed seed`` starts it, before any update.

    PyTorch's default initialisation drawn right after ``torch.manual_seed(seed)``; the global
    random state is restored afterwards. run_selector.py starts from it, and evaluate.py's
    ``medselect-untrained`` rebuilds it to show what training changed.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LSTMSelector(input_size, hidden_size=hidden_size, num_layers=num_layers)
