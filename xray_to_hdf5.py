"""Embed the chest X-rays of a CSV with a MoCo-CXR encoder, into the HDF5 file run_selector.py reads.

    python3 xray_to_hdf5.py -d train_pos.csv -o train_pos.hdf5 -c r8w-00001.pth.tar
    torchrun --nproc_per_node=N xray_to_hdf5.py -d ... -o ... -c ...    # N GPUs, same file

Row i of the HDF5 dataset 'dataset' (float32, rows x D) is the embedding of CSV
row i (SPEC §10). Embeddings go to OUTPUT.partial in batches as they are
computed, so memory stays constant; the file is renamed to OUTPUT only when
every row is done. After an interruption the same command resumes from
OUTPUT.partial, and the result is the same as an uninterrupted run.
"""
import argparse
import hashlib
import logging
import os
import signal
import time

import h5py
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.csv_hdf5 import HDF5_DATASET, hdf5_path_for, read_csv
from data.images import (DECODERS, XrayImages, check_images, collate_items, decode_batch, image_paths, normalize,
                         read_or_load_xray)
from models.moco_encoder import ARCHITECTURES, file_sha256, load_moco_encoder
from utils.errors import UserError, run_cli
from utils.logs import setup_logging

PARTIAL_SUFFIX = ".partial"  # OUTPUT.partial holds an unfinished run until it is renamed to OUTPUT
PRECISIONS = ("fp32", "bf16")
MAX_DEFAULT_WORKERS = 8  # a CheXpert-small JPEG decodes in about 1 ms: 8 workers feed several thousand images/s
# Attributes that must match for a run to resume an unfinished file: same rows, same encoder, same arithmetic.
RESUME_KEYS = ("csv_rows", "csv_path_sha256", "checkpoint_sha256", "arch", "precision", "decoder", "preprocessing")
RESUME_DEFAULTS = {"decoder": "pil"}  # a .partial written before --decoder existed was made with PIL

log = logging.getLogger("medselect")


def get_args_parser():
    parser = argparse.ArgumentParser(
        description="Embed the X-rays listed in a CSV (column 'Path') with the query encoder of a MoCo-CXR "
                    "checkpoint, without its head, into an HDF5 file (dataset 'dataset', float32, rows x D).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-d", "--data", required=True, help="input CSV, one X-ray per row, image file in column 'Path'")
    parser.add_argument("-o", "--output_path", required=True,
                        help="output HDF5; run_selector.py expects it beside the CSV with the same name (x.csv -> x.hdf5)")
    parser.add_argument("-c", "--checkpoint_path", required=True,
                        help="MoCo checkpoint (.pth.tar) with 'state_dict' holding module.encoder_q.*")
    parser.add_argument("--root", default=None,
                        help="folder that relative paths in 'Path' start from; default: the current folder "
                             "(for CheXpert: the folder holding CheXpert-v1.0-small/)")
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default=None,
                        help="encoder architecture; default: read from the checkpoint's keys")
    parser.add_argument("--batch_size", type=int, default=64, help="images per forward pass (per process)")
    parser.add_argument("--num_workers", type=int, default=None,
                        help="DataLoader worker processes decoding and resizing images (per process), 0 = none; "
                             f"default: the number of CPUs, at most {MAX_DEFAULT_WORKERS}")
    parser.add_argument("--device", default=None,
                        help="torch device; default: cuda when available (cuda:LOCAL_RANK under torchrun), else cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32: full precision (TF32 off), as the original; bf16: autocast, faster on GPUs "
                             "(cosine similarity to fp32 >= 0.999)")
    parser.add_argument("--decoder", choices=sorted(DECODERS), default="pil",
                        help="pil: the reference preprocessing (SPEC §10); torchvision: decode JPEGs with "
                             "torchvision.io.decode_jpeg (batched on the GPU when the device is cuda, in the workers "
                             "otherwise) and resize the tensor with antialias; other files go through PIL "
                             "(cosine similarity to pil >= 0.999)")
    parser.add_argument("--channels_last", choices=("on", "off"), default="on",
                        help="channels-last memory format for the convolutions (faster on GPUs, and usually on "
                             "the CPU too in our measurements; results agree within 1e-6 relative)")
    parser.add_argument("--check", action="store_true",
                        help="first open every image (cheaply) and list all unreadable ones at once, before embedding")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing OUTPUT (only once the new file is complete), and discard an "
                             "unfinished OUTPUT.partial made from another CSV or checkpoint")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    ranks = Ranks.from_environment(args.device)
    previous_handler = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        return embed_csv(args, ranks)
    except RuntimeError as err:
        if "DataLoader worker" not in str(err):
            raise
        # A scheduler's SIGTERM reaches the DataLoader workers too; the finished rows are already safe.
        if isinstance(err.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        raise UserError(f"{str(err).strip().splitlines()[0]} (out of memory? try fewer --num_workers); "
                        "rerun the same command to resume") from None
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        ranks.close()


def embed_csv(args, ranks):
    """Validate everything, then embed every row (resuming an unfinished run) and rename into place."""
    if ranks.rank == 0:
        setup_logging()
    else:
        logging.getLogger("medselect").setLevel(logging.WARNING)
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.num_workers is None:
        args.num_workers = min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1)
    if args.num_workers < 0:
        raise UserError(f"--num_workers must be 0 or more, got {args.num_workers}")
    device = ranks.device
    frame = read_csv(args.data, required_columns=["Path"])
    if len(frame) == 0:
        raise UserError(f"{args.data}: has no rows; nothing to embed")
    paths = image_paths(frame, args.data, args.root)
    output = args.output_path
    check_output_path(output, args)

    encoder = load_moco_encoder(args.checkpoint_path, args.arch)
    attrs = provenance(frame, args, encoder, ranks.rank)
    start_row = ranks.broadcast_outcome(lambda: resume_position(output, attrs, args.overwrite))
    if args.check:
        check_all_images(paths, args.data, ranks, args.num_workers)

    channels_last = args.channels_last == "on"
    set_fp32_arithmetic(device, args.precision)
    model = encoder.model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    log.info("embedding %d X-rays of %s with %s (%s head%s, D=%d) on %s%s, %s, %s decoder, batch %d, %d worker(s) "
             "-> %s%s", len(paths), args.data, encoder.arch, encoder.head,
             f", queue {encoder.queue_length}" if encoder.queue_length else "", encoder.dim, device,
             f" x {ranks.world_size} processes" if ranks.world_size > 1 else "", args.precision, args.decoder,
             args.batch_size, args.num_workers, output, f" (resuming at row {start_row})" if start_row else "")
    if os.path.abspath(output) != os.path.abspath(hdf5_path_for(args.data)):
        log.info("note: run_selector.py reads the embeddings of %s from %s", args.data, hdf5_path_for(args.data))

    writer = EmbeddingWriter.open(output + PARTIAL_SUFFIX, len(paths), encoder.dim, attrs, start_row) \
        if ranks.rank == 0 else None
    started, first_row = time.time(), start_row
    try:
        for lo, hi, embeddings in embed_rows(model, encoder.dim, paths, start_row, args, ranks, channels_last):
            if writer is not None:
                writer.write(lo, embeddings)
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
        writer.finish(output)
        elapsed = time.time() - started
        log.info("wrote %d embeddings of size %d to %s (%.1f s, %.1f images/s)", len(paths), encoder.dim, output,
                 elapsed, (len(paths) - first_row) / max(elapsed, 1e-9))
    ranks.barrier()
    return 0


def check_output_path(output, args):
    """Refuse an output that cannot be written or would replace something it should not."""
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise UserError(f"--output_path {output}: folder {folder} does not exist")
    if os.path.isdir(output):
        raise UserError(f"--output_path {output}: is a folder; give the HDF5 file name")
    for name, path in (("--data", args.data), ("--checkpoint_path", args.checkpoint_path)):
        if os.path.abspath(output) == os.path.abspath(path):
            raise UserError(f"--output_path {output}: is the same file as {name}")
    if os.path.exists(output) and not args.overwrite:
        raise UserError(f"{output} already exists; pass --overwrite to replace it (it is replaced only once the "
                        "new file is complete)")
    if not os.access(folder, os.W_OK):
        raise UserError(f"--output_path {output}: cannot write in folder {folder}")


def provenance(frame, args, encoder, rank):
    """The attributes stored in the HDF5: what was embedded, with what, and how."""
    paths_text = "\n".join(frame["Path"].astype(str).tolist()).encode("utf-8")
    return {
        "csv_rows": len(frame),
        "csv_path_sha256": hashlib.sha256(paths_text).hexdigest(),
        "csv_file": os.path.basename(args.data),
        "checkpoint_file": os.path.basename(args.checkpoint_path),
        "checkpoint_sha256": file_sha256(args.checkpoint_path) if rank == 0 else "",
        "arch": encoder.arch,
        "head_removed": encoder.head,
        "embedding_dim": encoder.dim,
        "precision": args.precision,
        "decoder": args.decoder,
        "preprocessing": DECODERS[args.decoder][1],
        "image_root": os.path.abspath(args.root) if args.root else os.getcwd(),
        "created_by": "xray_to_hdf5.py",
    }


def resume_position(output, attrs, overwrite):
    """First row still to embed: 0 for a fresh run, else where OUTPUT.partial stopped. Runs on rank 0."""
    partial = output + PARTIAL_SUFFIX
    if not os.path.exists(partial):
        return 0
    try:
        with h5py.File(partial, "r") as f:
            stored = {key: _plain(f.attrs.get(key, RESUME_DEFAULTS.get(key))) for key in RESUME_KEYS}
            rows_done = int(f.attrs.get("rows_done", 0))
            valid = HDF5_DATASET in f and f[HDF5_DATASET].shape == (attrs["csv_rows"], attrs["embedding_dim"])
    except OSError as err:
        if "lock" in str(err).lower():
            raise UserError(f"{partial}: in use by another run (close it, or wait for it to finish)") from None
        log.warning("%s: unfinished file is unreadable (killed while writing?); starting over", partial)
        os.remove(partial)
        return 0
    different = [key for key in RESUME_KEYS if stored[key] != attrs[key]]
    if not valid and not different:
        different = ["dataset shape"]
    if different:
        if not overwrite:
            raise UserError(f"{partial}: unfinished run made with a different {', '.join(different)}; it cannot be "
                            "resumed with these inputs: delete it, or pass --overwrite to start over")
        log.warning("%s: unfinished run made with a different %s; starting over (--overwrite)", partial,
                    ", ".join(different))
        os.remove(partial)
        return 0
    log.info("%s: resuming an unfinished run at row %d of %d", partial, rows_done, attrs["csv_rows"])
    return rows_done


def _plain(value):
    """An HDF5 attribute as a plain Python value, for comparison."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_all_images(paths, csv_path, ranks, threads):
    """--check: open every image (shared among processes) and stop with the list of all unreadable ones."""
    rows = list(range(ranks.rank, len(paths), ranks.world_size))
    with tqdm(total=len(rows), desc="checking images", unit="img", disable=ranks.rank != 0,
              dynamic_ncols=True) as bar:
        bad = check_images(paths, rows, threads=max(threads, 1), progress=bar)
    bad = sorted(sum(ranks.all_gather_object(bad), []))
    if bad:
        if ranks.rank == 0:
            for row, path, reason in bad:
                log.error("row %d: %s: %s", row, path, reason)
        raise UserError(f"{len(bad)} of {len(paths)} images listed in {csv_path} cannot be read (listed above); "
                        "fix them and run the same command again")
    log.info("checked %d images: all readable", len(paths))


def set_fp32_arithmetic(device, precision):
    """fp32 means fp32 on a GPU too: PyTorch would otherwise run convolutions in TF32."""
    if device.type == "cuda" and precision == "fp32":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def embed_batch(model, images, device, precision="fp32", channels_last=False):
    """(B, 3, H, W) uint8 images -> (B, D) float32 embeddings on ``device``."""
    x = normalize(images, device, channels_last)  # (B, 3, H, W) float32
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        return model(x).float()  # (B, D)


def embed_rows(model, dim, paths, start_row, args, ranks, channels_last):
    """Yield (lo, hi, (hi - lo, D) float32 numpy) on rank 0 for consecutive rows from ``start_row`` on.

    One step covers batch_size x world_size consecutive rows; process r embeds
    the r-th block of batch_size of them. A single process therefore sees the
    very same batches as each process of a multi-process run, and a resumed run
    the same batches as an uninterrupted one.
    """
    batch_size, world = args.batch_size, ranks.world_size
    step_starts = range(start_row, len(paths), batch_size * world)
    my_blocks = [_block(lo, ranks.rank, batch_size, len(paths)) for lo in step_starts]
    # --decoder torchvision on a GPU: workers only read the JPEG bytes; a whole batch is decoded on the GPU.
    decode_on_device = args.decoder == "torchvision" and ranks.device.type == "cuda"
    dataset = XrayImages(paths, read_or_load_xray if decode_on_device else DECODERS[args.decoder][0])
    loader = DataLoader(dataset, batch_sampler=[list(b) for b in my_blocks if len(b)],
                        collate_fn=collate_items if decode_on_device else None,
                        num_workers=args.num_workers, pin_memory=ranks.device.type == "cuda")
    batches = iter(loader)
    bar = tqdm(total=len(paths), initial=start_row, desc="embedding", unit="img", smoothing=0.05,
               dynamic_ncols=True, disable=ranks.rank != 0)
    try:
        for lo, block in zip(step_starts, my_blocks):
            embeddings, failure = None, None
            if len(block):
                rows, images, errors = next(batches)
                if decode_on_device:
                    images, decode_errors = decode_batch(images, [paths[int(r)] for r in rows], ranks.device)
                    errors = [e or d for e, d in zip(errors, decode_errors)]
                failure = next(((int(r), e) for r, e in zip(rows, errors) if e), None)
                if failure is None:
                    embeddings = embed_batch(model, images, ranks.device, args.precision, channels_last)
            failures = [f for f in ranks.all_gather_object(failure) if f is not None]
            if failures:
                row, reason = min(failures)
                raise UserError(f"row {row} of {args.data}: cannot read image {paths[row]} ({reason})")
            hi = min(lo + batch_size * world, len(paths))
            lengths = [len(_block(lo, r, batch_size, len(paths))) for r in range(world)]
            gathered = ranks.gather_blocks(embeddings, batch_size, dim, lengths)
            if ranks.rank == 0:
                yield lo, hi, gathered
            bar.update(hi - lo)
    finally:
        bar.close()
        _close_loader(batches)


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


class EmbeddingWriter:
    """OUTPUT.partial: the (rows, D) dataset filled in batches, with the number of finished rows in ``rows_done``.

    Each batch is written and flushed before ``rows_done`` moves past it, so a
    killed run never claims rows it has not stored.
    """

    def __init__(self, path, file, rows_done, created):
        self.path, self.file, self.rows_done, self.created = path, file, rows_done, created

    @classmethod
    def open(cls, path, rows, dim, attrs, start_row):
        created = not os.path.exists(path)
        try:
            file = h5py.File(path, "a" if not created else "w")
        except OSError as err:
            raise UserError(f"{path}: cannot open for writing ({str(err).splitlines()[0]})") from None
        if created:
            file.create_dataset(HDF5_DATASET, shape=(rows, dim), dtype=np.float32)
            file.attrs.update(attrs)
            file.attrs["rows_done"] = 0
            file.attrs["complete"] = False
            file.flush()
        return cls(path, file, start_row, created)

    def write(self, lo, embeddings):
        """Store rows lo .. lo + len(embeddings); they must follow the rows already done."""
        assert lo == self.rows_done, (lo, self.rows_done)
        hi = lo + len(embeddings)
        self.file[HDF5_DATASET][lo:hi] = embeddings
        self.file.flush()
        self.file.attrs["rows_done"] = hi
        self.file.flush()
        self.rows_done = hi

    def finish(self, output):
        """Mark the file complete and rename it to ``output`` (atomically replacing an older one)."""
        self.file.attrs["complete"] = True
        self.file.close()
        os.replace(self.path, output)

    def abandon(self):
        """Close after a failure; keep the file when it holds finished rows. Returns what happened, for the user."""
        self.file.close()
        if self.rows_done == 0 and self.created:
            os.remove(self.path)
            return "nothing was written"
        return (f"the {self.rows_done} finished rows are kept in {self.path}: rerun the same command to resume "
                "from there")


class Ranks:
    """This process's place in a torchrun launch (or a single process), and the few collectives needed."""

    def __init__(self, rank, world_size, device):
        self.rank, self.world_size, self.device = rank, world_size, device

    @classmethod
    def from_environment(cls, device_name):
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = resolve_device(device_name, local_rank)
        if world_size == 1:
            return cls(0, 1, device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), world_size, device)

    def broadcast_outcome(self, function):
        """Run ``function`` on rank 0 and give every rank its result, or the same UserError."""
        outcome = [None]
        if self.rank == 0:
            try:
                outcome = [("ok", function())]
            except UserError as err:
                outcome = [("error", str(err))]
        if self.world_size > 1:
            dist.broadcast_object_list(outcome, src=0)
        status, value = outcome[0]
        if status == "error":
            raise UserError(value)
        return value

    def all_gather_object(self, obj):
        if self.world_size == 1:
            return [obj]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def gather_blocks(self, embeddings, batch_size, dim, lengths):
        """Each rank's (lengths[rank], D) block -> their concatenation in rank order, as numpy (B * ranks, D)."""
        if self.world_size == 1:
            return embeddings.cpu().numpy()
        padded = torch.zeros(batch_size, dim, device=self.device)  # (B, D): every rank sends the same shape
        if embeddings is not None:
            padded[:len(embeddings)] = embeddings
        blocks = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(blocks, padded)
        return torch.cat([b[:n] for b, n in zip(blocks, lengths)]).cpu().numpy()

    def barrier(self):
        if self.world_size > 1:
            dist.barrier()

    def close(self):
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def resolve_device(name, local_rank=0):
    if name is None:
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device: unknown device {name!r} (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    elif device.type != "cpu":
        raise UserError(f"--device {name}: use cpu, cuda or cuda:N")
    return device


def _raise_keyboard_interrupt(signum, frame):
    """SIGTERM (a scheduler stopping the job) ends the run like Ctrl-C: the unfinished file is closed cleanly."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    run_cli(main)
