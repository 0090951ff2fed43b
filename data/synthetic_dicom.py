"""Writing DICOM files with pydicom, for the tests and bench/embed.py --dicom (pictures from data/synthetic_images.py
or any array; NOT real X-rays).

``write_dicom`` stores a 2-D array of stored values as one single-frame grey image with the header fields a
radiograph has (Modality DX, patient, study and instance UIDs, view, sex, age) and, on request, a rescale, a
window, a VOI LUT, MONOCHROME1 or a compressed transfer syntax (pydicom's encoders).
"""
import os

import numpy as np

DX_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


def write_dicom(path, pixels, *, bits_stored=12, photometric="MONOCHROME2", modality="DX", rescale=None,
                window=None, voi_lut=None, presentation_lut_shape=None, transfer_syntax=None, frames=None,
                header=None):
    """Write ``pixels`` (2-D unsigned ints, or (H, W, 3) for RGB; (F, H, W) with ``frames``) to ``path``.

    ``rescale``: (slope, intercept); ``window``: (center, width); ``voi_lut``: (first mapped value, bits per
    entry, entries); ``transfer_syntax``: a compressed pydicom UID, encoded by pydicom (its plugins);
    ``header``: more elements by keyword (PatientID, PatientSex, PatientAge, ViewPosition, ...).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = np.asarray(pixels)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DX_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DX_IMAGE_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = modality
    ds.PatientID = "P0"
    for keyword, value in (header or {}).items():
        if value is not None and value == value:  # None and NaN (a blank cell of a table) are left out
            setattr(ds, keyword, value)
    colour = pixels.ndim == 3 and frames is None
    ds.set_pixel_data(pixels.astype(np.uint8 if bits_stored <= 8 else np.uint16),
                      "RGB" if colour else photometric, bits_stored)
    if frames is not None:
        ds.NumberOfFrames = frames
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_lut is not None:
        first, bits, entries = voi_lut
        item = Dataset()
        item.LUTDescriptor = [len(entries), first, bits]
        item.add_new("LUTData", "US", [int(v) for v in entries])  # LUTData's VR is ambiguous (US or OW)
        ds.VOILUTSequence = Sequence([item])
    if presentation_lut_shape is not None:
        ds.PresentationLUTShape = presentation_lut_shape
    if transfer_syntax is not None:
        ds.compress(transfer_syntax)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return str(path)
