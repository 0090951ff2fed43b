"""Embed the chest X-rays of a CSV with an image encoder, into the HDF5 file run_selector.py reads.

    python3 xray_to_hdf5.py -d train_pos.csv -o train_pos.hdf5 -c r8w-00001.pth.tar          # MoCo-CXR
    python3 xray_to_hdf5.py -d ... -o ... --encoder torchxrayvision --weights densenet121-res224-all
    python3 xray_to_hdf5.py -d ... -o ... --encoder timm --model vit_small_patch16_224 --weights w.pth
    torchrun --nproc_per_node=N xray_to_hdf5.py -d ... -o ... -c ...    # N GPUs, same file

Row i of the HDF5 dataset 'dataset' (float32, rows x D) is the embedding of CSV
row i. Embeddings go to OUTPUT.partial in batches as they are computed, so
memory stays constant; the file is renamed to OUTPUT only when every row is
done. After an interruption the same command resumes from OUTPUT.partial, and
the result is the same as an uninterrupted run. OUTPUT.lock keeps a second run
from writing the same output meanwhile. The encoders differ only in
models/encoders/ (network, preprocessing, provenance); everything here is
shared by all of them. The resumable writer and the attributes it records
are data/embedding_writer.py; the torchrun processes, utils/distributed.py.
"""
import argparse
import contextlib
import logging
import os
import time

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.csv_hdf5 import hdf5_path_for, read_csv
from data.dicom import DEFAULT_WINDOWING, WINDOWING
from data.embedding_writer import PARTIAL_SUFFIX, EmbeddingWriter, embedding_attributes, locked_resume_position
from data.images import DECODERS, MAX_DEFAULT_WORKERS, XrayImages, check_images, collate_items, image_paths
from models.encoders import DEFAULT_ENCODER, ENCODERS, load_encoder
from models.encoders.trained_labels import TORCHXRAYVISION_WEIGHTS
from models.moco_encoder import ARCHITECTURES
from utils.device import set_fp32_arithmetic
from utils.distributed import Ranks
from utils.errors import UserError, run_cli, sigterm_as_ctrl_c
from utils.hashing import file_sha256
from utils.help_format import DefaultsHelpFormatter
from utils.logs import LOGGER_NAME, setup_logging
from utils.output_location import check_output_file

PRECISIONS = ("fp32", "bf16")
# The options of one encoder only: attribute -> (flag, the encoders that take it); and those each one needs.
ENCODER_OPTIONS = {"checkpoint_path": ("-c/--checkpoint_path", ("moco",)), "arch": ("--arch", ("moco",)),
                   "weights": ("--weights", ("torchxrayvision", "timm")),
                   "weights_dir": ("--weights_dir", ("torchxrayvision",)), "model": ("--model", ("timm",))}
REQUIRED_OPTIONS = {"moco": ("checkpoint_path",), "torchxrayvision": ("weights",), "timm": ("model", "weights")}
UNIFORM_LINES = 20  # X-rays that decode to one flat value named one by one in the log; then only counted

log = logging.getLogger(LOGGER_NAME)


def get_args_parser():
    parser = argparse.ArgumentParser(
        description="Embed the X-rays listed in a CSV (column 'Path') into an HDF5 file (dataset 'dataset', "
                    "float32, rows x D) with an image encoder: the query encoder of a MoCo-CXR checkpoint without "
                    "its head (the default, as the paper), a torchxrayvision model or a timm backbone "
                    "(docs/embedding.md).",
        formatter_class=DefaultsHelpFormatter)
    parser.add_argument("-d", "--data", required=True, help="input CSV, one X-ray per row, image file in column 'Path'")
    parser.add_argument("-o", "--output_path", required=True,
                        help="output HDF5; run_selector.py expects it beside the CSV with the same name (x.csv -> x.hdf5)")
    parser.add_argument("--root", default=None,
                        help="folder that relative paths in 'Path' start from; default: the current folder "
                             "(for CheXpert: the folder holding CheXpert-v1.0-small/)")
    parser.add_argument("--encoder", choices=ENCODERS, default=DEFAULT_ENCODER,
                        help="moco: a MoCo-CXR checkpoint (-c), as the paper; torchxrayvision: its DenseNet-121 or "
                             "ResNet-50 (--weights NAME; needs pip install torchxrayvision); timm: a timm backbone "
                             "(--model, --weights; needs pip install timm)")

    moco = parser.add_argument_group("--encoder moco (the default)")
    moco.add_argument("-c", "--checkpoint_path", default=None,
                      help="MoCo checkpoint (.pth.tar) with 'state_dict' holding module.encoder_q.*; required")
    moco.add_argument("--arch", choices=sorted(ARCHITECTURES), default=None,
                      help="encoder architecture; default: read from the checkpoint's keys")
    moco.add_argument("--decoder", choices=sorted(DECODERS), default="pil",
                      help="pil: the reference preprocessing; torchvision: decode JPEGs with "
                           "torchvision.io.decode_jpeg (batched on the GPU when the device is cuda, in the workers "
                           "otherwise) and resize the tensor with antialias; other files go through PIL "
                           "(cosine similarity to pil >= 0.999). The other encoders decode with PIL")
    parser.add_argument("--dicom_windowing", choices=tuple(WINDOWING), default=DEFAULT_WINDOWING,
                        help="DICOM files (.dcm, .dicom, or 'DICM' at byte 128; any encoder, either decoder) are "
                             "read with pydicom, rescaled and windowed to 8-bit grey by: "
                             + "; ".join(f"{name}: {rule}" for name, rule in WINDOWING.items())
                             + ". MONOCHROME1 is inverted; the rule is recorded in the HDF5 file")

    others = parser.add_argument_group("--encoder torchxrayvision and --encoder timm")
    others.add_argument("--weights", default=None,
                        help=f"torchxrayvision: the weights name ({', '.join(TORCHXRAYVISION_WEIGHTS)}); "
                             "timm: a weights file (a state dict of the model, or a checkpoint holding one under "
                             "'state_dict', 'model' or 'state_dict_ema') or hf-hub:ORG/NAME (downloaded); required")
    others.add_argument("--weights_dir", default=None,
                        help="torchxrayvision: folder holding its weight files, where missing ones are downloaded; "
                             "default: ~/.torchxrayvision/models_data/")
    others.add_argument("--model", default=None,
                        help="timm: the model name, e.g. vit_small_patch16_224.augreg_in21k_ft_in1k; its pretrained "
                             "configuration gives the preprocessing (timm.data.resolve_data_config); required")

    run = parser.add_argument_group("running")
    run.add_argument("--batch_size", type=int, default=64, help="images per forward pass (per process)")
    run.add_argument("--num_workers", type=int, default=None,
                     help="DataLoader worker processes decoding and resizing images (per process), 0 = none; "
                          f"default: the number of CPUs, at most {MAX_DEFAULT_WORKERS}")
    run.add_argument("--device", default=None,
                     help="torch device; default: cuda when available (cuda:LOCAL_RANK under torchrun), else cpu")
    run.add_argument("--precision", choices=PRECISIONS, default="fp32",
                     help="fp32: full precision (TF32 off), as the original; bf16: autocast, faster on GPUs "
                          "(cosine similarity to fp32 >= 0.999 for MoCo-CXR)")
    run.add_argument("--channels_last", choices=("on", "off"), default="on",
                     help="channels-last memory format for the convolutions (faster on GPUs, and usually on "
                          "the CPU too in our measurements; results agree within 1e-6 relative)")
    run.add_argument("--check", action="store_true",
                     help="first open every image (cheaply) and list all unreadable ones at once, before embedding")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an existing OUTPUT (only once the new file is complete), and discard an "
                          "unfinished OUTPUT.partial made from another CSV or encoder")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    ranks = Ranks.from_environment(args.device)
    on_exit = contextlib.ExitStack()  # releases the output's lock however the run ends
    with sigterm_as_ctrl_c():
        try:
            return embed_csv(args, ranks, on_exit)
        except RuntimeError as err:
            if "DataLoader worker" not in str(err):
                raise
            # A scheduler's SIGTERM reaches the DataLoader workers too; the finished rows are already safe.
            if isinstance(err.__context__, KeyboardInterrupt):
                raise KeyboardInterrupt from None
            raise UserError(f"{str(err).strip().splitlines()[0]} (out of memory? try fewer --num_workers); "
                            "rerun the same command to resume") from None
        finally:
            on_exit.close()
            ranks.close()


def embed_csv(args, ranks, on_exit):
    """Validate everything, then embed every row (resuming an unfinished run) and rename into place."""
    if ranks.rank == 0:
        setup_logging()
    else:
        logging.getLogger(LOGGER_NAME).setLevel(logging.WARNING)
    check_options(args)
    device = ranks.device
    frame = read_csv(args.data, required_columns=["Path"])
    if len(frame) == 0:
        raise UserError(f"{args.data}: has no rows; nothing to embed")
    paths = image_paths(frame, args.data, args.root)
    output = args.output_path
    check_output_file(output, "--output_path", {"--data": ("CSV", args.data),
                                                "--checkpoint_path": ("checkpoint", args.checkpoint_path),
                                                "--weights": ("weights", args.weights)},
                      overwrite=args.overwrite, kind="the HDF5 file name", folder_must_exist=True,
                      embeddings_of_inputs=False)

    # Rank 0 first: it downloads weights that are missing, so that processes never write the same file at once.
    encoder = ranks.rank0_first(lambda: load_encoder(
        args.encoder, checkpoint_path=args.checkpoint_path, arch=args.arch, decoder=args.decoder,
        weights=args.weights, weights_dir=args.weights_dir, model_name=args.model, device=device))
    encoder.pipeline.dicom_windowing = args.dicom_windowing  # sent to the DataLoader workers with the pipeline
    weights_sha256 = file_sha256(encoder.weights_file) if ranks.rank == 0 and encoder.weights_file else ""
    attrs = embedding_attributes(frame, args.data, encoder, args.precision, args.decoder, args.root, weights_sha256)
    start_row = ranks.broadcast_outcome(lambda: locked_resume_position(output, attrs, args.overwrite, on_exit))
    if args.check:
        check_all_images(paths, args.data, ranks, args.num_workers, args.dicom_windowing)

    channels_last = args.channels_last == "on"
    set_fp32_arithmetic(device, args.precision)
    model = encoder.model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    log.info("embedding %d X-rays of %s with %s, D=%d, on %s%s, %s, %s decoder, batch %d, %d worker(s) -> %s%s",
             len(paths), args.data, encoder.summary, encoder.dim, device,
             f" x {ranks.world_size} processes" if ranks.world_size > 1 else "", args.precision, args.decoder,
             args.batch_size, args.num_workers, output, f" (resuming at row {start_row})" if start_row else "")
    if os.path.abspath(output) != os.path.abspath(hdf5_path_for(args.data)):
        log.info("note: run_selector.py reads the embeddings of %s from %s", args.data, hdf5_path_for(args.data))

    writer = EmbeddingWriter.open(output + PARTIAL_SUFFIX, len(paths), encoder.dim, attrs, start_row) \
        if ranks.rank == 0 else None
    uniform = UniformImageReport(args.data, paths)
    started, first_row = time.time(), start_row
    try:
        for lo, hi, embeddings, uniform_rows in embed_rows(model, encoder, paths, start_row, args, ranks,
                                                           channels_last):
            if writer is not None:
                writer.write(lo, embeddings)
                uniform.add(uniform_rows)
        if writer is not None:
            writer.finish(output)  # the completion record, checked, then the rename
    except UserError as err:
        if writer is not None:
            kept = writer.abandon()
            raise UserError(f"{err}; {kept}") from None
        raise
    except BaseException:
        if writer is not None:
            log.info("stopped after %d of %d rows; %s", writer.rows_done, len(paths), writer.abandon())
        raise
    if writer is not None:
        uniform.summarize()
        elapsed = time.time() - started
        log.info("wrote %d embeddings of size %d to %s (%.1f s, %.1f images/s)", len(paths), encoder.dim, output,
                 elapsed, (len(paths) - first_row) / max(elapsed, 1e-9))
    ranks.barrier()
    return 0


def check_options(args):
    """Refuse bad numbers, and options of another encoder than the chosen one (they would be ignored)."""
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.num_workers is None:
        args.num_workers = min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1)
    if args.num_workers < 0:
        raise UserError(f"--num_workers must be 0 or more, got {args.num_workers}")
    for name, (flag, encoders) in ENCODER_OPTIONS.items():
        if getattr(args, name) is not None and args.encoder not in encoders:
            raise UserError(f"{flag} is an option of --encoder {' and '.join(encoders)}, not of --encoder "
                            f"{args.encoder}")
    missing = [ENCODER_OPTIONS[name][0] for name in REQUIRED_OPTIONS[args.encoder] if getattr(args, name) is None]
    if missing:
        raise UserError(f"--encoder {args.encoder} needs {' and '.join(missing)}")
    if args.decoder != "pil" and args.encoder != "moco":
        raise UserError(f"--decoder {args.decoder} is an option of --encoder moco; --encoder {args.encoder} decodes "
                        "with PIL and preprocesses as its library does")


def check_all_images(paths, csv_path, ranks, threads, dicom_windowing=DEFAULT_WINDOWING):
    """--check: open every image (shared among processes) and stop with the list of all unreadable ones."""
    rows = list(range(ranks.rank, len(paths), ranks.world_size))
    with tqdm(total=len(rows), desc="checking images", unit="img", disable=ranks.rank != 0,
              dynamic_ncols=True) as bar:
        bad = check_images(paths, rows, threads=max(threads, 1), progress=bar, dicom_windowing=dicom_windowing)
    bad = sorted(sum(ranks.all_gather_object(bad), []))
    if len(bad) == 1:  # one line, as when embedding meets it
        row, path, reason = bad[0]
        raise UserError(f"row {row} of {csv_path}: cannot read image {path} ({reason})")
    if bad:
        if ranks.rank == 0:
            for row, path, reason in bad:
                log.error("row %d: %s: %s", row, path, reason)
        raise UserError(f"{len(bad)} of {len(paths)} images listed in {csv_path} cannot be read (listed above); "
                        "fix them and run the same command again")
    log.info("checked %d images: all readable", len(paths))


def embed_batch(model, pipeline, images, device, precision="fp32", channels_last=False):
    """A batch from the DataLoader -> (B, D) float32 embeddings on ``device``."""
    x = pipeline.model_input(images, device, channels_last)  # (B, C, H, W) float32
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        return model(x).float()  # (B, D)


def embed_rows(model, encoder, paths, start_row, args, ranks, channels_last):
    """Yield (lo, hi, (hi - lo, D) float32 numpy, [rows whose image is one flat value]) on rank 0 for
    consecutive rows from ``start_row`` on.

    One step covers batch_size x world_size consecutive rows; process r embeds
    the r-th block of batch_size of them. A single process therefore sees the
    very same batches as each process of a multi-process run, and a resumed run
    the same batches as an uninterrupted one.
    """
    batch_size, world, pipeline = args.batch_size, ranks.world_size, encoder.pipeline
    step_starts = range(start_row, len(paths), batch_size * world)
    my_blocks = [_block(lo, ranks.rank, batch_size, len(paths)) for lo in step_starts]
    loader = DataLoader(XrayImages(paths, pipeline), batch_sampler=[list(b) for b in my_blocks if len(b)],
                        collate_fn=collate_items if pipeline.decodes_on_device else None,
                        num_workers=args.num_workers, pin_memory=ranks.device.type == "cuda")
    batches = iter(loader)
    bar = tqdm(total=len(paths), initial=start_row, desc="embedding", unit="img", smoothing=0.05,
               dynamic_ncols=True, disable=ranks.rank != 0)
    try:
        for lo, block in zip(step_starts, my_blocks):
            embeddings, failure, uniform_rows = None, None, []
            if len(block):
                rows, images, errors, uniform = next(batches)
                if pipeline.decodes_on_device:  # JPEG bytes -> images, decoded on the GPU
                    images, errors, uniform = pipeline.finish_batch(images, [paths[int(r)] for r in rows],
                                                                    errors, uniform, ranks.device)
                failure = next(((int(r), e) for r, e in zip(rows, errors) if e), None)
                uniform_rows = [int(r) for r, flat in zip(rows, uniform) if flat]
                if failure is None:
                    embeddings = embed_batch(model, pipeline, images, ranks.device, args.precision, channels_last)
            outcomes = ranks.all_gather_object((failure, uniform_rows))
            failures = [f for f, _ in outcomes if f is not None]
            if failures:
                row, reason = min(failures)
                raise UserError(f"row {row} of {args.data}: cannot read image {paths[row]} ({reason})")
            hi = min(lo + batch_size * world, len(paths))
            lengths = [len(_block(lo, r, batch_size, len(paths))) for r in range(world)]
            gathered = ranks.gather_blocks(embeddings, batch_size, encoder.dim, lengths)
            if ranks.rank == 0:
                yield lo, hi, gathered, sorted(row for _, flat in outcomes for row in flat)
            bar.update(hi - lo)
    finally:
        bar.close()
        _close_loader(batches)


class UniformImageReport:
    """Names each X-ray whose pixels all have one value after decoding, once, in the log.

    Such an image is almost always a conversion mistake (a 16-bit export with a
    wrong window, a blank page); it is embedded as it is, and reported so that
    the user can look. After UNIFORM_LINES of them, the rest are only counted.
    """

    def __init__(self, csv_path, paths):
        self.csv_path, self.paths, self.count = csv_path, paths, 0

    def add(self, rows):
        for row in rows:
            self.count += 1
            if self.count <= UNIFORM_LINES:
                log.warning("row %d of %s: every pixel of %s has the same value after decoding (a conversion "
                            "mistake?); embedded as it is", row, self.csv_path, self.paths[row])

    def summarize(self):
        if self.count > UNIFORM_LINES:
            log.warning("%d images in all have every pixel the same value (the first %d are named above)",
                        self.count, UNIFORM_LINES)


def _close_loader(batches):
    """Stop the DataLoader workers now, not at garbage collection, where a worker that a SIGTERM to the
    whole process group has already killed would print a traceback."""
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        try:
            shutdown()
        except RuntimeError:  # "DataLoader worker ... is killed by signal": the run is stopping anyway
            pass


def _block(step_start, rank, batch_size, num_rows):
    lo = min(step_start + rank * batch_size, num_rows)
    return range(lo, min(lo + batch_size, num_rows))


if __name__ == "__main__":
    run_cli(main)
