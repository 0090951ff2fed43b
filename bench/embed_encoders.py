"""Embedding speed of every encoder side by side, in one run: MoCo-CXR, torchxrayvision, timm.

    python3 bench/embed_encoders.py                   # the defaults below, on the CPU
    python3 bench/embed_encoders.py --device cuda     # the same on a GPU
    python3 bench/embed_encoders.py --docs_fragment docs/results/embed_encoders.md

One set of synthetic CheXpert-small-like grey JPEGs (320 x 390, NOT real X-rays), then one encoder after
the other, each timed by bench/embed.py's own stage timings and one xray_to_hdf5.py run (--decoder pil):
MoCo-CXR (resnet18), torchxrayvision's densenet121-res224-all and resnet50-res512-all, timm's
vit_small_patch16_224, and MoCo-CXR again, so that a change in the machine's load during the run shows
as a difference between MoCo-CXR's first and last rows. All with random weights (models/random_weights.py,
as scripts/make_random_encoder_weights.py writes them): the speed is that of the real files.

Columns: the model's input (C x H x W) and embedding size D; the model's forward pass in ms per image
(batches of --batch_size, fp32, channels-last, all threads); "x MoCo-CXR", that time divided by the mean
of MoCo-CXR's two runs; the model's share of the sum of all stages run one image after another; what one
DataLoader worker does per image, in one thread as a worker runs it: decode, then the encoder's own
resize, crop, scaling and collate, and how many images per second that is for one worker; and the
images/s xray_to_hdf5.py logs with --num_workers --workers (model loading excluded). Results also go
to bench/results/embed_encoders.json; with --docs_fragment the table to a docs fragment.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import embed  # noqa: E402
from utils.device import resolve_device  # noqa: E402
from utils.errors import run_cli  # noqa: E402
from utils.results_fragment import command_line, machine_description, write_fragment  # noqa: E402

# (row name, bench/embed.py options choosing the encoder), in the order they run: MoCo-CXR first and last.
ENCODER_RUNS = (
    ("MoCo-CXR resnet18 (first run)", ["--encoder", "moco"]),
    ("torchxrayvision densenet121-res224-all",
     ["--encoder", "torchxrayvision", "--weights", "densenet121-res224-all"]),
    ("torchxrayvision resnet50-res512-all", ["--encoder", "torchxrayvision", "--weights", "resnet50-res512-all"]),
    ("timm vit_small_patch16_224", ["--encoder", "timm", "--model", "vit_small_patch16_224"]),
    ("MoCo-CXR resnet18 (last run)", ["--encoder", "moco"]),
)
DECODE = "decode (PIL)"  # the first worker stage of every encoder's PIL path


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_images", type=int, default=128,
                        help="rows each xray_to_hdf5.py run embeds (default 128)")
    parser.add_argument("--unique", type=int, default=64,
                        help="distinct synthetic files, listed again up to --num_images; the stages are timed on "
                             "all of them (default 64)")
    parser.add_argument("--batch_size", type=int, default=32, help="images per forward pass (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per stage (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="xray_to_hdf5.py --num_workers (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--skip_end_to_end", action="store_true", help="time the stages only")
    parser.add_argument("--work", default=None, help="folder for the generated files (default: a temporary one)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "embed_encoders.json"),
                        help="JSON file for the results (default bench/results/embed_encoders.json)")
    parser.add_argument("--docs_fragment", metavar="FILE",
                        help="also write the table as a docs fragment (docs/results/embed_encoders.md for "
                             "docs/performance.md; then make docs-numbers). Default: none")
    return parser


def embed_options(args, encoder_options):
    """bench/embed.py's arguments for one encoder's run with this comparison's shared settings."""
    argv = [*encoder_options, "--num_images", args.num_images, "--unique", args.unique, "--stage_images",
            args.unique, "--batch_size", args.batch_size, "--repeats", args.repeats, "--device", args.device,
            "--decoder", "pil", "--workers", args.workers]
    return embed.get_args_parser().parse_args([str(a) for a in argv])


def summarize(name, encoder, stages, end_to_end):
    """One row of the comparison from bench/embed.py's stage timings (PIL path) and xray_to_hdf5.py's run."""
    path = "pil" if "pil" in stages["paths"] else next(iter(stages["paths"]))
    ms = stages["ms"]
    workers = stages["workers"][path]
    return {"name": name, "encoder": encoder, "model_input": stages["model_input"], "dim": stages["dim"],
            "model_ms": ms[stages["model_stage"]], "stages_ms": sum(ms[s] for s in stages["paths"][path]),
            "decode_ms": ms[DECODE], "after_decode_ms": sum(ms[s] for s in workers if s != DECODE),
            "worker_stages": workers, "images_per_s": None if end_to_end is None else end_to_end["images_per_s"],
            "stages": stages, "end_to_end": end_to_end}


def encoders_table(rows, workers):
    """The comparison as Markdown table lines; "x MoCo-CXR" divides by the mean of the MoCo-CXR rows."""
    moco_ms = statistics.mean(r["model_ms"] for r in rows if r["encoder"] == "moco")
    lines = ["| encoder (random weights) | model input | D | model forward, ms / image | × MoCo-CXR | "
             "model's share of the stages | worker: decode, ms / image | worker: resize, crop, scale, collate, "
             f"ms / image | one worker, images/s | `xray_to_hdf5.py` --num_workers {workers}, images/s |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        worker_ms = r["decode_ms"] + r["after_decode_ms"]
        end_to_end = "" if r["images_per_s"] is None else f"{r['images_per_s']:.1f}"
        share = 100 * r["model_ms"] / r["stages_ms"]
        lines.append(f"| {r['name']} | {' × '.join(map(str, r['model_input']))} | {r['dim']} | "
                     f"{r['model_ms']:.1f} | {r['model_ms'] / moco_ms:.2f} | {share:.1f} % | {r['decode_ms']:.2f} | "
                     f"{r['after_decode_ms']:.2f} | {1000 / worker_ms:.0f} | {end_to_end} |")
    return lines


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    device = resolve_device(args.device, local_rank=0)
    work = args.work or tempfile.mkdtemp(prefix="bench_embed_encoders_")
    os.makedirs(work, exist_ok=True)
    load_before = os.getloadavg()
    rows = []
    try:
        first = embed_options(args, ENCODER_RUNS[0][1])
        csv, root, checkpoint = embed.prepare_inputs(first, work)  # the JPEGs and MoCo-CXR's checkpoint, once
        paths = [os.path.join(root, p) for p in pd.read_csv(csv)["Path"].astype(str)]
        print(embed.machine_line(device))
        for number, (name, options) in enumerate(ENCODER_RUNS, 1):
            run_args = embed_options(args, options)
            encoder_args = embed.encoder_options(run_args, checkpoint, work)
            if run_args.encoder == "moco":
                stages = embed.time_stages(paths, checkpoint, run_args, device, work)
            else:
                stages = embed.time_encoder_stages(paths, encoder_args, run_args, device, work)
            end_to_end = None if args.skip_end_to_end else embed.run_xray_to_hdf5(
                csv, root, encoder_args, run_args, device, "pil", args.workers, os.path.join(work, "encoders.hdf5"))
            rows.append(summarize(name, run_args.encoder, stages, end_to_end))
            print(f"[{number}/{len(ENCODER_RUNS)}] {name}: model {rows[-1]['model_ms']:.1f} ms/image"
                  + ("" if end_to_end is None else f", xray_to_hdf5.py {end_to_end['images_per_s']:.1f} images/s"),
                  flush=True)
        load_after = os.getloadavg()
        shape = embed.image_shape(paths[0]).split(" ")[0]
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    table = encoders_table(rows, args.workers)
    intro = (f"{args.num_images} rows of {len(set(paths))} distinct synthetic {shape} grey JPEGs (NOT real "
             f"X-rays), batch {args.batch_size}, fp32, channels-last; stages: medians of {args.repeats} passes after "
             "a warm-up, a worker's in one thread; one encoder after the other, in the table's order; 1-minute "
             f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} ({os.cpu_count()} CPUs).")
    print("\n" + intro + "\n\n" + "\n".join(table))
    if args.docs_fragment:
        write_fragment(args.docs_fragment, intro + "\n\n" + "\n".join(table),
                       command_line("bench/embed_encoders.py", argv), machine_description(device))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), "machine": embed.machine_line(device), "load_average_before": load_before,
                   "load_average_after": load_after, "encoders": rows}, f, indent=2)
    print(f"results saved to {args.out}")


if __name__ == "__main__":
    run_cli(main)
