"""Reading chest X-ray images and preparing them for the encoder exactly as SPEC §10 says.

The preprocessing is that of MoCo-CXR: convert to RGB, resize so the shorter
side is 320 (bilinear, keeping the aspect ratio), centre-crop 320 x 320, scale
to [0, 1], normalise with the CXR mean and std on every channel. It is split
into steps a benchmark can time one by one:

* ``decode``           file -> PIL image (grey-scale images stay one channel)
* ``resize_and_crop``  PIL image -> 320 x 320 PIL image
* ``to_uint8_tensor``  -> (3, 320, 320) uint8; this is what DataLoader workers send
* ``normalize``        uint8 batch -> float32 batch, on the model's device

A faster path (``--decoder torchvision``, not the default) decodes JPEGs with
``torchvision.io.decode_jpeg`` (on the GPU when there is one) and resizes the
uint8 tensor with antialiased bilinear interpolation: ``load_xray_torchvision``
does it all in a DataLoader worker on the CPU; for a GPU, workers only read the
bytes (``read_or_load_xray``) and ``decode_batch`` decodes a whole batch there.
Other files, and JPEGs that torchvision refuses, go through PIL. It is not
bit-identical to the reference: the tests require every embedding's cosine
similarity to the reference to be at least 0.999.

Sending uint8 instead of float32 moves a quarter of the bytes to the GPU. A
grey-scale image (CheXpert's JPEGs) is resized as one channel and repeated
three times: Pillow resamples each channel independently with the same
integer arithmetic, so this equals converting to RGB first, at a third of the
cost (the tests check it against the plain torchvision pipeline).
"""
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as tvf

from utils.errors import UserError

IMAGE_SIZE = 320      # shorter side after resizing, and the side of the centre crop (MoCo-CXR)
CXR_MEAN = 0.5020     # mean of CheXpert pixel values in [0, 1], the same on every channel
CXR_STD = 0.085585    # their standard deviation
RESAMPLE = Image.BILINEAR  # torchvision's Resize default
# Recorded in every HDF5 file, so that embeddings made another way are never mixed up with these.
PREPROCESSING = (f"RGB; resize shorter side to {IMAGE_SIZE} (bilinear, keep aspect ratio, torchvision rounding); "
                 f"centre crop {IMAGE_SIZE}x{IMAGE_SIZE}; scale to [0,1]; normalise mean {CXR_MEAN} std {CXR_STD}")
PREPROCESSING_TORCHVISION = (f"JPEG: torchvision.io.decode_jpeg, resize uint8 tensor shorter side to {IMAGE_SIZE} "
                             "(bilinear with antialias, keep aspect ratio, torchvision rounding); other files: as "
                             f"PIL; centre crop {IMAGE_SIZE}x{IMAGE_SIZE}; grey repeated to RGB; scale to [0,1]; "
                             f"normalise mean {CXR_MEAN} std {CXR_STD}")
JPEG_START, JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"  # SOI marker (and the first byte of the next); EOI marker


def decode(path):
    """Open and decode the image file at ``path``; grey-scale and RGB images keep their mode."""
    with Image.open(path) as image:
        image.load()  # the pixels stay in memory after the file is closed
    return image if image.mode in ("L", "RGB") else image.convert("RGB")


def resized_size(width, height, size=IMAGE_SIZE):
    """(width, height) with the shorter side ``size``, the longer one truncated as torchvision does."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def resize_and_crop(image, size=IMAGE_SIZE):
    """Resize the shorter side to ``size`` and take the central ``size`` x ``size`` square."""
    width, height = resized_size(*image.size, size)
    image = image.resize((width, height), RESAMPLE)
    left = int(round((width - size) / 2.0))
    top = int(round((height - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def to_uint8_tensor(image):
    """PIL image (L or RGB) -> (3, H, W) uint8 tensor; a grey-scale image is repeated on three channels."""
    pixels = np.asarray(image)  # (H, W) or (H, W, 3); copied below, in NumPy (cheaper than torch for this)
    if pixels.ndim == 2:
        return torch.from_numpy(np.stack([pixels] * 3))  # (3, H, W)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))  # (H, W, 3) -> (3, H, W)


def load_xray(path):
    """The preprocessed image at ``path`` as a (3, 320, 320) uint8 tensor."""
    return to_uint8_tensor(resize_and_crop(decode(path)))


def read_jpeg(path):
    """The bytes of the file at ``path`` as a 1-D uint8 tensor if it looks like a whole JPEG, else None.

    A file that does not end with the end-of-image marker (truncated, or with
    bytes after it) is left to PIL, which names the problem as the reference does.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except (OSError, ValueError):
        return None  # PIL reports it
    if data[:3].tobytes() != JPEG_START or data[-2:].tobytes() != JPEG_END:
        return None
    return torch.from_numpy(data)


def decode_jpegs(data, device="cpu"):
    """``torchvision.io.decode_jpeg`` of one 1-D uint8 tensor or a list of them, channels as stored (1 or 3).

    torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec; they still work, and the
    warning is silenced here only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.UNCHANGED, device=device)


def resize_and_crop_tensor(image, size=IMAGE_SIZE):
    """(C, H, W) uint8 tensor, C = 1 or 3 -> (3, size, size) uint8 on the same device.

    The sizes and the crop are those of ``resize_and_crop``; the interpolation is
    torchvision's bilinear with antialias (close to PIL's, not bit-identical).
    """
    width, height = resized_size(image.shape[-1], image.shape[-2], size)
    image = tvf.resize(image, [height, width], antialias=True)  # (C, height, width)
    image = tvf.center_crop(image, [size, size])  # (C, size, size)
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def load_xray_torchvision(path):
    """Like ``load_xray``, decoding a JPEG with torchvision and resizing the tensor; other files go through PIL."""
    data = read_jpeg(path)
    if data is not None:
        try:
            image = decode_jpegs(data)  # (C, H, W) uint8
        except RuntimeError:
            image = None
        if image is not None and image.shape[0] in (1, 3):
            return resize_and_crop_tensor(image)
    return load_xray(path)


def read_or_load_xray(path):
    """For decoding on the GPU: a whole JPEG's bytes (1-D uint8); any other image preprocessed by PIL (3, 320, 320)."""
    data = read_jpeg(path)
    return data if data is not None else load_xray(path)


def decode_batch(items, paths, device):
    """Finish a batch of ``read_or_load_xray`` items on ``device``: -> ((B, 3, 320, 320) uint8, [error or ""]).

    The JPEG bytes are decoded in one batched call (nvjpeg on a GPU), then
    resized and cropped there. If that call fails (one bad file fails it all),
    the images are decoded one by one, and any still refused go through PIL,
    which names the problem. ``paths[i]`` is the file of ``items[i]``.
    """
    images = torch.zeros(len(items), 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8, device=device)
    errors = [""] * len(items)
    jpegs = [i for i, item in enumerate(items) if item.ndim == 1]
    try:
        decoded = decode_jpegs([items[i] for i in jpegs], device) if jpegs else []
    except RuntimeError:
        decoded = [_decode_or_none(items[i], device) for i in jpegs]
    decoded = dict(zip(jpegs, decoded))
    for i, item in enumerate(items):
        image = decoded.get(i)
        if item.ndim == 3:  # preprocessed by PIL in a worker
            images[i] = item.to(device, non_blocking=True)
        elif image is not None and image.shape[0] in (1, 3):
            images[i] = resize_and_crop_tensor(image)
        else:
            try:
                images[i] = load_xray(paths[i]).to(device)
            except IMAGE_ERRORS as err:
                errors[i] = read_error(err) or "unreadable"
    return images, errors


def _decode_or_none(data, device):
    try:
        return decode_jpegs(data, device)
    except RuntimeError:
        return None


def collate_items(samples):
    """DataLoader collate for ``read_or_load_xray`` items of different shapes: (rows, [items], [errors])."""
    rows, items, errors = zip(*samples)
    return torch.tensor(rows), list(items), list(errors)


def normalize(batch, device=None, channels_last=False):
    """(B, 3, H, W) uint8 -> float32 on ``device``, scaled to [0, 1] and CXR-normalised.

    The same operations, in the same order, as torchvision's ToTensor and
    Normalize, so the result is bit-identical to that pipeline on the CPU.
    """
    batch = batch.to(device, non_blocking=True) if device is not None else batch
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch.float().div_(255).sub_(CXR_MEAN).div_(CXR_STD)


def read_error(err):
    """A short reason for an image that cannot be read."""
    if isinstance(err, FileNotFoundError):
        return "file not found"
    if isinstance(err, IsADirectoryError):
        return "is a folder, not an image"
    if isinstance(err, PermissionError):
        return "permission denied"
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# What Pillow raises for a file it cannot read: OSError (with UnidentifiedImageError and truncation),
# SyntaxError and ValueError from some format plugins, DecompressionBombError for absurd sizes.
IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
DECODERS = {"pil": (load_xray, PREPROCESSING), "torchvision": (load_xray_torchvision, PREPROCESSING_TORCHVISION)}


class XrayImages(Dataset):
    """The preprocessed images of the given rows, as (row, (3, 320, 320) uint8 tensor, error).

    An unreadable image does not raise inside a DataLoader worker (where the
    row would be lost in a traceback): it comes back as a zero image with the
    reason in ``error``, and the caller stops the run naming the row and path.
    ``load`` (path -> item) is ``load_xray``, another loader of ``DECODERS``, or
    ``read_or_load_xray`` (then an item is JPEG bytes or an image).
    """

    def __init__(self, paths, load=load_xray):
        self.paths, self.load = paths, load

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, row):
        try:
            return row, self.load(self.paths[row]), ""
        except IMAGE_ERRORS as err:
            return row, torch.zeros(3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8), read_error(err) or "unreadable"


def check_image(path):
    """None when the image at ``path`` opens and decodes, else the reason it cannot be read.

    Cheap: a JPEG is decoded at 1/8 scale (libjpeg skips most of the work but
    still reads every byte, so a truncated file is caught); other formats are
    verified by Pillow without decoding the pixels.
    """
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
            else:
                image.verify()
    except IMAGE_ERRORS as err:
        return read_error(err) or "unreadable"
    return None


def check_images(paths, rows, threads=8, progress=None):
    """[(row, path, reason)] for every unreadable image among ``rows``, in row order.

    Pillow releases the GIL while reading, so threads overlap the file reads.
    ``progress`` (a tqdm bar, optional) is advanced once per image.
    """
    bad = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for row, reason in zip(rows, pool.map(lambda r: check_image(paths[r]), rows)):
            if reason is not None:
                bad.append((row, paths[row], reason))
            if progress is not None:
                progress.update(1)
    return bad


def image_paths(frame, csv_path, root=None):
    """The image file of every CSV row: ``Path`` as is when absolute, else joined to ``root`` (default: cwd)."""
    base = os.path.abspath(root) if root else os.getcwd()
    paths = []
    for row, value in enumerate(frame["Path"].tolist()):
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"{csv_path}: row {row} has no image path in column 'Path' (found {value!r})")
        paths.append(value if os.path.isabs(value) else os.path.join(base, value))
    return paths
