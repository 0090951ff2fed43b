"""One rule for every command (utils/output_location.py): no output may be an input or a file an input implies
(the HDF5 beside a CSV, a run folder's own files), and a bad --out is one line."""
import os

import pytest

import classify_xrays
import select_xrays
from tests.conftest import run_main
from tests.medselect_helpers import DIM, memoryless_selector, write_checkpoint, write_pool
from tests.test_plots import write_metrics
from utils import plots
from utils.output_location import implied_files


def last_error(code, err):
    assert code == 2, err
    assert err.count("error: ") == 1 and "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder)) if (folder / name).is_file()}


@pytest.fixture
def run_folder(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    write_metrics(folder)
    (folder / "best.pt").write_bytes(b"weights")
    (folder / "config.json").write_text("{}")
    return folder


@pytest.mark.parametrize("name", ["metrics.csv", "best.pt", "config.json"])
def test_plots_never_replaces_a_file_of_the_run(run_folder, name, capsys):
    before = snapshot(run_folder)
    line = last_error(*run_main(plots.main, [run_folder, "--out", run_folder / name], capsys)[::2])
    assert line == f"error: --out {run_folder / name}: is a file of the run folder input (DIR {run_folder}); choose " \
        "another name"
    assert snapshot(run_folder) == before


def test_plots_out_problems_are_one_line(run_folder, tmp_path, capsys):
    line = last_error(*run_main(plots.main, [run_folder, "--out", tmp_path], capsys)[::2])
    assert line == f"error: --out {tmp_path}: is a folder; give a PNG file name"
    missing = tmp_path / "missing" / "c.png"
    line = last_error(*run_main(plots.main, [run_folder, "--out", missing], capsys)[::2])
    assert line == f"error: --out {missing}: folder {missing.parent} does not exist"
    code, _, err = run_main(plots.main, [run_folder, "--out", tmp_path / "curves.png"], capsys)  # still allowed
    assert code == 0 and (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG", err


def test_plots_into_a_read_only_folder_is_one_line(run_folder, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    line = last_error(*run_main(plots.main, [run_folder, "--out", folder / "c.png"], capsys)[::2])
    assert "cannot write there (no permission" in line


def test_the_hdf5_beside_an_input_csv_is_never_an_output(tmp_path, capsys):
    csv_path, frame, _ = write_pool(tmp_path / "data")
    hdf5 = os.path.splitext(csv_path)[0] + ".hdf5"
    embeddings = open(hdf5, "rb").read()
    checkpoint = write_checkpoint(tmp_path / "sel.pt", memoryless_selector(DIM), {"UNLABELED_POOL_SIZE": 100})
    code, _, err = run_main(select_xrays.main, ["--checkpoint", checkpoint, "--pool_csv", csv_path, "-k", 3,
                                                "--out", hdf5, "--overwrite"], capsys)
    assert last_error(code, err) == (f"error: --out {hdf5}: is the embeddings file beside the pool input (--pool_csv "
                                     f"{csv_path}); choose another name")
    labeled = tmp_path / "labeled.csv"
    frame.iloc[:6][["Path"]].assign(Edema=[1, 0, 1, 0, 1, 0]).to_csv(labeled, index=False)
    code, _, err = run_main(classify_xrays.main, ["--labeled", labeled, "--label_column", "Edema", "--unlabeled",
                                                  csv_path, "--out", hdf5, "--overwrite"], capsys)
    assert f"is the embeddings file beside the unlabeled input (--unlabeled {csv_path})" in last_error(code, err)
    assert open(hdf5, "rb").read() == embeddings


def test_implied_files(tmp_path, run_folder):
    assert implied_files(str(tmp_path / "a.csv")) == [(str(tmp_path / "a.hdf5"), "the embeddings file beside")]
    assert implied_files(str(tmp_path / "a.csv"), embeddings=False) == []
    (run_folder / "model_epoch1_iter30").write_bytes(b"w")
    (run_folder / "notes.txt").write_text("mine")
    names = [os.path.basename(p) for p, _ in implied_files(str(run_folder / "best.pt"))]
    assert names == ["best.pt", "config.json", "metrics.csv", "model_epoch1_iter30"]
