"""Benchmark embedding X-rays (xray_to_hdf5.py): where the time goes per image, and end-to-end images/s.

    python3 bench/embed.py                                      # CheXpert-small-like grey JPEGs (320 x 390), CPU
    python3 bench/embed.py --full_size                          # full-resolution-like JPEGs (2320 x 2828)
    python3 bench/embed.py --device cuda --decoder torchvision  # on a GPU, JPEGs decoded on the GPU
    python3 bench/embed.py --csv CSV --images DIR               # your own images (CSV column 'Path', from DIR)
    python3 bench/embed.py --encoder torchxrayvision            # densenet121-res224-all (--weights NAME)
    python3 bench/embed.py --encoder timm --model vit_small_patch16_224
    python3 bench/embed.py --dicom uncompressed rle jpeg2000    # the same pictures as JPEG and as DICOM files
    python3 bench/embed.py --skip_stages --decoder pil --workers 2 --channels_last on off --end_to_end_repeats 7
    python3 bench/embed_encoders.py                             # MoCo-CXR, torchxrayvision and timm side by side

Encoders other than MoCo-CXR get random weights (models/random_weights.py)
unless --weights names real ones; the speed is the same.

Synthetic images come from data/synthetic_images.py (NOT real X-rays); --unique
distinct files are written and listed again and again up to --num_images rows.
Each stage is timed alone, one image or one batch at a time in this process, over
up to --stage_images distinct images, after a warm-up pass: the median of
--repeats passes, in ms per image. The stages of DataLoader workers run in one
thread, as the workers do; normalising, the model and the write run in the main
process with all its threads. The "share" columns are each stage's
part of the sum of the stages a path runs, serially; the "worker stages" row
is what one DataLoader worker does per image (decode to collate). The end-to-end
rows run xray_to_hdf5.py itself in a fresh process with its default settings,
for each --decoder, --workers and --channels_last, and report the images/s it
logs (model loading excluded); with --channels_last on off they also count the
back-to-back turns that each won. Results also go to bench/results/embed.json,
and with --docs_fragment the printed report to a docs fragment.

--dicom compares inputs instead: the synthetic pictures as JPEGs and as 12-bit DICOM files (MONOCHROME2, a
window over the full range, in each transfer syntax named), decoded one image at a time in one thread
(data.images.decode) and embedded end to end by xray_to_hdf5.py (--decoder pil); with --fragment FILE the table
also goes to that markdown fragment (docs/results/embed_dicom.md for the docs), whose first line names the command
and machine.
"""
import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from data.embedding_writer import EmbeddingWriter  # noqa: E402
from data.images import (MAX_DEFAULT_WORKERS, decode, decode_jpegs, normalize, read_jpeg,  # noqa: E402
                         resize_and_crop, resize_and_crop_tensor, to_uint8_tensor)
from data.synthetic_images import write_xray_image  # noqa: E402
from bench.timing import median_ms  # noqa: E402
from models.encoders import ENCODERS, load_encoder  # noqa: E402
from models.moco_encoder import ARCHITECTURES, load_moco_encoder  # noqa: E402
from models.random_weights import moco_checkpoint, write_timm_weights, write_torchxrayvision_weights  # noqa: E402
from utils.device import resolve_device, set_fp32_arithmetic  # noqa: E402
from utils.results_fragment import run_writing_report  # noqa: E402

SMALL_SIZE = (320, 390)   # (width, height): the usual shape in CheXpert-v1.0-small
FULL_SIZE = (2320, 2828)  # a typical full-resolution CheXpert-v1.0 frontal image
THROUGHPUT = re.compile(r"\(([\d.]+) s, ([\d.]+) images/s\)")  # xray_to_hdf5.py's last log line
DEFAULT_WEIGHTS = {"torchxrayvision": "densenet121-res224-all"}
DEFAULT_TIMM_MODEL = "vit_small_patch16_224"  # a ViT-S/16, the size of many self-supervised chest X-ray encoders
# --dicom: transfer syntax -> pydicom UID (None: uncompressed, Explicit VR Little Endian)
DICOM_SYNTAXES = {"uncompressed": None, "rle": "1.2.840.10008.1.2.5", "jpeg2000": "1.2.840.10008.1.2.4.90"}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", default=None, help="CSV of your own images (column 'Path'); default: generate")
    parser.add_argument("--images", default=None,
                        help="folder that the CSV's relative paths start from; without --csv: embed every .jpg/.jpeg "
                             "/.png in it (default: generate synthetic JPEGs)")
    parser.add_argument("--full_size", action="store_true",
                        help=f"generate full-resolution-like {FULL_SIZE[0]}x{FULL_SIZE[1]} JPEGs instead of "
                             f"{SMALL_SIZE[0]}x{SMALL_SIZE[1]}")
    parser.add_argument("--num_images", type=int, default=None,
                        help="rows to embed (default: 256 on the CPU, 8192 on a GPU; a quarter of that --full_size)")
    parser.add_argument("--unique", type=int, default=None,
                        help="distinct synthetic files, listed again up to --num_images (default 256, 16 --full_size)")
    parser.add_argument("--stage_images", type=int, default=None,
                        help="distinct images the stages are timed on (default: up to 256, 16 --full_size)")
    parser.add_argument("--encoder", choices=ENCODERS, default="moco",
                        help="xray_to_hdf5.py --encoder (default moco); the per-stage table of moco also times "
                             "its torchvision decoder")
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="resnet18",
                        help="encoder of the random-weight MoCo checkpoint (default resnet18)")
    parser.add_argument("--checkpoint", default=None, help="a MoCo checkpoint to use instead (default: random weights)")
    parser.add_argument("--weights", default=None,
                        help="torchxrayvision: weights name (default densenet121-res224-all, random weights unless "
                             "--weights_dir holds the real file); timm: a weights file (default: random weights)")
    parser.add_argument("--weights_dir", default=None, help="torchxrayvision: folder of its weight files")
    parser.add_argument("--model", default=DEFAULT_TIMM_MODEL, help=f"timm: model name (default {DEFAULT_TIMM_MODEL})")
    parser.add_argument("--batch_size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--decoder", nargs="+", choices=("pil", "torchvision"), default=None,
                        help="xray_to_hdf5.py --decoder values for the end-to-end runs (default: both for moco; "
                             "pil, the only one, for the other encoders)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help=f"xray_to_hdf5.py --num_workers values (default: 0, 1, 2 and min({MAX_DEFAULT_WORKERS}, "
                             "CPUs))")
    parser.add_argument("--channels_last", nargs="+", choices=("on", "off"), default=["on"],
                        help="xray_to_hdf5.py --channels_last values for the end-to-end runs (default: on, its "
                             "default; 'on off' compares them turn by turn)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per stage (default 5)")
    parser.add_argument("--end_to_end_repeats", type=int, default=1,
                        help="runs of xray_to_hdf5.py per setting, the settings taking turns; median (default 1)")
    parser.add_argument("--skip_end_to_end", action="store_true", help="time the stages only")
    parser.add_argument("--skip_stages", action="store_true", help="run end to end only (no per-stage table)")
    parser.add_argument("--work", default=None, help="folder for the generated files (default: a temporary one)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "embed.json"),
                        help="JSON file for the results (default bench/results/embed.json)")
    parser.add_argument("--dicom", nargs="*", choices=tuple(DICOM_SYNTAXES), default=None,
                        help="compare JPEG input with the same pictures as DICOM files in these transfer syntaxes "
                             "(no value: uncompressed); synthetic images only")
    parser.add_argument("--fragment", metavar="FILE",
                        help="with --dicom: also write its table as a docs fragment (docs/results/embed_dicom.md for "
                             "docs/embedding.md; then make docs-numbers). Default: none, so that a user's run "
                             "changes no docs")
    parser.add_argument("--docs_fragment", metavar="FILE",
                        help="also write the printed tables as a docs fragment (docs/results/embed.md for "
                             "docs/performance.md; then make docs-numbers). Default: none")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    device = resolve_device(args.device, local_rank=0)  # a bare 'cuda' is cuda:0, as xray_to_hdf5.py names it
    if args.num_images is None:
        args.num_images = (8192 if device.type == "cuda" else 256) // (4 if args.full_size else 1)
    if args.workers is None:
        args.workers = sorted({0, 1, 2, min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1)})
    if args.decoder is None:
        args.decoder = ["pil", "torchvision"] if args.encoder == "moco" else ["pil"]
    if args.encoder != "moco" and args.decoder != ["pil"]:
        raise SystemExit("error: --decoder torchvision is for --encoder moco only")
    if args.skip_stages and args.skip_end_to_end:
        raise SystemExit("error: --skip_stages and --skip_end_to_end together leave nothing to measure")
    args.channels_last = list(dict.fromkeys(args.channels_last))  # 'on on' is 'on'
    if args.dicom is not None:
        if args.csv or args.images:
            raise SystemExit("error: --dicom compares the synthetic pictures; leave out --csv and --images")
        return compare_dicom(args, device, argv)
    work = args.work or tempfile.mkdtemp(prefix="bench_embed_")
    os.makedirs(work, exist_ok=True)
    load_before = os.getloadavg()
    try:
        csv, root, checkpoint = prepare_inputs(args, work)
        encoder_args = encoder_options(args, checkpoint, work)
        paths = [p if os.path.isabs(p) else os.path.join(root, p) for p in pd.read_csv(csv)["Path"].astype(str)]
        print(machine_line(device))
        source = args.csv or (f"the images in {args.images}" if args.images else
                              "synthetic CheXpert-like JPEGs, NOT real X-rays")
        stage_note = "" if args.skip_stages else (
            f"; stages timed on {min(len(set(paths)), args.stage_images or (16 if args.full_size else 256))} "
            f"distinct images, medians of {args.repeats} passes after a warm-up")
        print(f"images: {len(paths)} rows of {source} ({len(set(paths))} distinct files"
              f"{', e.g. ' + image_shape(paths[0]) if paths else ''}); batch {args.batch_size}{stage_note}; "
              f"load average before: {fmt_load(load_before)}" + ("" if args.skip_stages else "\n"))
        if args.skip_stages:
            stages = {"ms": {}, "paths": {}}
        elif args.encoder == "moco":
            stages = time_stages(paths, checkpoint, args, device, work)
        else:
            stages = time_encoder_stages(paths, encoder_args, args, device, work)
        if stages["ms"]:
            print_stage_table(stages)
        end_to_end = [] if args.skip_end_to_end else time_end_to_end(csv, root, encoder_args, args, device, work)
        load_after = os.getloadavg()
        print(f"\nload average before: {fmt_load(load_before)}; after: {fmt_load(load_after)} "
              f"(1, 5, 15 minutes; {os.cpu_count()} CPUs)")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), "machine": machine_line(device), "images": len(paths),
                   "distinct_files": len(set(paths)), "load_average_before": load_before,
                   "load_average_after": load_after, "stages_ms_per_image": stages["ms"],
                   "paths": stages["paths"], "end_to_end": end_to_end}, f, indent=2)
    print(f"results saved to {args.out}")


def prepare_inputs(args, work):
    """(CSV, root of its relative paths, checkpoint): the user's, or generated in ``work``."""
    if args.csv:
        csv, root = args.csv, args.images or os.getcwd()
    elif args.images:
        names = sorted(n for n in os.listdir(args.images) if n.lower().endswith((".jpg", ".jpeg", ".png")))
        if not names:
            raise SystemExit(f"error: --images {args.images}: no .jpg, .jpeg or .png files")
        csv, root = os.path.join(work, "images.csv"), args.images
        pd.DataFrame({"Path": names}).to_csv(csv, index=False)
    else:
        csv, root = write_synthetic_images(args, work), work
    checkpoint = args.checkpoint
    if checkpoint is None and args.encoder == "moco":
        checkpoint = os.path.join(work, f"moco_random_{args.arch}.pth.tar")
        torch.save(moco_checkpoint(args.arch, "mlp", queue_length=1024, share_momentum_encoder=True), checkpoint)
    return csv, root, checkpoint


def encoder_options(args, checkpoint, work):
    """The xray_to_hdf5.py options that choose the encoder; random weights written in ``work`` when none given."""
    if args.encoder == "moco":
        return ["-c", checkpoint]
    if args.encoder == "torchxrayvision":
        weights = args.weights or DEFAULT_WEIGHTS["torchxrayvision"]
        weights_dir = args.weights_dir
        if weights_dir is None:
            weights_dir = os.path.join(work, "xrv_weights")
            os.makedirs(weights_dir, exist_ok=True)
            write_torchxrayvision_weights(weights_dir, weights)
        return ["--encoder", "torchxrayvision", "--weights", weights, "--weights_dir", weights_dir]
    weights = args.weights or write_timm_weights(os.path.join(work, "timm_random.pth"), args.model)
    return ["--encoder", "timm", "--model", args.model, "--weights", weights]


def load_kwargs(encoder_args):
    """xray_to_hdf5.py's encoder options -> load_encoder's keyword arguments."""
    options = dict(zip(encoder_args[::2], encoder_args[1::2]))
    return {"weights": options.get("--weights"), "weights_dir": options.get("--weights_dir"),
            "model_name": options.get("--model")}


def write_synthetic_images(args, work):
    """--unique CheXpert-like grey JPEGs (NOT real X-rays) and a CSV listing them up to --num_images rows."""
    width, height = FULL_SIZE if args.full_size else SMALL_SIZE
    unique = min(args.num_images, args.unique or (16 if args.full_size else 256))
    rng = np.random.default_rng(0)
    names = []
    for i in range(unique):
        names.append(f"images/xray{i:05d}.jpg")
        findings = sorted(rng.choice(8, size=int(rng.integers(0, 4)), replace=False).tolist())
        write_xray_image(os.path.join(work, names[-1]), width, height, findings, rng)
    csv = os.path.join(work, "xrays.csv")
    pd.DataFrame({"Path": [names[i % unique] for i in range(args.num_images)]}).to_csv(csv, index=False)
    return csv


def time_stages(all_paths, checkpoint, args, device, work):
    """{'ms': {stage: median ms per image}, 'paths': {path name: [stages]}}, each stage timed alone.

    The image stages run over up to --stage_images distinct files; the model and the write over whole batches.
    """
    paths = list(dict.fromkeys(all_paths))[:args.stage_images or (16 if args.full_size else 256)]
    batch_size = args.batch_size
    batches = [range(lo, min(lo + batch_size, len(paths))) for lo in range(0, len(paths), batch_size)]
    jpegs = [p for p in paths if read_jpeg(p) is not None]
    ms, cpu = {}, torch.device("cpu")

    def per_image(fn, count, on=cpu):
        return median_ms(fn, args.repeats, on) / count

    # What DataLoader workers do, in one thread as they run (torch.set_num_threads(1) in each worker).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    worker_stages = ["decode (PIL)", "resize + crop (PIL)", "to uint8 tensor + collate (PIL)",
                     "decode (torchvision, CPU)", "resize + crop (torchvision, CPU)", "collate (torchvision, CPU)"]
    # The reference path (PIL): one image at a time, then the batch collated (torch.stack).
    ms["decode (PIL)"] = per_image(lambda: [decode(p) for p in paths], len(paths))
    decoded = [decode(p) for p in paths]
    ms["resize + crop (PIL)"] = per_image(lambda: [resize_and_crop(im) for im in decoded], len(paths))
    cropped = [resize_and_crop(im) for im in decoded]
    del decoded
    ms["to uint8 tensor + collate (PIL)"] = per_image(
        lambda: [torch.stack([to_uint8_tensor(cropped[i]) for i in rows]) for rows in batches], len(paths))
    uint8 = torch.stack([to_uint8_tensor(cropped[i % len(cropped)]) for i in range(batch_size)])  # (B, 3, 320, 320)
    del cropped
    # The torchvision path on the CPU.
    if jpegs:
        ms["decode (torchvision, CPU)"] = per_image(lambda: [decode_jpegs(read_jpeg(p)) for p in jpegs], len(jpegs))
        tensors = [decode_jpegs(read_jpeg(p)) for p in jpegs]
        ms["resize + crop (torchvision, CPU)"] = per_image(
            lambda: [resize_and_crop_tensor(t) for t in tensors], len(jpegs))
        cropped = [resize_and_crop_tensor(t) for t in tensors]
        del tensors
        ms["collate (torchvision, CPU)"] = per_image(
            lambda: [torch.stack(cropped[lo:lo + batch_size]) for lo in range(0, len(cropped), batch_size)],
            len(cropped))
        del cropped
    torch.set_num_threads(threads)
    pin = device.type == "cuda"  # the DataLoader's pinned memory
    # On a GPU: the JPEG bytes of a batch decoded in one call on the GPU, then resized there (decode_batch).
    if jpegs and device.type == "cuda":
        encoded = [read_jpeg(p) for p in jpegs]
        jpeg_batches = [encoded[lo:lo + batch_size] for lo in range(0, len(encoded), batch_size)]
        ms["decode (torchvision, GPU, batched; bytes in memory)"] = per_image(
            lambda: [decode_jpegs(b, device) for b in jpeg_batches], len(jpegs), device)
        on_gpu = decode_jpegs(jpeg_batches[0], device)
        ms["resize + crop (torchvision, GPU)"] = per_image(
            lambda: torch.stack([resize_and_crop_tensor(t) for t in on_gpu]), len(on_gpu), device)
        del on_gpu, encoded, jpeg_batches

    source = uint8.pin_memory() if pin else uint8
    # In the main process, with all its threads: to the device, scale, normalise (data.images.normalize).
    ms["normalize (uint8 batch)"] = per_image(lambda: normalize(source, device, channels_last=True), len(uint8),
                                              device)

    encoder = load_moco_encoder(checkpoint, args.arch if args.checkpoint is None else None)
    set_fp32_arithmetic(device, "fp32")
    model = encoder.model.to(device).to(memory_format=torch.channels_last)
    x = normalize(uint8, device, channels_last=True)  # (B, 3, 320, 320) float32

    def forward():
        with torch.inference_mode():
            model(x)  # (B, D)
    ms[f"model forward ({encoder.arch}, fp32)"] = per_image(forward, len(x), device)

    embeddings = np.random.default_rng(0).normal(size=(len(all_paths), encoder.dim)).astype(np.float32)
    ms["HDF5 write"] = per_image(lambda: write_hdf5(os.path.join(work, "write_bench.hdf5"), embeddings,
                                                    batch_size), len(all_paths))

    model_stage, common = f"model forward ({encoder.arch}, fp32)", ["normalize (uint8 batch)"]
    stage_paths = {"pil": ["decode (PIL)", "resize + crop (PIL)", "to uint8 tensor + collate (PIL)", *common,
                           model_stage, "HDF5 write"]}
    if jpegs:
        stage_paths["torchvision, CPU"] = ["decode (torchvision, CPU)", "resize + crop (torchvision, CPU)",
                                           "collate (torchvision, CPU)", *common, model_stage, "HDF5 write"]
    if jpegs and device.type == "cuda":
        stage_paths["torchvision, GPU"] = ["decode (torchvision, GPU, batched; bytes in memory)",
                                           "resize + crop (torchvision, GPU)", *common, model_stage, "HDF5 write"]
    # What one DataLoader worker does per image, on each path (on the GPU path the workers only read the files).
    workers = {name: [s for s in members if s in worker_stages] for name, members in stage_paths.items()}
    return {"ms": ms, "paths": stage_paths, "workers": workers, "model_stage": model_stage,
            "model_input": list(x.shape[1:]), "dim": encoder.dim}


def time_encoder_stages(all_paths, encoder_args, args, device, work):
    """The stages of a torchxrayvision or timm encoder, each timed alone as ``time_stages`` does for MoCo."""
    paths = list(dict.fromkeys(all_paths))[:args.stage_images or (16 if args.full_size else 256)]
    batch_size = args.batch_size
    encoder = load_encoder(args.encoder, device=device, **load_kwargs(encoder_args))
    pipeline, ms, cpu = encoder.pipeline, {}, torch.device("cpu")

    def per_image(fn, count, on=cpu):
        return median_ms(fn, args.repeats, on) / count

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    ms["decode (PIL)"] = per_image(lambda: [pipeline.decode(p) for p in paths], len(paths))
    decoded = [pipeline.decode(p) for p in paths]
    transform = f"transform ({encoder.name}: crop, resize, scale)"
    ms[transform] = per_image(lambda: [pipeline.transform(im) for im in decoded], len(paths))
    tensors = [pipeline.transform(im) for im in decoded]
    del decoded
    ms["collate"] = per_image(lambda: [torch.stack(tensors[lo:lo + batch_size])
                                       for lo in range(0, len(tensors), batch_size)], len(tensors))
    batch = torch.stack([tensors[i % len(tensors)] for i in range(batch_size)])  # (B, C, H, W)
    del tensors
    torch.set_num_threads(threads)
    source = batch.pin_memory() if device.type == "cuda" else batch
    ms["to model input"] = per_image(lambda: pipeline.model_input(source, device, channels_last=True), len(batch),
                                     device)
    set_fp32_arithmetic(device, "fp32")
    model = encoder.model.to(device).to(memory_format=torch.channels_last)
    x = pipeline.model_input(batch, device, channels_last=True)

    def forward():
        with torch.inference_mode():
            model(x)  # (B, D)
    model_stage = f"model forward ({encoder.name} {encoder.model_name}, fp32)"
    ms[model_stage] = per_image(forward, len(x), device)
    embeddings = np.random.default_rng(0).normal(size=(len(all_paths), encoder.dim)).astype(np.float32)
    ms["HDF5 write"] = per_image(lambda: write_hdf5(os.path.join(work, "write_bench.hdf5"), embeddings,
                                                    batch_size), len(all_paths))
    return {"ms": ms, "paths": {encoder.name: list(ms)},
            "workers": {encoder.name: ["decode (PIL)", transform, "collate"]},
            "model_stage": model_stage, "model_input": list(x.shape[1:]), "dim": encoder.dim}


def write_hdf5(path, embeddings, batch_size):
    """Write ``embeddings`` as xray_to_hdf5.py does: one flushed batch at a time into a fresh file."""
    writer = EmbeddingWriter.open(path, len(embeddings), embeddings.shape[1], {}, 0)
    for lo in range(0, len(embeddings), batch_size):
        writer.write(lo, embeddings[lo:lo + batch_size])
    writer.file.close()
    os.remove(path)


def print_stage_table(stages):
    ms, stage_paths = stages["ms"], stages["paths"]
    totals = {name: sum(ms[s] for s in members) for name, members in stage_paths.items()}
    names = list(stage_paths)
    print("| stage | ms / image | " + " | ".join(f"share, {name} path" for name in names) + " |")
    print("| --- | ---: |" + " ---: |" * len(names))
    for stage, value in ms.items():
        shares = [f"{100 * value / totals[n]:.1f} %" if stage in stage_paths[n] else "" for n in names]
        print(f"| {stage} | {value:.3f} | " + " | ".join(shares) + " |")
    print("| **sum of the stages (one image after another)** | | " + " | ".join(
        f"**{totals[n]:.2f} ms = {1000 / totals[n]:.0f} images/s**" for n in names) + " |")
    worker_ms = {n: sum(ms[s] for s in stages["workers"][n]) for n in names}
    print("| worker stages (decode to collate: one DataLoader worker, per image) | | " + " | ".join(
        f"{worker_ms[n]:.2f} ms = {1000 / worker_ms[n]:.0f} images/s per worker, {100 * worker_ms[n] / totals[n]:.1f} %"
        if worker_ms[n] else "" for n in names) + " |")


def compare_dicom(args, device, argv):
    """--dicom: the same synthetic pictures as JPEG and as DICOM files: decode ms/image and xray_to_hdf5.py images/s."""
    syntaxes = args.dicom or ["uncompressed"]
    work = args.work or tempfile.mkdtemp(prefix="bench_embed_dicom_")
    os.makedirs(work, exist_ok=True)
    load_before = os.getloadavg()
    try:
        csv, root, checkpoint = prepare_inputs(args, work)
        encoder_args = encoder_options(args, checkpoint, work)
        inputs = {"JPEG (8-bit)": csv, **write_dicom_copies(csv, root, syntaxes, work)}
        print(machine_line(device))
        rows = []
        for name, input_csv in inputs.items():
            paths = [os.path.join(root, p) for p in pd.read_csv(input_csv)["Path"].astype(str)]
            distinct = list(dict.fromkeys(paths))[:args.stage_images or (16 if args.full_size else 256)]
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # as in a DataLoader worker
            decode_ms = median_ms(lambda: [decode(p) for p in distinct], args.repeats, torch.device("cpu")) / len(
                distinct)
            torch.set_num_threads(threads)
            speeds = {workers: run_xray_to_hdf5(input_csv, root, encoder_args, args, device, "pil", workers,
                                                os.path.join(work, "dicom_bench.hdf5"))["images_per_s"]
                      for workers in ([] if args.skip_end_to_end else args.workers)}
            size = int(np.mean([os.path.getsize(p) for p in distinct]))
            rows.append({"input": name, "file_kib": size / 1024, "decode_ms": decode_ms, "images_per_s": speeds})
            print(f"{name}: {size / 1024:.0f} KiB, decode {decode_ms:.2f} ms/image, images/s {speeds}")
        load_after = os.getloadavg()
        shape = image_shape(os.path.join(root, pd.read_csv(csv)["Path"].iloc[0]))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    command = "python3 bench/embed.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    table = dicom_table(rows, args, shape, command, machine_line(device), load_before, load_after)
    print("\n" + table)
    if args.fragment:
        os.makedirs(os.path.dirname(os.path.abspath(args.fragment)), exist_ok=True)
        with open(args.fragment, "w") as f:
            f.write(table)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), "machine": machine_line(device), "load_average_before": load_before,
                   "load_average_after": load_after, "dicom_vs_jpeg": rows}, f, indent=2)
    print(f"results saved to {args.out}" + (f" and {args.fragment}" if args.fragment else ""))


def write_dicom_copies(csv, root, syntaxes, work):
    """{input name: CSV}: each distinct JPEG of ``csv`` as a 12-bit DICOM file per transfer syntax, same rows."""
    from data.synthetic_dicom import write_dicom
    from PIL import Image
    frame = pd.read_csv(csv)
    csvs = {}
    for syntax in syntaxes:
        uid = DICOM_SYNTAXES[syntax]
        if uid is not None:
            from pydicom.pixels import get_decoder, get_encoder
            if not (get_encoder(uid).is_available and get_decoder(uid).is_available):
                print(f"skipped DICOM {syntax}: no pydicom plugin encodes and decodes it here "
                      "(pip install -r requirements-encoders.txt)")
                continue
        names = {}
        for name in dict.fromkeys(frame["Path"]):
            pixels = np.asarray(Image.open(os.path.join(root, name)), dtype=np.uint16)
            stored = pixels * 16 + pixels // 16  # 8 bits -> 12 bits, 0..4095
            names[name] = f"dicom_{syntax}/{os.path.splitext(os.path.basename(name))[0]}.dcm"
            write_dicom(os.path.join(root, names[name]), stored, window=(2048, 4096), transfer_syntax=uid)
        csvs[f"DICOM 12-bit, {syntax}"] = os.path.join(work, f"dicom_{syntax}.csv")
        frame.assign(Path=frame["Path"].map(names)).to_csv(csvs[f"DICOM 12-bit, {syntax}"], index=False)
    return csvs


def dicom_table(rows, args, shape, command, machine, load_before, load_after):
    """The --dicom results as a markdown fragment (docs/results/embed_dicom.md); first line: how it was made."""
    workers = [] if args.skip_end_to_end else args.workers
    lines = [f"<!-- made by: {command}; {machine} -->",
             f"| input ({min(args.num_images, args.unique or (16 if args.full_size else 256))} distinct synthetic pictures, "
             f"{shape.split(' ')[0]}; {args.num_images} rows) | file (KiB) | decode (ms/image, 1 thread) | "
             + " | ".join(f"xray_to_hdf5.py images/s, --num_workers {w}" for w in workers) + " |",
             "| --- | ---: | ---: |" + " ---: |" * len(workers)]
    for row in rows:
        lines.append(f"| {row['input']} | {row['file_kib']:.0f} | {row['decode_ms']:.2f} | "
                     + " | ".join(f"{row['images_per_s'][w]:.1f}" for w in workers) + " |")
    lines.append("")
    lines.append(f"MoCo-CXR {args.arch} (random weights), --encoder {args.encoder}, --decoder pil, batch "
                 f"{args.batch_size}, on {args.device}; decode = file to 8-bit picture (data.images.decode: "
                 f"pydicom, rescale, window, 8 bits for DICOM); load average before {fmt_load(load_before)}, after "
                 f"{fmt_load(load_after)} (the machine is shared: compare rows, not runs).")
    return "\n".join(lines) + "\n"


def run_xray_to_hdf5(csv, root, encoder_args, args, device, decoder, workers, out, channels_last="on"):
    """One run of xray_to_hdf5.py in a fresh process: {'images_per_s', 'embedding_s', 'wall_s', 'load_average_after'}."""
    command = [sys.executable, os.path.join(ROOT, "xray_to_hdf5.py"), "-d", csv, "-o", out, *encoder_args,
               "--root", root, "--device", str(device), "--batch_size", str(args.batch_size),
               "--num_workers", str(workers), "--decoder", decoder, "--channels_last", channels_last,
               "--overwrite"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    match = THROUGHPUT.search(done.stderr)
    if done.returncode != 0 or match is None:
        raise SystemExit(f"error: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    os.remove(out)
    return {"images_per_s": float(match.group(2)), "embedding_s": float(match.group(1)), "wall_s": wall,
            "load_average_after": os.getloadavg()}


def time_end_to_end(csv, root, encoder_args, args, device, work):
    """xray_to_hdf5.py with its defaults, in a fresh process per run: the images/s it logs, per setting.

    The settings take turns (decoders, then --channels_last values, alternate), so that a change in the
    machine's load hits them alike; with two --channels_last values each turn is a back-to-back comparison.
    """
    out = os.path.join(work, "end_to_end.hdf5")
    settings = [(decoder, workers, layout) for workers in args.workers for decoder in args.decoder
                for layout in args.channels_last]
    runs = {setting: [] for setting in settings}
    for _ in range(args.end_to_end_repeats):
        for decoder, workers, layout in settings:
            runs[decoder, workers, layout].append(run_xray_to_hdf5(csv, root, encoder_args, args, device, decoder,
                                                                   workers, out, channels_last=layout))
    compared = len(args.channels_last) > 1
    print(f"\n| xray_to_hdf5.py --encoder {args.encoder}, defaults | --num_workers | images/s (median of "
          f"{args.end_to_end_repeats}) | embedding (s) | wall, with start-up (s) | 1-min load after |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for (decoder, workers, layout), results in sorted(runs.items()):
        middle = sorted(results, key=lambda r: r["images_per_s"])[len(results) // 2]
        label = f"--decoder {decoder}" + (f" --channels_last {layout}" if compared else "")
        print(f"| {label} | {workers} | {middle['images_per_s']:.1f} | {middle['embedding_s']:.1f} | "
              f"{middle['wall_s']:.1f} | {middle['load_average_after'][0]:.2f} |")
        rows.append({"decoder": decoder, "num_workers": workers, "channels_last": layout, "median": middle,
                     "runs": results})
    if compared:
        print()
        for decoder, workers in dict.fromkeys((d, w) for d, w, _ in settings):
            on, off = ([r["images_per_s"] for r in runs[decoder, workers, layout]] for layout in ("on", "off"))
            print(f"--decoder {decoder}, --num_workers {workers}: --channels_last on was faster than off in "
                  f"{sum(a > b for a, b in zip(on, off))} of {len(on)} back-to-back turns.")
    return rows


def machine_line(device):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (f"machine: {os.cpu_count()} CPUs ({cpu}){gpu}; torch {torch.__version__}, {torch.get_num_threads()} "
            f"threads; device {device}")


def image_shape(path):
    from PIL import Image
    with Image.open(path) as image:
        return f"{image.width}x{image.height} {image.mode} {image.format}, {os.path.getsize(path) // 1024} KiB"


def fmt_load(load):
    return ", ".join(f"{x:.2f}" for x in load)


def main_writing_fragment(argv=None):
    """main(), and with --docs_fragment what it printed from the images line on (tables, load averages) as a
    docs fragment."""
    args = get_args_parser().parse_args(argv)
    run_writing_report(main, argv, args.docs_fragment, "bench/embed.py", args.device or "cpu",
                       first="images:", last="results saved")


if __name__ == "__main__":
    main_writing_fragment()
