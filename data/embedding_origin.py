"""Which encoder made a file of embeddings, so that embeddings of different encoders are never mixed.

xray_to_hdf5.py records the encoder in each HDF5 file's attributes
(``encoder``, ``model``, ``weights``, ``weights_sha256``; files of MoCo-CXR made
before other encoders existed have ``checkpoint_file``, ``checkpoint_sha256``
and ``arch`` instead), and run_selector.py records the origin of its training
embeddings in its checkpoints. Distances between embeddings of two encoders
mean nothing, so a run that would combine them (train with val, positives with
normals, a selector with a pool) is refused. Files without these attributes
(the original code's) have no known origin and are never refused.
"""
from dataclasses import asdict, dataclass, field, fields

from utils.errors import UserError

ORIGIN_KEY = "embedding_origin"  # where run_selector.py stores the origin in config.json and checkpoints


@dataclass(frozen=True)
class EmbeddingOrigin:
    encoder: str             # moco, torchxrayvision or timm (xray_to_hdf5.py --encoder)
    model: str               # the architecture, e.g. resnet18
    weights: str             # file name, torchxrayvision weights name or hub id
    weights_sha256: str = ""  # SHA-256 of the weights file; "" when none was recorded
    source: str = field(default="", compare=False)  # the file this was read from, for messages

    def same_encoder(self, other):
        """Same encoder, architecture and weights (by hash when both have one, else by name)."""
        if (self.encoder, self.model) != (other.encoder, other.model):
            return False
        if self.weights_sha256 and other.weights_sha256:
            return self.weights_sha256 == other.weights_sha256
        return self.weights == other.weights

    def describe(self):
        digest = f", sha256 {self.weights_sha256[:12]}" if self.weights_sha256 else ""
        return f"{self.encoder} {self.model} (weights {self.weights}{digest})"

    def to_dict(self):
        """The origin without ``source``, for config.json and checkpoints."""
        return {k: v for k, v in asdict(self).items() if k != "source"}


def origin_from_attributes(attrs, source):
    """The EmbeddingOrigin recorded in an HDF5 file's attributes (a dict), or None if none was recorded."""
    if attrs.get("encoder"):
        return EmbeddingOrigin(str(attrs["encoder"]), str(attrs.get("model", "")), str(attrs.get("weights", "")),
                               str(attrs.get("weights_sha256", "")), source)
    if attrs.get("checkpoint_sha256"):  # MoCo-CXR files from before the encoder was recorded
        return EmbeddingOrigin("moco", str(attrs.get("arch", "")), str(attrs.get("checkpoint_file", "")),
                               str(attrs["checkpoint_sha256"]), source)
    return None


def origin_from_dict(values, source):
    """The EmbeddingOrigin stored by ``to_dict`` (in a checkpoint), or None for checkpoints without one."""
    if not isinstance(values, dict) or not values.get("encoder"):
        return None
    names = {f.name for f in fields(EmbeddingOrigin)} - {"source"}
    return EmbeddingOrigin(**{k: str(v) for k, v in values.items() if k in names}, source=source)


def check_same_encoder(first, second):
    """Refuse two origins (EmbeddingOrigin or None) from different encoders; unknown ones pass."""
    if first is None or second is None or first.same_encoder(second):
        return
    raise UserError(f"{first.source} holds embeddings of {first.describe()} but {second.source} of "
                    f"{second.describe()}; embeddings of different encoders cannot be mixed: embed every file "
                    "with the same encoder (xray_to_hdf5.py --encoder ...)")


def known_origin(*origins):
    """The first origin that is known, or None."""
    return next((o for o in origins if o is not None), None)
