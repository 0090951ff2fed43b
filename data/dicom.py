"""Reading DICOM X-rays as the 8-bit grey pictures a radiologist sees (docs/embedding.md#dicom-files).

A DICOM file stores raw detector values, not a picture: 12 bits in a 16-bit
container, a rescale to other units, a window the modality chose for display,
and sometimes MONOCHROME1 (the lowest value is white). Converting it as if it
were a 16-bit PNG gives a dark, washed-out or inverted picture that the encoder
embeds without complaint. Here every step is pydicom's own (pydicom.pixels):

    stored values (pixel_array) -> modality LUT (RescaleSlope / RescaleIntercept, or a Modality LUT)
    -> VOI: the first VOI LUT, else the first window (WindowCenter / WindowWidth), else none
    -> the output range of that step scaled to 0..255 (rounded): the LUT's entry bits (fewer when its largest
       entry needs fewer), the stored range the window maps onto, or (no VOI step) the whole stored range of
       BitsStored through the modality LUT
    -> inverted (255 - value) for MONOCHROME1 or PresentationLUTShape INVERSE

``WINDOWING`` names the rules (xray_to_hdf5.py --dicom_windowing); the HDF5 file records the one used.
Files that are not single-frame grey radiographs are refused with one reason (``header_problem``), and a
compressed transfer syntax without a decoder names the package that decodes it. Errors are ValueError, so
that the image loading in data/images.py reports them as it reports any unreadable image.
"""
import warnings

import numpy as np
from PIL import Image

DICOM_SUFFIXES = (".dcm", ".dicom")
PREAMBLE_SIZE, MAGIC = 128, b"DICM"  # a DICOM file (Part 10) has 'DICM' after a 128-byte preamble
# --dicom_windowing: which of the file's VOI steps to use, each falling back to the next.
WINDOWING = {
    "voi_lut": "the file's first VOI LUT, else its first window (WindowCenter/WindowWidth), else the full stored "
               "range (BitsStored)",
    "window": "the file's first window (WindowCenter/WindowWidth; a VOI LUT is ignored), else the full stored "
              "range (BitsStored)",
    "full_range": "the full stored range (BitsStored); the file's VOI LUT and window are ignored",
}
DEFAULT_WINDOWING = "voi_lut"
DESCRIPTION = ("DICOM: pydicom pixel_array -> modality LUT (rescale slope/intercept) -> VOI step ({rule}) -> "
               "its output range scaled to 8 bits (rounded) -> MONOCHROME1 / PresentationLUTShape INVERSE "
               "inverted")
# Modalities of projection radiographs: computed and digital radiography, film, mammography, dental. 'OT'
# (other) and a blank Modality are accepted too: converters and anonymisers often write them.
RADIOGRAPH_MODALITIES = {"CR", "DX", "RG", "MG", "IO", "PX", "OT", ""}
MODALITY_NAMES = {"CT": "computed tomography", "MR": "magnetic resonance", "US": "ultrasound",
                  "NM": "nuclear medicine", "PT": "PET", "XA": "X-ray angiography", "RF": "fluoroscopy",
                  "SR": "a structured report", "SEG": "a segmentation", "PR": "a presentation state"}
GREY = ("MONOCHROME1", "MONOCHROME2")
# The packages whose pydicom plugins decode each family of compressed transfer syntaxes.
JPEG_PLUGIN = "pip install pylibjpeg pylibjpeg-libjpeg"
JPEG2000_PLUGIN = "pip install pylibjpeg pylibjpeg-openjpeg"
RLE_PLUGIN = "pip install pylibjpeg pylibjpeg-rle"  # pydicom decodes RLE itself; this is its faster plugin
PLUGIN_FOR_SYNTAX = {"1.2.840.10008.1.2.4.50": JPEG_PLUGIN, "1.2.840.10008.1.2.4.51": JPEG_PLUGIN,
                     "1.2.840.10008.1.2.4.57": JPEG_PLUGIN, "1.2.840.10008.1.2.4.70": JPEG_PLUGIN,
                     "1.2.840.10008.1.2.4.80": JPEG_PLUGIN, "1.2.840.10008.1.2.4.81": JPEG_PLUGIN,
                     "1.2.840.10008.1.2.4.90": JPEG2000_PLUGIN, "1.2.840.10008.1.2.4.91": JPEG2000_PLUGIN,
                     "1.2.840.10008.1.2.4.201": JPEG2000_PLUGIN, "1.2.840.10008.1.2.4.202": JPEG2000_PLUGIN,
                     "1.2.840.10008.1.2.4.203": JPEG2000_PLUGIN, "1.2.840.10008.1.2.5": RLE_PLUGIN}


def is_dicom(path):
    """True for a file named .dcm / .dicom, or holding 'DICM' at byte 128 (DICOM files often have no suffix)."""
    if str(path).lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(PREAMBLE_SIZE + len(MAGIC))
    except OSError:
        return False  # the image reader names the problem
    return head[PREAMBLE_SIZE:] == MAGIC


def read_header(path, stop_before_pixels=False):
    """pydicom's Dataset of the file at ``path``; ValueError with a short reason when it is not DICOM."""
    try:
        import pydicom  # imported here: only runs that meet a DICOM file need it
        from pydicom.errors import InvalidDicomError
    except ImportError:
        raise ValueError("reading DICOM files needs pydicom, which is not installed: pip install pydicom") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about every non-conformant value it reads
            return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        raise ValueError("not a DICOM file (no 'DICM' at byte 128)") from None
    except (EOFError, OSError, KeyError, TypeError, ValueError, OverflowError) as err:
        if isinstance(err, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise ValueError(f"unreadable DICOM file ({_first_line(err)})") from None


def header_problem(ds):
    """Why the image of ``ds`` (a header, pixels not needed) cannot be embedded as an X-ray, or None."""
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality not in RADIOGRAPH_MODALITIES:
        what = f" ({MODALITY_NAMES[modality]})" if modality in MODALITY_NAMES else ""
        return (f"DICOM Modality {modality}{what} is not a radiograph; only "
                f"{', '.join(sorted(m for m in RADIOGRAPH_MODALITIES if m))} (or none) are embedded")
    if "Rows" not in ds or "Columns" not in ds:
        return "DICOM file without an image (no Rows/Columns)"
    frames = ds.get("NumberOfFrames", 1)
    if frames not in (None, "") and int(frames) > 1:
        return f"multi-frame DICOM ({int(frames)} frames); only single-frame X-rays are embedded"
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if samples != 1:
        return f"colour DICOM (SamplesPerPixel {samples}, {photometric or 'no PhotometricInterpretation'}); " \
               "only grey-scale X-rays are embedded"
    if photometric not in GREY:
        return f"DICOM PhotometricInterpretation {photometric or '(none)'}; only MONOCHROME1 and MONOCHROME2 are read"
    return None


def read_dicom(path, windowing=DEFAULT_WINDOWING):
    """The X-ray in the DICOM file at ``path`` as an 8-bit grey PIL image ('L'), by the rule ``windowing``."""
    ds = read_header(path)
    if "PixelData" not in ds:
        kind = "float pixels" if ("FloatPixelData" in ds or "DoubleFloatPixelData" in ds) else "no PixelData"
        return _refuse(f"DICOM file without an image ({kind})")
    problem = header_problem(ds)
    if problem:
        return _refuse(problem)
    pixels = decode_pixels(ds)  # (rows, columns) stored values
    try:
        return Image.fromarray(to_eight_bits(pixels, ds, windowing), mode="L")
    except (AttributeError, KeyError, TypeError, IndexError, NotImplementedError) as err:  # a broken header
        return _refuse(f"cannot apply the DICOM rescale or window ({_first_line(err)})")


def decode_pixels(ds):
    """The stored pixel values as a 2-D array, decoded by pydicom (and its plugins, for compressed files)."""
    from pydicom.pixels import get_decoder
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is not None and syntax.is_compressed:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            return _refuse(f"DICOM transfer syntax {syntax.name} ({syntax}) cannot be decoded by pydicom")
        if not decoder.is_available:
            install = PLUGIN_FOR_SYNTAX.get(str(syntax)) or "; ".join(decoder.missing_dependencies)
            return _refuse(f"DICOM transfer syntax {syntax.name} ({syntax}) needs a decoder plugin that is not "
                           f"installed: {install}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = ds.pixel_array
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError, NotImplementedError, EOFError) as err:
        return _refuse(f"cannot decode the DICOM pixels ({_first_line(err)})")
    if pixels.ndim != 2:
        return _refuse(f"DICOM pixels of shape {pixels.shape}; one grey frame expected")
    return pixels


def to_eight_bits(pixels, ds, windowing=DEFAULT_WINDOWING):
    """Stored values (2-D) -> uint8 picture: modality LUT, VOI step by ``windowing``, scaled, MONOCHROME1 inverted."""
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing
    if windowing not in WINDOWING:
        raise ValueError(f"unknown DICOM windowing rule {windowing!r}; one of {', '.join(WINDOWING)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = apply_modality_lut(pixels, ds)
        if windowing == "voi_lut" and has_voi_lut(ds):
            entries, first, bits = (int(v) for v in ds.VOILUTSequence[0].LUTDescriptor)
            if bits == 8:
                # pydicom 3.0's apply_voi indexes an 8-bit LUT with uint8 indices, which wrap above 255 (before
                # clipping to the LUT's length); declared as 16 bits (the entries are the same numbers) it uses uint16.
                ds.VOILUTSequence[0].LUTDescriptor = [entries, first, 16]
            # The LUT's output range is 0 .. 2^bits - 1; some devices (Agfa CRs) declare 16 bits for 12-bit
            # entries, so, as Horos and Cornerstone do, fewer bits are taken when the largest entry needs fewer.
            largest = int(apply_voi(np.arange(first, first + (entries or 2 ** 16), dtype=np.int64), ds).max())
            low, high = 0.0, float(2 ** min(bits, max(8, largest.bit_length())) - 1)
            values = apply_voi(np.rint(values).astype(np.int64) if values.dtype.kind == "f" else values, ds)
        elif windowing in ("voi_lut", "window") and has_window(ds):
            values = apply_windowing(values, ds)
            with np.errstate(all="ignore"):  # the ends of the window's output range, as apply_windowing maps them
                low, high = apply_windowing(np.array([-np.inf, np.inf]), ds)
        else:
            low, high = stored_range(ds)
    scaled = (np.asarray(values, dtype=np.float64) - low) * (255.0 / max(high - low, 1e-12))
    eight = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return 255 - eight if is_inverted(ds) else eight


def has_voi_lut(ds):
    """A VOI LUT that pydicom's apply_voi can use (its first item has a descriptor and data)."""
    items = ds.get("VOILUTSequence")
    return bool(items) and "LUTDescriptor" in items[0] and "LUTData" in items[0]


def has_window(ds):
    return ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None


def stored_range(ds):
    """(low, high) of every value BitsStored can hold, through the modality LUT (rescale) as the pixels go."""
    from pydicom.pixels import apply_modality_lut
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    ends = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] if signed else [0, 2 ** bits - 1], dtype=np.float64)
    low, high = sorted(float(v) for v in apply_modality_lut(ends, ds))  # a negative slope swaps them
    return low, high


def is_inverted(ds):
    """MONOCHROME1 (lowest value white), or PresentationLUTShape INVERSE: one inversion either way, as the
    standard pairs them (DX images: MONOCHROME1 with INVERSE)."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
    return photometric == "MONOCHROME1" or shape == "INVERSE"


def check_dicom(path, windowing=DEFAULT_WINDOWING):
    """None when the DICOM file at ``path`` reads as an X-ray, else the reason (xray_to_hdf5.py --check)."""
    try:
        read_dicom(path, windowing)
    except (OSError, ValueError) as err:
        return _first_line(err)
    return None


def _refuse(reason):
    raise ValueError(reason)


def _first_line(err):
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
