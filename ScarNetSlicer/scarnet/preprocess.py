"""The one definition of what the model sees: in-plane crops at a fixed mm grid, normalised.

Training and inference both go through :func:`plane_transform`, :func:`resample_plane` and
:func:`normalise_intensity`, so there is no way for the two to disagree (a bug of the
authors' public code).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Percentiles that map to 0 and 1. Robust to a few hot pixels and to the zero padding
#: of real images; computed on the crop the model sees, so that bias and scanner scale cancel.
NORMALISATION_PERCENTILES = (0.5, 99.5)


def normalise_intensity(plane: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Map the crop's robust intensity range to [0, 1] (float32), clipping the tails.

    ``mask`` restricts the percentile computation to valid (inside-the-image) pixels.
    """
    values = plane[mask] if mask is not None and mask.any() else plane
    low, high = np.percentile(values, NORMALISATION_PERCENTILES)
    if high <= low:
        return np.zeros_like(plane, dtype=np.float32)
    return np.clip((plane - low) / (high - low), 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class PlaneTransform:
    """Affine map from output-crop pixel (row, col) to source-slice pixel (row, col).

    ``source = matrix @ output + offset`` (the convention of ``scipy.ndimage.affine_transform``).
    """

    matrix: np.ndarray  # (2, 2)
    offset: np.ndarray  # (2,)
    out_size: int

    def inverse(self) -> tuple[np.ndarray, np.ndarray]:
        inv = np.linalg.inv(self.matrix)
        return inv, -inv @ self.offset


def plane_transform(center_rc: tuple[float, float], source_spacing_rc: tuple[float, float], out_size: int,
                    out_spacing_mm: float, rotation_rad: float = 0.0, flip: bool = False,
                    scale_rc: tuple[float, float] = (1.0, 1.0), shear: float = 0.0) -> PlaneTransform:
    """Crop of ``out_size``² pixels at ``out_spacing_mm`` centred on source pixel ``center_rc``.

    ``source_spacing_rc`` is the source slice's (row, column) spacing in mm. Rotation, flip,
    scaling and shear are augmentations (identity at inference); they act in millimetres,
    so anisotropic source pixels are handled correctly.
    """
    c, s = np.cos(rotation_rad), np.sin(rotation_rad)
    linear = np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(scale_rc)
    if flip:
        linear = linear @ np.diag([1.0, -1.0])
    # output pixel → mm around the centre → source pixel
    matrix = np.diag(1.0 / np.asarray(source_spacing_rc, dtype=float)) @ linear * out_spacing_mm
    out_center = (out_size - 1) / 2.0
    offset = np.asarray(center_rc, dtype=float) - matrix @ np.array([out_center, out_center])
    return PlaneTransform(matrix, offset, out_size)


def resample_plane(plane: np.ndarray, transform: PlaneTransform, order: int = 1, cval: float = 0.0,
                   mode: str = "constant") -> np.ndarray:
    """Resample a 2D source slice onto the crop (order 1 for images, 0 for labels); outside the slice ``cval``
    (``mode="constant"``) or its edge continued (``mode="nearest"``)."""
    return ndimage.affine_transform(plane, transform.matrix, transform.offset,
                                    output_shape=(transform.out_size, transform.out_size),
                                    order=order, mode=mode, cval=cval, prefilter=False)


#: How :func:`resample_image` fills the crop outside the slice: with the slice's minimum, or its edge continued.
OUTSIDE_MINIMUM, OUTSIDE_EDGE = "minimum", "edge"


def resample_image(plane: np.ndarray, transform: PlaneTransform, outside: str = OUTSIDE_MINIMUM) -> np.ndarray:
    """Resample an image slice onto the crop (linear); outside the slice, its minimum or its edge continued.

    ``OUTSIDE_MINIMUM`` (training, and the whole-slice views that find the heart): not 0, since the pixels within
    half a pixel of the slice's edge blend the fill with the image and count in :func:`normalise_intensity`'s
    percentiles, so a 0 fill made the crop depend on the scanner's intensity offset (PSIR stored with +4096 or
    −2048) wherever the crop passes the edge. The slice's minimum moves with the offset, and normalises to 0 as a 0
    fill did.

    ``OUTSIDE_EDGE`` (the heart crop at inference, :data:`scarnet.inference.HEART_CROP_OUTSIDE`): the edge pixels
    continued, which follow any offset too. Training's crops, cut from EMIDEC's wide fields, do not pass the edge
    (no val exam's heart crop does); an exam cropped close around the heart does, and a frame of constant fill
    there is what the model never saw.
    """
    if outside == OUTSIDE_EDGE:
        return resample_plane(plane, transform, order=1, mode="nearest")
    if outside != OUTSIDE_MINIMUM:
        raise ValueError(f"outside must be {OUTSIDE_MINIMUM!r} or {OUTSIDE_EDGE!r}, not {outside!r}")
    return resample_plane(plane, transform, order=1, cval=float(plane.min()))


def model_crop(plane: np.ndarray, transform: PlaneTransform, inside: np.ndarray,
               outside: str = OUTSIDE_MINIMUM) -> np.ndarray:
    """What the model sees of an image slice: :func:`resample_image` (``outside`` as there), then
    :func:`normalise_intensity` on the pixels ``inside`` the slice (:func:`valid_mask`)."""
    return normalise_intensity(resample_image(plane, transform, outside), inside)


def valid_mask(source_shape: tuple[int, int], transform: PlaneTransform) -> np.ndarray:
    """Pixels of the crop that fall inside the source slice."""
    rows, cols = np.mgrid[0:transform.out_size, 0:transform.out_size]
    points = np.tensordot(transform.matrix, np.stack([rows, cols]).astype(float), axes=1)
    points += transform.offset[:, None, None]
    return ((points[0] >= -0.5) & (points[0] <= source_shape[0] - 0.5)
            & (points[1] >= -0.5) & (points[1] <= source_shape[1] - 0.5))


def resample_back(crop: np.ndarray, transform: PlaneTransform, source_shape: tuple[int, int], order: int = 1,
                  cval: float = 0.0) -> np.ndarray:
    """Resample crop-grid values (e.g. class probabilities) back onto the source slice grid."""
    inv_matrix, inv_offset = transform.inverse()
    return ndimage.affine_transform(crop, inv_matrix, inv_offset, output_shape=source_shape, order=order,
                                    mode="constant", cval=cval, prefilter=False)
