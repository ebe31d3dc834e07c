"""Shared fixtures: geometry helpers and the location of ``../shared`` (absent on a user's checkout)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED = REPO_ROOT.parent / "shared"
EMIDEC = SHARED / "data" / "emidec"

requires_emidec = pytest.mark.skipif(not (EMIDEC / "splits.json").is_file(),
                                     reason="EMIDEC data (../shared/data/emidec) is not present in this checkout")
#: A test that runs the model (or ``scarnet evaluate``, which does) in a file whose other tests need no PyTorch: skipped
#: without it, with this reason (files that need it throughout ``import needs_torch``). Nothing is skipped with it.
TORCH_MISSING = "PyTorch is not installed (pip install torch): this test runs the model or scarnet evaluate"
requires_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason=TORCH_MISSING)


def rotation(axis: tuple[float, float, float], angle_deg: float) -> np.ndarray:
    """A proper rotation matrix (for oblique test geometries)."""
    axis = np.asarray(axis, dtype=float)
    axis /= np.linalg.norm(axis)
    a = np.deg2rad(angle_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


@pytest.fixture
def oblique_direction() -> np.ndarray:
    return rotation((0.3, -0.5, 0.8), 37.0)


def import_slicer_core():
    """The ``slicer`` module of slicer-core (real MRML classes without the app); skips the test without it."""
    try:
        import slicer
    except ImportError as error:
        pytest.skip(f"slicer-core is not importable ({error}); pip install slicer-core to run the MRML tests")
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("the 'slicer' module found has no MRML classes (slicer-core not installed)")
    return slicer


def write_part10(dataset, path) -> None:
    """Save ``dataset`` as a DICOM file (preamble and File Meta Information) with pydicom 3 or 2.4 (the pydicom
    of Python 3.9, as 3D Slicer 5.6–5.8 embed): 2.4 has no ``enforce_file_format``, 3 deprecates
    ``write_like_original``."""
    import pydicom

    if int(pydicom.__version__.split(".")[0]) >= 3:
        dataset.save_as(path, enforce_file_format=True)
    else:
        dataset.save_as(path, write_like_original=False)


def write_emidec_like_nifti(path: Path) -> np.ndarray:
    """A NIfTI with EMIDEC's header at ``path``: pixdim 1.40625×1.40625×13 mm (read, as ITK and Slicer do) and an
    "aligned" sform of 1 mm voxels (what nibabel and FSL read), no qform; returns its data (40×30×6, a bright block)."""
    import nibabel

    data = np.zeros((40, 30, 6), np.float32)
    data[10:20, 5:15] = 1.0
    image = nibabel.Nifti1Image(data, None)
    image.set_sform(np.diag([-1.0, -1.0, 1.0, 1.0]), code=2)
    image.set_qform(None, code=0)
    image.header.set_zooms((1.40625, 1.40625, 13.0))
    nibabel.save(image, str(path))
    return data
