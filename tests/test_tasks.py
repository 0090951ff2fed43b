import numpy as np
import pandas as pd
import pytest

from data.csv_hdf5 import hdf5_path_for
from data.synthetic import write_pair
from data.tasks import FixedTaskSet, TaskSampler, TaskShape, TRAIN_STREAM, VALIDATION_STREAM
from data.xray_table import load_xray_table
from tests.conftest import write_tiny_split
from utils.config import apply_overrides, default_config
from utils.errors import UserError

CONDITIONS = ["Consolidation", "Lung Opacity", "Pleural Effusion"]
SHAPE = TaskShape(pool_size=20, pool_positives=8, query_size=10, query_positives=3)


@pytest.fixture
def table(tmp_path):
    pos_csv, norm_csv = write_tiny_split(tmp_path, "split")
    return load_xray_table(pos_csv, norm_csv, CONDITIONS)


def test_task_contents(table, tmp_path):
    sampler = TaskSampler(table, CONDITIONS, SHAPE, seed=3, stream=TRAIN_STREAM)
    frame = pd.read_csv(tmp_path / "split_pos.csv")
    for i in range(30):
        condition, pool, pool_labels, query, query_labels = sampler.task_arrays(i)
        assert pool.shape == (20,) and query.shape == (10,)
        assert pool_labels.sum() == 8 and query_labels.sum() == 3
        assert len(set(pool)) == 20 and len(set(query)) == 10
        assert not set(pool) & set(query), "pool and query overlap"
        for rows, labels in ((pool, pool_labels), (query, query_labels)):
            positives, normals = rows[labels == 1], rows[labels == 0]
            # Positives are positive-CSV rows labelled 1 or -1 for the task's condition; normals the normal CSV.
            assert (positives < table.num_positive_csv_rows).all()
            assert frame.loc[positives, CONDITIONS[condition]].isin([1.0, -1.0]).all()
            assert (normals >= table.num_positive_csv_rows).all()
            assert (normals < table.num_positive_csv_rows + table.num_normal_rows).all()
        # Shuffled: labels are not sorted (a sorted pool of 8 ones then 12 zeros would be suspicious every time).
    assert len({tuple(sampler.task_arrays(i)[2]) for i in range(10)}) > 1


def test_tasks_are_pure_functions_of_seed_and_index(table):
    a = TaskSampler(table, CONDITIONS, SHAPE, seed=5, stream=TRAIN_STREAM)
    b = TaskSampler(table, CONDITIONS, SHAPE, seed=5, stream=TRAIN_STREAM)
    batch = a.draw_arrays([7, 3, 11])
    for j, i in enumerate([7, 3, 11]):  # the same whatever batch the task is drawn in
        for column, value in zip(batch, b.task_arrays(i)):
            np.testing.assert_array_equal(column[j], value)
    assert not np.array_equal(a.task_arrays(1)[1], a.task_arrays(2)[1])
    other_seed = TaskSampler(table, CONDITIONS, SHAPE, seed=6, stream=TRAIN_STREAM)
    assert not np.array_equal(a.task_arrays(1)[1], other_seed.task_arrays(1)[1])
    other_stream = TaskSampler(table, CONDITIONS, SHAPE, seed=5, stream=VALIDATION_STREAM)
    assert not np.array_equal(a.task_arrays(1)[1], other_stream.task_arrays(1)[1])


def test_every_condition_is_drawn(table):
    sampler = TaskSampler(table, CONDITIONS, SHAPE, seed=0, stream=TRAIN_STREAM)
    fixed = FixedTaskSet(sampler, 60)
    counts = np.bincount(fixed.condition_ids(), minlength=3)
    assert (counts > 5).all()
    batches = list(fixed.batches(25))
    assert [len(b) for b in batches] == [25, 25, 10]
    np.testing.assert_array_equal(batches[1].pool_rows[3].numpy(), sampler.task_arrays(28)[1])


def test_uncertain_labels_count_as_positive(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"Path": [f"p{i}.jpg" for i in range(30)],
                          "Edema": [-1.0] * 12 + [1.0] * 3 + [np.nan] * 10 + [0.0] * 5})
    write_pair(frame, rng.normal(size=(30, 4)).astype(np.float32), str(tmp_path / "pos.csv"))
    write_pair(pd.DataFrame({"Path": [f"n{i}.jpg" for i in range(20)]}),
               rng.normal(size=(20, 4)).astype(np.float32), str(tmp_path / "norm.csv"))
    table = load_xray_table(str(tmp_path / "pos.csv"), str(tmp_path / "norm.csv"), ["Edema"])
    np.testing.assert_array_equal(table.positive_rows["Edema"], np.arange(15))
    # A condition coded only -1 in a task still works (the original crashed).
    shape = TaskShape(pool_size=10, pool_positives=5, query_size=6, query_positives=3)
    _, pool, labels, _, _ = TaskSampler(table, ["Edema"], shape, 0, 0).task_arrays(0)
    assert (pool[labels == 1] < 15).all()


def test_too_few_positives_names_condition_and_counts(table):
    big = TaskShape(pool_size=200, pool_positives=100, query_size=10, query_positives=5)
    with pytest.raises(UserError, match=r"'Consolidation' has \d+ positive.*needs 105 \(100 in the pool \+ 5"):
        TaskSampler(table, CONDITIONS, big, 0, 0)


def test_too_few_normals(table):
    shape = TaskShape(pool_size=80, pool_positives=20, query_size=10, query_positives=5)
    with pytest.raises(UserError, match=r"60 normal X-ray\(s\), but one task needs 65"):
        TaskSampler(table, CONDITIONS, shape, 0, 0)


def test_query_with_one_class_refused():
    with pytest.raises(UserError, match="both classes"):
        apply_overrides(default_config(), ["QUERY_SET_SIZE=10", "QUERY_POS_FRAC=1.0"])
    with pytest.raises(UserError, match="both classes"):
        apply_overrides(default_config(), ["QUERY_SET_SIZE=10", "QUERY_POS_FRAC=0.0"])


def test_hdf5_beside_csv():
    assert hdf5_path_for("/a/b/train_pos.csv") == "/a/b/train_pos.hdf5"


def test_selector_input_gathers_embeddings_then_asl(tmp_path):
    pos_csv, norm_csv = write_tiny_split(tmp_path, "split")
    table = load_xray_table(pos_csv, norm_csv, CONDITIONS, use_asl=True)
    frames = pd.concat([pd.read_csv(pos_csv), pd.read_csv(norm_csv)], ignore_index=True)
    rows = np.array([[0, 5, 170], [219, 3, 3]])
    expected_asl = np.stack([(frames["Sex"] == "Female").astype(float), (frames["Age"] - 60.33) / 17.92,
                             (frames["Frontal/Lateral"] == "Frontal").astype(float)], axis=1)[rows]
    import torch
    for reuse in (False, True, True):  # the reused buffer gives the same values every time
        got = table.selector_input(torch.from_numpy(rows), reuse_buffer=reuse).numpy()
        np.testing.assert_array_equal(got[..., :8], table.embeddings.numpy()[rows])
        np.testing.assert_allclose(got[..., 8:], expected_asl, rtol=1e-6)
    np.testing.assert_array_equal(table.classifier_input(torch.from_numpy(rows)).numpy(),
                                  table.embeddings.numpy()[rows])
