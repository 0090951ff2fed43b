"""What bench/embed.py prints for the docs (docs/performance.md#embedding-speed), from set timings: the worker
row of its stage table, and the back-to-back --channels_last on/off turns of its end-to-end runs."""
import argparse

from bench import embed


def test_worker_row_sums_the_worker_stages_of_each_path_only(capsys):
    ms = {"decode (PIL)": 3.0, "resize + crop (PIL)": 1.0, "to uint8 tensor + collate (PIL)": 1.0,
          "decode (torchvision, CPU)": 2.0, "resize + crop (torchvision, CPU)": 1.5, "collate (torchvision, CPU)": 0.5,
          "normalize (uint8 batch)": 5.0, "model": 40.0, "HDF5 write": 0.0}
    pil = ["decode (PIL)", "resize + crop (PIL)", "to uint8 tensor + collate (PIL)", "normalize (uint8 batch)",
           "model", "HDF5 write"]
    tv = ["decode (torchvision, CPU)", "resize + crop (torchvision, CPU)", "collate (torchvision, CPU)",
          "normalize (uint8 batch)", "model", "HDF5 write"]
    embed.print_stage_table({"ms": ms, "paths": {"pil": pil, "torchvision, CPU": tv},
                             "workers": {"pil": pil[:3], "torchvision, CPU": tv[:3]}})
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| worker stages"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # pil: 3 + 1 + 1 = 5 ms of 5 + 5 + 40 = 50 ms; torchvision: 2 + 1.5 + 0.5 = 4 ms of 49 ms
    assert cells[2] == "5.00 ms = 200 images/s per worker, 10.0 %"
    assert cells[3] == "4.00 ms = 250 images/s per worker, 8.2 %"


def test_channels_last_turns_compare_on_and_off_of_the_same_turn(monkeypatch, capsys, tmp_path):
    # images/s per run, in the order the runs happen: each turn runs 'on' then 'off'
    speeds = iter([20.0, 10.0,   # turn 1: on faster
                   15.0, 30.0,   # turn 2: off faster
                   25.0, 24.0])  # turn 3: on faster
    calls = []

    def run(csv, root, encoder_args, args, device, decoder, workers, out, channels_last="on"):
        calls.append(channels_last)
        return {"images_per_s": next(speeds), "embedding_s": 1.0, "wall_s": 2.0, "load_average_after": (0.0,) * 3}

    monkeypatch.setattr(embed, "run_xray_to_hdf5", run)
    args = argparse.Namespace(decoder=["pil"], workers=[2], channels_last=["on", "off"], end_to_end_repeats=3,
                              encoder="moco")
    rows = embed.time_end_to_end("x.csv", tmp_path, [], args, "cpu", tmp_path)
    out = capsys.readouterr().out
    assert calls == ["on", "off"] * 3
    assert "--decoder pil, --num_workers 2: --channels_last on was faster than off in 2 of 3 back-to-back turns." in out
    medians = {r["channels_last"]: r["median"]["images_per_s"] for r in rows}
    assert medians == {"on": 20.0, "off": 24.0}
    assert "| --decoder pil --channels_last off | 2 | 24.0 |" in out
