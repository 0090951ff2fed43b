"""bench/embed_encoders.py's table says what its JSON results say: the encoders in the order they ran,
MoCo-CXR first and last, "× MoCo-CXR" the model time over the mean of MoCo-CXR's two runs, the model's
share of the stages of the path xray_to_hdf5.py --decoder pil runs, and a worker's time per image. The
stage timings are replaced by set numbers (the real ones take minutes), so every value is known here."""
import json
import os

import pytest

from bench import embed, embed_encoders
from tests.conftest import run_main

# model forward ms per image of each run, in ENCODER_RUNS's order: MoCo-CXR drifts from 30 to 50 ms
MODEL_MS = [30.0, 60.0, 200.0, 52.0, 50.0]
MOCO_OTHER = {"decode (PIL)": 0.5, "resize + crop (PIL)": 0.25, "to uint8 tensor + collate (PIL)": 0.25,
              "decode (torchvision, CPU)": 100.0, "resize + crop (torchvision, CPU)": 100.0,  # not on the pil path
              "collate (torchvision, CPU)": 100.0, "normalize (uint8 batch)": 1.0, "HDF5 write": 0.0}
OTHER = {"decode (PIL)": 0.5, "transform": 4.5, "collate": 0.0, "to model input": 1.0, "HDF5 write": 0.0}


@pytest.fixture
def set_timings(monkeypatch):
    runs = iter(MODEL_MS)

    def moco_stages(paths, checkpoint, args, device, work):
        ms = {**MOCO_OTHER, "model": next(runs)}
        pil = ["decode (PIL)", "resize + crop (PIL)", "to uint8 tensor + collate (PIL)", "normalize (uint8 batch)",
               "model", "HDF5 write"]
        tv = ["decode (torchvision, CPU)", "resize + crop (torchvision, CPU)", "collate (torchvision, CPU)",
              "normalize (uint8 batch)", "model", "HDF5 write"]
        return {"ms": ms, "paths": {"pil": pil, "torchvision, CPU": tv},
                "workers": {"pil": pil[:3], "torchvision, CPU": tv[:3]}, "model_stage": "model",
                "model_input": [3, 320, 320], "dim": 512}

    def other_stages(paths, encoder_args, args, device, work):
        ms = {**OTHER, "model": next(runs)}
        return {"ms": ms, "paths": {args.encoder: list(ms)}, "workers": {args.encoder: ["decode (PIL)", "transform",
                                                                                        "collate"]},
                "model_stage": "model", "model_input": [1, 224, 224], "dim": 1024}

    def inputs(args, work):  # the JPEGs only; no checkpoint or weights are needed without real timings
        return embed.write_synthetic_images(args, work), work, None

    monkeypatch.setattr(embed, "prepare_inputs", inputs)
    monkeypatch.setattr(embed, "encoder_options", lambda args, checkpoint, work: [])
    monkeypatch.setattr(embed, "time_stages", moco_stages)
    monkeypatch.setattr(embed, "time_encoder_stages", other_stages)


def table_rows(fragment_text):
    rows = [line.strip("|").split(" | ") for line in fragment_text.splitlines() if line.startswith("| ")]
    header, body = rows[0], rows[2:]  # after the alignment row
    return [dict(zip((h.strip() for h in header), (c.strip() for c in row))) for row in body]


def test_the_table_is_the_json_results_with_moco_first_and_last(tmp_path, capsys, set_timings):
    fragment, out = tmp_path / "embed_encoders.md", tmp_path / "embed_encoders.json"
    code, _, err = run_main(embed_encoders.main, ["--num_images", 3, "--unique", 2, "--repeats", 1,
                                                  "--skip_end_to_end", "--work", tmp_path / "work",
                                                  "--out", out, "--docs_fragment", fragment], capsys)
    assert code in (0, None), err
    text = fragment.read_text()
    assert text.startswith("<!-- made by: python3 bench/embed_encoders.py --num_images 3 ") and "; machine: " in \
        text.splitlines()[0]
    results = json.loads(out.read_text())["encoders"]
    rows = table_rows(text)
    assert [r["encoder (random weights)"] for r in rows] == [name for name, _ in embed_encoders.ENCODER_RUNS]
    assert rows[0]["encoder (random weights)"].startswith("MoCo-CXR") and rows[-1]["encoder (random weights)"] \
        .startswith("MoCo-CXR")
    assert [r["model_ms"] for r in results] == MODEL_MS
    moco_mean = (MODEL_MS[0] + MODEL_MS[-1]) / 2  # 40 ms
    for row, model_ms in zip(rows, MODEL_MS):
        assert float(row["model forward, ms / image"]) == pytest.approx(model_ms)
        assert float(row["× MoCo-CXR"]) == pytest.approx(model_ms / moco_mean, abs=0.005)
    # shares: MoCo-CXR's pil path is 0.5 + 0.25 + 0.25 + 1 + model (its torchvision stages are not on it)
    assert float(rows[0]["model's share of the stages"].rstrip(" %")) == pytest.approx(100 * 30 / 32, abs=0.05)
    assert float(rows[1]["model's share of the stages"].rstrip(" %")) == pytest.approx(100 * 60 / 66, abs=0.05)
    # a worker: MoCo-CXR 0.5 + 0.5 ms = 1000 images/s; the others 0.5 + 4.5 ms = 200 images/s
    assert [r["one worker, images/s"] for r in rows] == ["1000", "200", "200", "200", "1000"]
    assert [r["worker: resize, crop, scale, collate, ms / image"] for r in rows] == ["0.50", "4.50", "4.50",
                                                                                      "4.50", "0.50"]
    assert os.path.isfile(out)
