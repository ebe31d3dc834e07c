"""The bundled sample LGE volume (a synthetic phantom), registered in Slicer's Sample Data module.

The file ``Resources/SampleData/ScarNetPhantomLGE.nrrd`` is ``scarnet.phantom.make_phantom(seed=7)``
(an oblique short-axis stack with an infarct) rounded to uint16, as MR scanners store images.
It is committed, so Sample Data loads it from a local ``file://`` URI and checks its SHA-256 like
any download. ``ScarNetPhantomLGE.seg.nrrd`` beside it is the phantom's exact labelmap (ground
truth on the same grid): compare the model's result with it, and ScarNetSlicerTest uses it as a
stand-in model while no weights are bundled. The phantom generator has changed since the file was
made (today's ``make_phantom(seed=7)`` is another phantom); the committed pair is kept as it is, and
its segmentation's names, colours and terminology are checked against what :func:`scarnet.io.write_seg_nrrd`
writes now. To make a new pair from today's generator (Sample Data's checksum changes with it)::

    python -c "from ScarNetSlicerLib.sample_data import write_sample; print(write_sample())"

run from the ``ScarNetSlicer`` folder, then paste the printed checksum into :data:`SHA256`.
"""

from __future__ import annotations

from pathlib import Path

from scarnet.io import sha256_of

SEED = 7
SAMPLE_NAME = "ScarNetPhantomLGE"
CATEGORY = "ScarNet"
FILE_NAME = f"{SAMPLE_NAME}.nrrd"
TRUTH_FILE_NAME = f"{SAMPLE_NAME}.seg.nrrd"
NODE_NAME = SAMPLE_NAME
#: SHA-256 of the committed file (Sample Data verifies it after "downloading" it into its cache).
SHA256 = "2807f4ff0b5b0f05ab74adc8780d21ac5cb202041117cdad1af0f5438d8d4e25"

RESOURCES = Path(__file__).resolve().parent.parent / "Resources"
SAMPLE_PATH = RESOURCES / "SampleData" / FILE_NAME
TRUTH_PATH = RESOURCES / "SampleData" / TRUTH_FILE_NAME
THUMBNAIL_PATH = RESOURCES / "Icons" / f"{SAMPLE_NAME}.png"


def make_sample_volume():
    """The sample as an engine ``Volume`` (uint16) and the phantom's exact labelmap."""
    import numpy as np

    from scarnet.phantom import make_phantom

    phantom = make_phantom(seed=SEED)
    image = phantom.image.with_array(np.clip(np.rint(phantom.image.array), 0, 65535).astype(np.uint16))
    return image, phantom.labelmap


def write_sample(path: str | Path = SAMPLE_PATH, truth_path: str | Path = TRUTH_PATH) -> str:
    """Write the sample NRRD (gzip) and its ground-truth segmentation; return the sample's SHA-256."""
    from scarnet.io import write_seg_nrrd, write_volume

    image, truth = make_sample_volume()
    write_volume(image, path, overwrite=True)
    write_seg_nrrd(truth, truth_path, overwrite=True)
    return sha256_of(path)


def read_truth():
    """The sample's exact labelmap (engine ``Volume``, labels 0-4) from the committed .seg.nrrd."""
    from scarnet.io import read_seg_nrrd

    return read_seg_nrrd(TRUTH_PATH)


def source_arguments() -> dict:
    """Keyword arguments for ``SampleData.SampleDataLogic.registerCustomSampleDataSource``."""
    return {
        "category": CATEGORY,
        "sampleName": SAMPLE_NAME,
        "thumbnailFileName": str(THUMBNAIL_PATH),
        # A file URI: Sample Data copies it into its cache and verifies the checksum, as for a download.
        "uris": SAMPLE_PATH.as_uri(),
        "fileNames": FILE_NAME,
        "nodeNames": NODE_NAME,
        "checksums": f"SHA256:{SHA256}",
    }


__all__ = ["CATEGORY", "FILE_NAME", "NODE_NAME", "SAMPLE_NAME", "SAMPLE_PATH", "SEED", "SHA256", "THUMBNAIL_PATH",
           "TRUTH_FILE_NAME", "TRUTH_PATH", "make_sample_volume", "read_truth", "sha256_of", "source_arguments",
           "write_sample"]
