"""Reading chest X-ray images and preparing them for the encoder exactly as MoCo-CXR's evaluation does (docs/embedding.md#preprocessing-and-encoder).

The preprocessing is that of MoCo-CXR: convert to RGB, resize so the shorter
side is 320 (bilinear, keeping the aspect ratio), centre-crop 320 x 320, scale
to [0, 1], normalise with the CXR mean and std on every channel. It is split
into steps a benchmark can time one by one:

* ``decode``           file -> PIL image, 8 bits per channel (grey-scale images stay one channel;
                       16-bit grey is scaled from its own range to 8 bits, see ``decode``; a DICOM
                       file is windowed to 8-bit grey by data/dicom.py)
* ``resize_and_crop``  PIL image -> 320 x 320 PIL image
* ``to_uint8_tensor``  -> (3, 320, 320) uint8; this is what DataLoader workers send
* ``normalize``        uint8 batch -> float32 batch, on the model's device

Every encoder reads its images through an ``ImagePipeline``: ``decode`` and
``transform`` run in DataLoader workers, ``model_input`` in the main process.
``MocoPipeline`` is the one above; the torchxrayvision and timm encoders
(models/encoders/) bring their own ``transform``, and share ``decode``.

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

from data.dicom import DEFAULT_WINDOWING, check_dicom, is_dicom, read_dicom
from utils.errors import UserError

IMAGE_SIZE = 320      # shorter side after resizing, and the side of the centre crop (MoCo-CXR)
CXR_MEAN = 0.5020     # mean of CheXpert pixel values in [0, 1], the same on every channel
CXR_STD = 0.085585    # their standard deviation
RESAMPLE = Image.BILINEAR  # torchvision's Resize default
MAX_DEFAULT_WORKERS = 8  # a CheXpert-small JPEG decodes in about 1 ms: 8 workers feed several thousand images/s
# Recorded in every HDF5 file, so that embeddings made another way are never mixed up with these.
DECODED = "8 bits per channel (16-bit grey scaled to 8 bits: value/257, rounded)"
PREPROCESSING = (f"RGB, {DECODED}; resize shorter side to {IMAGE_SIZE} (bilinear, keep aspect ratio, torchvision "
                 f"rounding); centre crop {IMAGE_SIZE}x{IMAGE_SIZE}; scale to [0,1]; normalise mean {CXR_MEAN} "
                 f"std {CXR_STD}")
PREPROCESSING_TORCHVISION = (f"JPEG: torchvision.io.decode_jpeg, resize uint8 tensor shorter side to {IMAGE_SIZE} "
                             "(bilinear with antialias, keep aspect ratio, torchvision rounding); other files: as "
                             f"PIL, {DECODED}; centre crop {IMAGE_SIZE}x{IMAGE_SIZE}; grey repeated to RGB; scale "
                             f"to [0,1]; normalise mean {CXR_MEAN} std {CXR_STD}")
# On a GPU: nvjpeg decodes, and torchvision resizes a CUDA uint8 tensor in float32 (its uint8 path is the CPU's
# only) and rounds back, so the pixels differ from the CPU path's: the two are never mixed in one file.
PREPROCESSING_TORCHVISION_GPU = (f"JPEG: torchvision.io.decode_jpeg on the GPU (nvjpeg), resize shorter side to "
                                 f"{IMAGE_SIZE} on the GPU (bilinear with antialias in float32, rounded back to uint8, "
                                 "keep aspect ratio, torchvision rounding); other files: as PIL in the workers, "
                                 f"{DECODED}; centre crop {IMAGE_SIZE}x{IMAGE_SIZE}; grey repeated to RGB; scale to "
                                 f"[0,1]; normalise mean {CXR_MEAN} std {CXR_STD}")
JPEG_START, JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"  # SOI marker (and the first byte of the next); EOI marker
SIXTEEN_BIT_GREY = ("I;16", "I;16L", "I;16B", "I;16N")  # Pillow's modes for 16-bit grey PNG and TIFF files
UINT16_MAX = 65535


def decode(path, dicom_windowing=DEFAULT_WINDOWING):
    """Open and decode the image file at ``path`` -> PIL image, 'L' (grey) or 'RGB', 8 bits per channel.

    A DICOM file (data/dicom.py's ``is_dicom``) is read by pydicom and windowed
    to 8-bit grey by the rule ``dicom_windowing`` (data/dicom.py's WINDOWING).

    Grey-scale and RGB images keep their mode. A 16-bit grey image (Pillow's
    'I;16' modes, or 'I' as older Pillows open 16-bit PNGs) is scaled from its
    own range [0, 65535] to [0, 255], rounding to the nearest level, so that it
    is read as the same picture as its 8-bit export; converting it to RGB would
    clip every value above 255 to white. Pillow itself reads 16-bit RGB PNGs
    as 8-bit RGB (the high byte of each value). Other modes (palette, alpha,
    CMYK, ...) are converted to RGB. Floating-point pixels ('F'), whose range
    is unknown, are refused.
    """
    if is_dicom(path):
        return read_dicom(path, dicom_windowing)
    with Image.open(path) as image:
        image.load()  # the pixels stay in memory after the file is closed
    if image.mode in ("L", "RGB"):
        return image
    if image.mode in SIXTEEN_BIT_GREY or image.mode == "I":
        return Image.fromarray(sixteen_to_eight_bits(np.asarray(image)), mode="L")
    if image.mode == "F":
        raise ValueError("32-bit floating-point pixels, whose range is unknown; save the image with 8 or 16 bits "
                         "per pixel")
    return image.convert("RGB")


def sixteen_to_eight_bits(pixels):
    """(H, W) integer pixels in [0, 65535] -> uint8 round(value * 255 / 65535), i.e. round(value / 257)."""
    if pixels.size and (pixels.min() < 0 or pixels.max() > UINT16_MAX):
        raise ValueError(f"integer pixels outside 0..{UINT16_MAX} (from {pixels.min()} to {pixels.max()}); save the "
                         "image with 8 or 16 bits per pixel")
    # 65535 is odd, so adding its half (32767) and dividing rounds to the nearest level, with no ties.
    return ((pixels.astype(np.uint32) * 255 + UINT16_MAX // 2) // UINT16_MAX).astype(np.uint8)


def is_uniform(image):
    """True when every pixel of a decoded image (PIL image, or (C, H, W) tensor) has the same value.

    An X-ray that is one flat value after decoding is almost always a conversion
    mistake upstream (a wrong bit depth, window or export), so it is reported.
    """
    if isinstance(image, torch.Tensor):
        return bool(uniform_flag(image))
    extrema = image.getextrema()  # (min, max), or one such pair per band
    bands = extrema if isinstance(extrema[0], tuple) else (extrema,)
    return all(low == high for low, high in bands)


def uniform_flag(image):
    """``is_uniform`` of a (C, H, W) tensor as a 0-d bool tensor on its device: read without a device sync."""
    flat = image.flatten(1)  # (C, H * W)
    return (flat == flat[:, :1]).all()


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


def decode_torchvision(path, dicom_windowing=DEFAULT_WINDOWING):
    """A JPEG decoded by torchvision -> (C, H, W) uint8 tensor, C = 1 or 3; any other file -> ``decode(path)``.

    Only 8-bit JPEGs take this path; PNGs and TIFFs, 16-bit ones included, and
    JPEGs that torchvision refuses or decodes to other than 8 bits go through
    ``decode``, so both decoders scale every bit depth the same way.
    """
    data = read_jpeg(path)
    if data is not None:
        try:
            image = decode_jpegs(data)  # (C, H, W) uint8
        except RuntimeError:
            image = None
        if image is not None and image.shape[0] in (1, 3) and image.dtype == torch.uint8:
            return image
    return decode(path, dicom_windowing)


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
    return MocoTorchvisionPipeline().transform(decode_torchvision(path))


def read_or_load_xray(path):
    """For decoding on the GPU: a whole JPEG's bytes (1-D uint8); any other image preprocessed by PIL (3, 320, 320)."""
    pipeline = MocoDeviceDecodePipeline()
    return pipeline.transform(pipeline.decode(path))


def decode_batch(items, paths, device):
    """Finish a batch of ``read_or_load_xray`` items on ``device``.

    Returns ((B, 3, 320, 320) uint8, [error or ""], [uniform]): ``uniform[i]``
    says whether the image decoded here is one flat value (see ``is_uniform``),
    None for items the workers already preprocessed. The JPEG bytes are decoded
    in one batched call (nvjpeg on a GPU), then resized and cropped there. If
    that call fails (one bad file fails it all), the images are decoded one by
    one, and any still refused go through PIL, which names the problem.
    ``paths[i]`` is the file of ``items[i]``.
    """
    images = torch.zeros(len(items), 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8, device=device)
    errors, uniform = [""] * len(items), [None] * len(items)
    jpegs = [i for i, item in enumerate(items) if item.ndim == 1]
    try:
        decoded = decode_jpegs([items[i] for i in jpegs], device) if jpegs else []
    except RuntimeError:
        decoded = [_decode_or_none(items[i], device) for i in jpegs]
    decoded = dict(zip(jpegs, decoded))
    flags = {}  # i -> uniform_flag, read together at the end: one device sync per batch, not one per image
    for i, item in enumerate(items):
        image = decoded.get(i)
        if item.ndim == 3:  # preprocessed by PIL in a worker
            images[i] = item.to(device, non_blocking=True)
            continue
        try:
            if image is None or image.shape[0] not in (1, 3) or image.dtype != torch.uint8:
                image = decode(paths[i])  # PIL decodes it, or names the problem
            flags[i] = uniform_flag(image) if isinstance(image, torch.Tensor) else is_uniform(image)
            images[i] = MocoTorchvisionPipeline().transform(image).to(device)
        except IMAGE_ERRORS as err:
            errors[i] = read_error(err) or "unreadable"
    if flags:
        for i, flat in zip(flags, torch.stack([torch.as_tensor(f, device=device) for f in flags.values()]).tolist()):
            uniform[i] = flat
    return images, errors, uniform


def _decode_or_none(data, device):
    try:
        return decode_jpegs(data, device)
    except RuntimeError:
        return None


def collate_items(samples):
    """DataLoader collate for items of different shapes: (rows, [items], [errors], [uniform])."""
    rows, items, errors, uniform = zip(*samples)
    return torch.tensor(rows), list(items), list(errors), list(uniform)


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


class ImagePipeline:
    """How one encoder's input is made from image files, in two halves.

    In DataLoader workers (so a pipeline must pickle): ``decode`` (path ->
    decoded image) and ``transform`` (decoded image -> one ``shape`` tensor of
    ``dtype``: resized, cropped, perhaps scaled). In the main process:
    ``model_input`` (the stacked batch -> float32 on the model's device).
    ``description`` is recorded in the HDF5 file, so that embeddings made
    another way are never taken for these. ``is_uniform`` looks at the decoded
    image, before any resizing blurs its edges.
    """
    description = ""
    shape = (3, IMAGE_SIZE, IMAGE_SIZE)
    dtype = torch.uint8
    decodes_on_device = False  # True: workers send undecoded items and ``finish_batch`` decodes them
    dicom_windowing = DEFAULT_WINDOWING  # how DICOM files are windowed (xray_to_hdf5.py --dicom_windowing)

    def decode(self, path):
        return decode(path, self.dicom_windowing)

    def is_uniform(self, image):
        return is_uniform(image)

    def transform(self, image):
        raise NotImplementedError

    def model_input(self, batch, device, channels_last=False):
        raise NotImplementedError

    def placeholder(self):
        """The tensor sent in place of an unreadable image (the run stops on it)."""
        return torch.zeros(self.shape, dtype=self.dtype)


class MocoPipeline(ImagePipeline):
    """MoCo-CXR's preprocessing, the reference (--decoder pil): uint8 from the workers, normalised on the device."""
    description = PREPROCESSING

    def transform(self, image):
        return to_uint8_tensor(resize_and_crop(image))  # (3, 320, 320) uint8

    def model_input(self, batch, device, channels_last=False):
        return normalize(batch, device, channels_last)  # (B, 3, 320, 320) float32


class MocoTorchvisionPipeline(MocoPipeline):
    """--decoder torchvision in the workers: JPEGs decoded by torchvision and resized as tensors."""
    description = PREPROCESSING_TORCHVISION

    def decode(self, path):
        return decode_torchvision(path, self.dicom_windowing)

    def transform(self, image):
        if isinstance(image, torch.Tensor):
            return resize_and_crop_tensor(image)  # (3, 320, 320) uint8
        return super().transform(image)


class MocoDeviceDecodePipeline(MocoTorchvisionPipeline):
    """--decoder torchvision on a GPU: workers read a JPEG's bytes, and a whole batch is decoded on the GPU."""
    description = PREPROCESSING_TORCHVISION_GPU
    decodes_on_device = True

    def decode(self, path):
        data = read_jpeg(path)
        return data if data is not None else decode(path, self.dicom_windowing)

    def is_uniform(self, image):
        return None if isinstance(image, torch.Tensor) else is_uniform(image)  # bytes: known once decoded

    def transform(self, image):
        return image if isinstance(image, torch.Tensor) else MocoPipeline.transform(self, image)

    def finish_batch(self, items, paths, errors, uniform, device):
        """Worker items, errors and uniform flags -> ((B, 3, 320, 320) uint8 on ``device``, errors, flags)."""
        images, decode_errors, decoded_uniform = decode_batch(items, paths, device)
        return (images, [e or d for e, d in zip(errors, decode_errors)],
                [u if d is None else d for u, d in zip(uniform, decoded_uniform)])


DECODERS = {"pil": MocoPipeline, "torchvision": MocoTorchvisionPipeline}  # --decoder -> MoCo pipeline


def moco_pipeline(decoder, device):
    """The MoCo pipeline for --decoder on ``device`` (with torchvision on a GPU, JPEGs are decoded there)."""
    if decoder == "torchvision" and device is not None and device.type == "cuda":
        return MocoDeviceDecodePipeline()
    return DECODERS[decoder]()


class XrayImages(Dataset):
    """The images of the given rows through an ``ImagePipeline``, as (row, tensor, error, uniform).

    An unreadable image does not raise inside a DataLoader worker (where the
    row would be lost in a traceback): it comes back as the pipeline's
    placeholder with the reason in ``error``, and the caller stops the run
    naming the row and path. ``uniform`` is ``pipeline.is_uniform`` of the
    decoded image.
    """

    def __init__(self, paths, pipeline):
        self.paths, self.pipeline = paths, pipeline

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, row):
        try:
            image = self.pipeline.decode(self.paths[row])
            return row, self.pipeline.transform(image), "", self.pipeline.is_uniform(image)
        except IMAGE_ERRORS as err:
            return row, self.pipeline.placeholder(), read_error(err) or "unreadable", False


def check_image(path, dicom_windowing=DEFAULT_WINDOWING):
    """None when the image at ``path`` opens and decodes, else the reason it cannot be read.

    Cheap: a JPEG is decoded at 1/8 scale (libjpeg skips most of the work but
    still reads every byte, so a truncated file is caught); other formats are
    verified by Pillow without decoding the pixels. A DICOM file is read whole,
    as embedding reads it (its refusals are only known from the header and pixels).
    """
    if is_dicom(path):
        return check_dicom(path, dicom_windowing)
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


def check_images(paths, rows, threads=8, progress=None, dicom_windowing=DEFAULT_WINDOWING):
    """[(row, path, reason)] for every unreadable image among ``rows``, in row order.

    Pillow releases the GIL while reading, so threads overlap the file reads.
    ``progress`` (a tqdm bar, optional) is advanced once per image.
    """
    bad = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for row, reason in zip(rows, pool.map(lambda r: check_image(paths[r], dicom_windowing), rows)):
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
