"""A selector that reads the pool as a set: self-attention over the pool's X-rays (SELECTOR=attention).

The paper's BiLSTM reads the pool as a sequence in a random order, so its logit for an X-ray depends on
where the others happen to stand. Self-attention without positional encoding gives each X-ray's logit
from the whole pool regardless of order (permuting the pool permutes the logits), and every layer can
compare each X-ray with every other: the relations (density, typicality, coverage) that label-free
strategies use are within its reach (docs/training.md#selector-options).
"""
import torch.nn as nn

from models.pool_features import POOL_FEATURE_SIZE, with_pool_features

ATTENTION_WIDTH = 128  # model width after the input projection
ATTENTION_HEADS = 4
ATTENTION_LAYERS = 2
ATTENTION_DROPOUT = 0.0  # REINFORCE's noise is regularisation enough; dropout would also make eval differ from training
INPUT_WEIGHT = "input.weight"  # (width, input_size): tells the input size and width of a stored selector


class AttentionSelector(nn.Module):
    """Input projection, a TransformerEncoder over the pool (no positional encoding), one logit per X-ray.

    Args:
        input_size: what the network reads per X-ray: embedding size (+ 3 with USE_ASL, + 3 pool features).
        width, heads, num_layers: of the encoder.
        pool_features_of: None, or the embedding size D whose columns give the pool features
            (models/pool_features.py), appended before the network.
    """

    def __init__(self, input_size, width=ATTENTION_WIDTH, heads=ATTENTION_HEADS, num_layers=ATTENTION_LAYERS,
                 pool_features_of=None):
        super().__init__()
        self.input_size, self.width, self.heads, self.num_layers = input_size, width, heads, num_layers
        self.pool_features_of = pool_features_of
        self.input = nn.Linear(input_size, width)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=ATTENTION_DROPOUT,
                                           batch_first=True, norm_first=True)
        # enable_nested_tensor only matters with padding masks, which pools never have
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.output = nn.Linear(width, 1)

    def forward(self, pool):
        """pool: (batch, pool, data_input_size) -> logits: (batch, pool)."""
        if self.pool_features_of is not None:
            pool = with_pool_features(pool, self.pool_features_of)  # (batch, pool, input_size)
        return self.output(self.encoder(self.input(pool))).squeeze(-1)  # (batch, pool)

    @property
    def data_input_size(self):
        """The size of the input it is given, without the pool features."""
        return self.input_size - (POOL_FEATURE_SIZE if self.pool_features_of is not None else 0)
