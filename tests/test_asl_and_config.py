import numpy as np
import pandas as pd
import pytest
import torch

from data.asl import append_asl, asl_features
from utils.config import apply_overrides, default_config
from utils.errors import UserError


def test_asl_encoding_by_hand():
    frame = pd.DataFrame({"Sex": ["Female", "Male", "Unknown"], "Age": [60.33, 78.25, 42],
                          "Frontal/Lateral": ["Frontal", "Lateral", "Frontal"]})
    expected = np.array([[1.0, 0.0, 1.0],
                         [0.0, (78.25 - 60.33) / 17.92, 0.0],
                         [0.0, (42 - 60.33) / 17.92, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(asl_features(frame, "x.csv"), expected, rtol=1e-6)


def test_asl_accepts_readme_laterality_name_but_prefers_chexpert():
    frame = pd.DataFrame({"Sex": ["Male"], "Age": [50], "Laterality": ["Frontal"]})
    assert asl_features(frame, "x.csv")[0, 2] == 1.0
    both = frame.assign(**{"Frontal/Lateral": ["Lateral"]})
    assert asl_features(both, "x.csv")[0, 2] == 0.0


def test_asl_missing_columns_and_bad_age():
    with pytest.raises(UserError, match=r"x.csv: USE_ASL needs column\(s\) 'Age', 'Frontal/Lateral'"):
        asl_features(pd.DataFrame({"Sex": ["Male"]}), "x.csv")
    frame = pd.DataFrame({"Sex": ["Male", "Female"], "Age": [50, None], "Frontal/Lateral": ["Frontal"] * 2})
    with pytest.raises(UserError, match="row 1"):
        asl_features(frame, "x.csv")


def test_append_asl_puts_the_embedding_then_sex_age_view_for_numpy_and_torch():
    frame = pd.DataFrame({"Sex": ["Female", "Male", "Female"], "Age": [30, 81, 55],
                          "Frontal/Lateral": ["Lateral", "Frontal", "Frontal"]})
    embeddings = np.arange(12, dtype=np.float32).reshape(3, 4)
    expected = np.column_stack([embeddings, frame["Sex"] == "Female", (frame["Age"] - 60.33) / 17.92,
                                frame["Frontal/Lateral"] == "Frontal"])
    got = append_asl(embeddings, asl_features(frame, "x.csv"), np.empty((3, 7), dtype=np.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    as_torch = append_asl(torch.from_numpy(embeddings), torch.from_numpy(asl_features(frame, "x.csv")),
                          torch.empty(3, 7))
    np.testing.assert_array_equal(as_torch.numpy(), got)


def test_defaults_are_the_spec():
    config = default_config()
    assert (config["UNLABELED_POOL_SIZE"], config["UNLABELED_POS_FRAC"], config["QUERY_SET_SIZE"],
            config["QUERY_POS_FRAC"], config["NUM_META_TRAIN_TASKS"], config["NUM_META_TEST_TASKS"],
            config["LEARNING_RATE"], config["K"], config["NUM_EPOCHS"], config["BATCH_SIZE"],
            config["USE_ASL"]) == (1000, 0.5, 100, 0.5, 10000, 1000, 1e-4, 20, 5, 64, False)
    assert config["HOLD_OUT"] == ["Atelectasis", "Edema"]
    assert set(config["ALL_COND"]) == set(config["HOLD_OUT"]) | set(config["NON_HOLD_OUT"])


def test_overrides_are_type_checked():
    config = apply_overrides(default_config(), ["K=10", "USE_ASL=True", "LEARNING_RATE=1e-3",
                                                "HOLD_OUT=Edema,Atelectasis", "UNLABELED_POS_FRAC=1"])
    assert config["K"] == 10 and config["USE_ASL"] is True and config["LEARNING_RATE"] == 1e-3
    assert config["HOLD_OUT"] == ["Edema", "Atelectasis"] and isinstance(config["UNLABELED_POS_FRAC"], float)
    assert default_config()["K"] == 20  # the defaults are untouched
    for bad, message in [("K=1.5", "--set K: expected an integer, got '1.5'"), ("USE_ASL=maybe", "True or False"),
                         ("LEARNING_RATE=fast", "--set LEARNING_RATE: expected a number, got 'fast'"),
                         ("LEARNING_RATE=1e400", r"--set LEARNING_RATE: expected a finite number, got '1e400' \(read "
                                                 r"as inf\)"),
                         ("LEARNING_RATE=-1e400", "expected a finite number"), ("K", "NAME=VALUE"),
                         ("K=0", "K must be at least 1"), ("UNLABELED_POOL_SIZE=1", "at least 2"),
                         ("K=2000", "larger than UNLABELED_POOL_SIZE")]:
        with pytest.raises(UserError, match=message):
            apply_overrides(default_config(), [bad])
    with pytest.raises(UserError, match="unknown name 'KK'; valid names: .*BATCH_SIZE"):
        apply_overrides(default_config(), ["KK=3"])
