"""The MedSelect selector: a bidirectional LSTM that scores every X-ray of a pool (the paper's Methods: selector)."""
import torch
import torch.nn as nn


class LSTMSelector(nn.Module):
    """Reads the unlabeled pool as a sequence and gives one selection logit per X-ray.

    The attribute names ``LSTM`` and ``linear`` are part of the checkpoint format:
    they make the parameter names ``LSTM.weight_ih_l0`` ... ``linear.bias`` of the
    original code, so its checkpoints load unchanged and ours load into it.

    Args:
        input_size: embedding size D (D + 3 when Age/Sex/Laterality are appended).
        hidden_size: hidden units per direction.
        num_layers: stacked BiLSTM layers.
    """

    def __init__(self, input_size, hidden_size=256, num_layers=1):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.LSTM = nn.LSTM(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
                            batch_first=True, bidirectional=True)
        self.linear = nn.Linear(2 * hidden_size, 1)

    def forward(self, pool):
        """pool: (batch, pool, input_size) -> logits: (batch, pool)."""
        features, _ = self.LSTM(pool)  # (batch, pool, 2 * hidden)
        return self.linear(features).squeeze(-1)  # (batch, pool)


def initial_selector(input_size, seed, hidden_size=256, num_layers=1):
    """The selector as meta-training with ``--seed seed`` starts it, before any update.

    PyTorch's default initialisation drawn right after ``torch.manual_seed(seed)``; the global
    random state is restored afterwards. run_selector.py starts from it, and evaluate.py's
    ``medselect-untrained`` rebuilds it to show what training changed.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LSTMSelector(input_size, hidden_size=hidden_size, num_layers=num_layers)
