"""Messages that misled: each case as a user met it, and the one line it now gives."""
import errno
import re
import socket

import numpy as np
import pandas as pd
import pytest

import run_selector
from data.csv_hdf5 import read_csv, read_embeddings_beside
from data.embedding_writer import write_embeddings
from data.labels import numeric_labels
from models.checkpoint import load_checkpoint
from models.moco_encoder import read_moco_state_dict
from tests.conftest import TINY_SETTINGS, run_main, tiny_data  # noqa: F401 (a fixture)
from utils.errors import UserError


def write_csv_text(path, text):
    path.write_text(text)
    return str(path)


def test_a_semicolon_csv_names_the_separator_and_the_columns(tmp_path):
    csv = write_csv_text(tmp_path / "x.csv", "Path;Age;Sex\na.jpg;30;F\n")
    with pytest.raises(UserError) as refusal:
        read_csv(csv)
    assert str(refusal.value) == (f"{csv}: columns are separated by ';', not commas (found 'Path', 'Age', 'Sex'); "
                                  "save it as a comma-separated CSV")
    tabs = write_csv_text(tmp_path / "t.csv", "Path\tAge\na.jpg\t30\n")
    with pytest.raises(UserError, match=r"separated by '\\t', not commas \(found 'Path', 'Age'\)"):
        read_csv(tabs)
    assert list(read_csv(write_csv_text(tmp_path / "ok.csv", "Path,Age\na.jpg,3\n")).columns) == ["Path", "Age"]


def test_an_embedding_size_mismatch_names_every_file_with_its_size(tmp_path):
    csvs = []
    for name, dim in (("val_pos", 6), ("val_norm", 4)):
        csvs.append(write_csv_text(tmp_path / f"{name}.csv", "Path\na.jpg\nb.jpg\n"))
        write_embeddings(str(tmp_path / f"{name}.hdf5"), np.ones((2, dim), np.float32), {})
    with pytest.raises(UserError) as refusal:
        read_embeddings_beside(csvs, [2, 2])
    assert str(refusal.value) == (f"embeddings of different sizes: {tmp_path / 'val_pos.hdf5'} 6, "
                                  f"{tmp_path / 'val_norm.hdf5'} 4 (all files of a run must come from the same "
                                  "encoder)")


@pytest.mark.parametrize("read", [load_checkpoint, read_moco_state_dict])
def test_a_csv_given_as_a_checkpoint_is_named_a_text_file(tmp_path, read):
    csv = write_csv_text(tmp_path / "train_pos.csv", "Path,Age\na.jpg,3\n")
    with pytest.raises(UserError) as refusal:
        read(csv)
    message = str(refusal.value)
    assert "a text file, not a PyTorch file (it begins 'Path,Age')" in message and "\n" not in message
    assert "weights_only" not in message


def test_a_csv_given_as_timm_weights_is_named_a_text_file(tmp_path):
    timm = pytest.importorskip("timm")
    from models.encoders.timm_backbone import read_weights
    csv = write_csv_text(tmp_path / "w.csv", "Path,Age\na.jpg,3\n")
    with pytest.raises(UserError) as refusal:
        read_weights(timm, csv)
    assert str(refusal.value) == f"--weights {csv}: not a readable weights file (a text file, not a PyTorch file " \
                                 "(it begins 'Path,Age'))"


def test_offline_hub_weights_fail_at_once(monkeypatch):
    from models.encoders import timm_backbone

    def no_network(address, timeout=None):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    class NeverCalled:
        class models:
            @staticmethod
            def load_state_dict_from_hf(hub_id):
                raise AssertionError("the hub was asked although it cannot be reached (it retries for a minute)")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(UserError) as refusal:
        timm_backbone.read_weights(NeverCalled, "hf-hub:org/model")
    assert str(refusal.value).startswith("--weights hf-hub:org/model: cannot reach huggingface.co (Network is "
                                         "unreachable); without internet, download the weights file")


def test_a_damaged_cached_torchxrayvision_file_is_named(tmp_path):
    xrv = pytest.importorskip("torchxrayvision")
    from models.encoders import xrv as xrv_encoder
    name = "densenet121-res224-all"
    url = xrv.models.model_urls[name]["weights_url"]
    cached = tmp_path / url.rsplit("/", 1)[-1]
    cached.write_bytes(b"\x80\x02half a download")
    with pytest.raises(UserError) as refusal:
        xrv_encoder.load(name, weights_dir=str(tmp_path))
    assert str(refusal.value).startswith(f"--weights {name}: the cached file {cached} cannot be read (")
    assert str(refusal.value).endswith("it is probably damaged (an interrupted download): delete it to download it "
                                       "again")


def test_a_bad_label_is_shown_as_written_not_as_numpy(tmp_path):
    frame = pd.DataFrame({"Path": ["a", "b", "c"], "Edema": [1.0, 2.0, 0.0]})
    with pytest.raises(UserError) as refusal:
        numeric_labels(frame, ["Edema"], "x.csv")
    assert str(refusal.value).startswith("x.csv: column 'Edema' row 1 is 2.0; allowed values")


def test_the_finished_progress_bar_is_printed_once(tiny_data, tmp_path, capsys):  # noqa: F811
    code, _, err = run_main(run_selector.main, [*tiny_data, "--out", tmp_path / "run",
                                                *[a for s in TINY_SETTINGS for a in ("--set", s)]], capsys)
    assert code == 0, err
    assert len(re.findall(r"meta-training: 100%", err)) == 1, err
