"""Training examples: real EMIDEC slices and synthetic phantoms, augmented hard, cropped as at inference.

Every example goes through the same crop and normalisation as inference
(:mod:`scarnet.preprocess`). Two views are trained, matching the two inference passes:

* ``heart``: a crop of ``input_size`` pixels at ``pixel_spacing_mm`` around the LV (jittered),
  the view the model segments in;
* ``localise``: the whole field of view squeezed into ``input_size`` pixels, the view the
  model finds the heart in.

Augmentation aims at other scanners and centres (the shipped model is scored on LGE it has
never seen): any rotation and flip (volumes arrive in any in-plane orientation), isotropic
and anisotropic scaling and shear (the PNGs were stretched), mild elastic warps, coil bias
fields, gamma/contrast, random monotone grey-level curves, Rician and Gaussian noise, blur and
lower resolution, Gibbs ringing (MONAI), k-space ghosting and motion (here: TorchIO's are 3D
and import SimpleITK, which the GPU machine lacks), and phantoms with randomised appearance.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ..labels import HEALTHY_MYOCARDIUM, LV_BLOOD_POOL, MYOCARDIUM_LABELS, SCAR, SCAR_LABELS
from ..preprocess import (
    OUTSIDE_EDGE,
    OUTSIDE_MINIMUM,
    PlaneTransform,
    normalise_intensity,
    plane_transform,
    resample_image,
    resample_plane,
    valid_mask,
)
from ..volume import Volume


@dataclass
class SliceSample:
    """One 2D slice with exact labels and its (row, column) pixel spacing in mm."""

    image: np.ndarray
    labels: np.ndarray
    spacing_rc_mm: tuple[float, float]


@dataclass
class AugmentConfig:
    """Probabilities and ranges of every augmentation (saved with the training config)."""

    localise_fraction: float = 0.2
    center_jitter_mm: float = 12.0
    scale_range: tuple[float, float] = (0.8, 1.25)
    anisotropy_range: tuple[float, float] = (0.88, 1.12)
    shear_sd: float = 0.05
    flip_probability: float = 0.5
    elastic_probability: float = 0.25
    bias_field_probability: float = 0.6
    gamma_probability: float = 0.5
    noise_probability: float = 0.5
    # Gaussian noise SD is drawn uniformly in [0, this] × the crop's 99.5th percentile. The
    # evaluation's 5 % noise is about 0.05 on that scale (EMIDEC): at the default only a sixth
    # of the noisy examples are that noisy.
    gaussian_noise_std_max: float = 0.06
    blur_probability: float = 0.2
    low_resolution_probability: float = 0.25
    gibbs_probability: float = 0.15
    ghosting_probability: float = 0.15
    # Ghosting: every n-th phase-encode line (n drawn in this range, inclusive) of k-space is
    # attenuated by a fraction drawn in the attenuation range. The evaluation's TorchIO ghosting
    # attenuates by 0.5–1 with n = 4–10: the defaults, which older configs were trained with, are milder.
    ghosting_line_spacing_range: tuple[int, int] = (2, 6)
    ghosting_attenuation_range: tuple[float, float] = (0.15, 0.6)
    motion_probability: float = 0.1
    # Examples that show no LV where the heart crop would put it: half are crops centred 70–120 mm
    # away from the LV (true labels), half are pixel-scrambled crops labelled all background.
    # Without them a network learns "there is always an LV ring in the middle" and draws one on
    # noise (caught at inference by scarnet.qc's contrast check, but better not learned at all).
    negative_fraction: float = 0.0
    # Tissue contrast as other protocols give it (see tissue_contrast). Off by default so that
    # configs written before it existed still mean what they meant.
    tissue_contrast_probability: float = 0.0
    blood_gain_range: tuple[float, float] = (0.6, 1.5)
    scar_gain_range: tuple[float, float] = (0.8, 1.25)
    myocardium_lift_range: tuple[float, float] = (0.0, 0.4)
    # A random monotone curve of the grey levels (MONAI's RandHistogramShift, with a number of control points drawn
    # in the range): a reconstruction's or a scanner's display curve unlike this centre's. A square-root curve
    # below the blood pool's level cost the bundled model a median 27 % of its scar on EMIDEC val
    # (tools/studies/grey_levels.py). Off by default so that configs written before it existed still mean what
    # they meant.
    intensity_curve_probability: float = 0.0
    intensity_curve_control_points: tuple[int, int] = (4, 10)
    # A field of view cropped close around the heart (an export cut to the heart): the slice cut to its LV and a
    # margin drawn in this range (mm) before the heart crop, which then passes the slice's edge and continues it, as
    # inference's heart crop does (scarnet.inference.HEART_CROP_OUTSIDE). EMIDEC's fields are twice the crop, so
    # without it no training crop passes the edge. Off by default so that configs written before it existed still
    # mean what they meant.
    narrow_field_probability: float = 0.0
    narrow_field_margin_range_mm: tuple[float, float] = (10.0, 50.0)
    extra: dict = field(default_factory=dict)


def ghosting(image: np.ndarray, rng: np.random.Generator, line_spacing_range: tuple[int, int],
             attenuation_range: tuple[float, float]) -> np.ndarray:
    """Ghosts along a phase-encode axis: every n-th k-space line attenuated (as TorchIO's RandomGhosting).

    The ranges are :class:`AugmentConfig`'s ``ghosting_line_spacing_range`` and ``ghosting_attenuation_range``.
    """
    axis = int(rng.integers(2))
    spectrum = np.fft.fftshift(np.fft.fft2(image))
    spacing = int(rng.integers(line_spacing_range[0], line_spacing_range[1] + 1))
    lines = np.arange(image.shape[axis])
    centre = image.shape[axis] // 2
    attenuated = (lines % spacing == 0) & (np.abs(lines - centre) > 2)  # keep the k-space centre (contrast)
    factor = np.where(attenuated, 1.0 - rng.uniform(*attenuation_range), 1.0)
    spectrum *= factor[:, None] if axis == 0 else factor[None, :]
    return np.abs(np.fft.ifft2(np.fft.ifftshift(spectrum))).astype(np.float32)


def motion(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rigid motion during acquisition: k-space lines after a random time come from a moved image."""
    axis = int(rng.integers(2))
    angle = rng.uniform(-4, 4)
    shift = rng.uniform(-4, 4, size=2)
    n = image.shape[axis]
    start = int(rng.uniform(0.55, 0.9) * n) if rng.random() < 0.5 else 0
    stop = n if start else int(rng.uniform(0.1, 0.45) * n)
    return kspace_from_moved(image, axis, [(start, stop, angle, shift)])


def kspace_from_moved(image: np.ndarray, axis: int,
                      moves: Sequence[tuple[int, int, float, Sequence[float]]]) -> np.ndarray:
    """``image`` whose k-space lines ``start:stop`` along ``axis`` (centred spectrum) come from the
    image rotated by ``angle`` degrees and shifted by ``shift`` pixels (rows, columns), per move."""
    spectrum = np.fft.fftshift(np.fft.fft2(image))
    for start, stop, angle, shift in moves:
        moved = ndimage.shift(ndimage.rotate(image, angle, reshape=False, order=1, mode="nearest"), shift, order=1,
                              mode="nearest")
        index = [slice(None), slice(None)]
        index[axis] = slice(start, stop)
        spectrum[tuple(index)] = np.fft.fftshift(np.fft.fft2(moved))[tuple(index)]
    return np.abs(np.fft.ifft2(np.fft.ifftshift(spectrum))).astype(np.float32)


class IntensityAugmenter:
    """MR acquisition effects on a crop (values roughly in [0, 1]): MONAI transforms plus k-space ghosting/motion."""

    def __init__(self, config: AugmentConfig, seed: int) -> None:
        from monai import transforms as T

        c = config
        self.transforms = [
            T.RandBiasField(degree=3, coeff_range=(0.05, 0.45), prob=c.bias_field_probability),
            T.RandAdjustContrast(gamma=(0.55, 1.8), prob=c.gamma_probability),
            T.RandGaussianSmooth(sigma_x=(0.3, 1.2), sigma_y=(0.3, 1.2), prob=c.blur_probability),
            T.RandSimulateLowResolution(zoom_range=(0.45, 0.9), downsample_mode="area", upsample_mode="bilinear",
                                        prob=c.low_resolution_probability),
            T.RandGibbsNoise(alpha=(0.2, 0.7), prob=c.gibbs_probability),
            T.RandRicianNoise(std=0.08, relative=True, sample_std=True, prob=c.noise_probability / 2),
            T.RandGaussianNoise(std=c.gaussian_noise_std_max, sample_std=True, prob=c.noise_probability / 2),
            # Last, so that the transforms above keep the random states older runs had (seed + their index).
            T.RandHistogramShift(num_control_points=c.intensity_curve_control_points,
                                 prob=c.intensity_curve_probability),
        ]
        for i, transform in enumerate(self.transforms):
            transform.set_random_state(seed + i)
        self.config = config
        self.rng = np.random.default_rng(seed + 100)

    def state(self) -> dict[str, Any]:
        """Where every random draw of the augmenter stands (JSON-able); :meth:`restore` continues from there."""
        return {"rng": self.rng.bit_generator.state,
                "transforms": [random_state_to_json(transform.R) for transform in self.transforms]}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue the draws from a :meth:`state`; ValueError (or KeyError, TypeError) for one that does not fit."""
        if len(state["transforms"]) != len(self.transforms):
            raise ValueError(f"{len(state['transforms'])} transform states for {len(self.transforms)} transforms")
        self.rng = generator_from_state(state["rng"])
        for transform, transform_state in zip(self.transforms, state["transforms"]):
            transform.R = random_state_from_json(transform_state)

    def __call__(self, crop: np.ndarray) -> np.ndarray:
        x = crop[None].astype(np.float32)
        scale = float(np.percentile(x, 99.5)) or 1.0
        x = x / scale
        for transform in self.transforms:
            # Contiguous: the grey-level curve's torch.searchsorted warns (once per worker) on a strided view.
            x = transform(x.contiguous() if isinstance(x, torch.Tensor) else x)
        x = np.asarray(x, dtype=np.float32)[0]
        if self.rng.random() < self.config.ghosting_probability:
            x = ghosting(x, self.rng, self.config.ghosting_line_spacing_range,
                         self.config.ghosting_attenuation_range)
        if self.rng.random() < self.config.motion_probability:
            x = motion(x, self.rng)
        return np.maximum(x, 0.0)


def _smooth_mask(mask: np.ndarray, sigma_px: float = 0.8) -> np.ndarray:
    return ndimage.gaussian_filter(mask.astype(np.float32), sigma_px)


def tissue_contrast(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                    config: AugmentConfig) -> np.ndarray:
    """The crop with LGE tissue contrast as another protocol, delay or field strength gives it.

    Why: scar is "brighter than remote myocardium", not "bright". Trained on one centre only, a
    network can learn that centre's levels instead: on EMIDEC's val split the CPU-trained models
    lose about 0.09 scar Dice when the blood pool's contrast is 1.4× (imaged earlier after
    contrast) and 0.04 when healthy myocardium is not fully nulled (inversion time off the null
    point); see ``scarnet evaluate``'s protocol-shift table. (Continuing their training with
    this augmentation did not help them; see docs/experiments.md. It is off unless a config asks.)

    Contrasts are changed relative to the healthy myocardium's level, the tissue the inversion
    time nulls: it stands in for "no signal", which the raw values do not show (EMIDEC is PSIR
    stored with an offset of about 2048; magnitude images put it near 0):

    * blood gain: the LV blood pool's contrast over healthy myocardium, and that of bright tissue
      outside the labelled LV (RV blood, aorta) in proportion to its brightness, scaled together,
      so that blood can be brighter or darker than scar;
    * scar gain: infarct (not MVO) contrast scaled on its own;
    * myocardium lift: healthy myocardium raised by a fraction of the blood-myocardium contrast
      (not nulled), and unlabelled dark tissue by a random share of it in smooth random patches,
      so that "the only grey ring" does not become the cue.

    Masks are blurred by a pixel so that no edge appears that the image did not have. Crops with
    too little blood pool or healthy myocardium to measure are returned unchanged.
    """
    blood = labels == LV_BLOOD_POOL
    healthy = labels == HEALTHY_MYOCARDIUM
    if blood.sum() < 20 or healthy.sum() < 20:
        return image
    blood_level = float(np.median(image[blood]))
    myocardium_level = float(np.median(image[healthy]))
    if blood_level <= myocardium_level:
        return image
    contrast = blood_level - myocardium_level
    outside = 1.0 - _smooth_mask(labels != 0)
    # How blood-like each unlabelled pixel is (0 at the myocardium's level, 1 at the blood's).
    blood_like = np.clip((ndimage.gaussian_filter(image, 1.0) - myocardium_level) / contrast, 0.0, 1.0)

    def log_uniform(bounds: tuple[float, float]) -> float:
        return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))

    blood_gain = log_uniform(config.blood_gain_range)
    scar_gain = log_uniform(config.scar_gain_range)
    lift = rng.uniform(*config.myocardium_lift_range) * contrast
    gain = ((blood_gain - 1.0) * (_smooth_mask(blood) + outside * blood_like)
            + (scar_gain - 1.0) * _smooth_mask(labels == SCAR))
    rows, cols = image.shape
    patches = ndimage.zoom(rng.uniform(0, 1, (4, 4)), (rows / 4, cols / 4), order=1, grid_mode=True,
                           mode="nearest")[:rows, :cols]
    dark_share = rng.uniform(0, 1) * patches * outside * (1.0 - blood_like)
    above_myocardium = np.maximum(image - myocardium_level, 0.0)
    return (image + gain * above_myocardium + lift * (_smooth_mask(healthy) + dark_share)).astype(np.float32)


def _elastic(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, alpha_px: float = 3.0,
             grid: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random displacement (a coarse random grid upsampled), a few pixels at most."""
    size = image.shape[0]
    coarse = rng.normal(0.0, alpha_px / 2, size=(2, grid, grid))
    displacement = np.stack([ndimage.zoom(c, size / grid, order=3) for c in coarse])[:, :size, :size]
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    coords = np.stack([rows + displacement[0], cols + displacement[1]])
    warped = ndimage.map_coordinates(image, coords, order=1, mode="constant")
    warped_labels = ndimage.map_coordinates(labels, coords, order=0, mode="constant")
    return warped, warped_labels


def lv_center_rc(labels: np.ndarray) -> tuple[float, float] | None:
    """Centroid of the LV (blood pool and myocardium) in pixel (row, col), None without LV."""
    lv = (labels == LV_BLOOD_POOL) | np.isin(labels, MYOCARDIUM_LABELS)
    if not lv.any():
        return None
    rows, cols = np.nonzero(lv)
    return float(rows.mean()), float(cols.mean())


def narrow_field(sample: SliceSample, transform: PlaneTransform,
                 margin_mm: float) -> tuple[np.ndarray, np.ndarray, PlaneTransform]:
    """The slice cut in-plane to its LV (labels 1-4) and ``margin_mm`` around it, and ``transform`` moved onto the
    cut, so that every crop pixel keeps its place (an export cropped close around the heart)."""
    rows, cols = np.nonzero(sample.labels > 0)
    margin = np.ceil(margin_mm / np.asarray(sample.spacing_rc_mm, dtype=float)).astype(int)
    row0, col0 = max(int(rows.min()) - margin[0], 0), max(int(cols.min()) - margin[1], 0)
    row1 = min(int(rows.max()) + 1 + margin[0], sample.labels.shape[0])
    col1 = min(int(cols.max()) + 1 + margin[1], sample.labels.shape[1])
    moved = PlaneTransform(transform.matrix, transform.offset - np.array([row0, col0], dtype=float), transform.out_size)
    return sample.image[row0:row1, col0:col1], sample.labels[row0:row1, col0:col1], moved


def make_example(sample: SliceSample, rng: np.random.Generator, input_size: int, pixel_spacing_mm: float,
                 config: AugmentConfig, intensity: IntensityAugmenter | None) -> tuple[np.ndarray, np.ndarray]:
    """One augmented (image (1, S, S) float32 in [0, 1], labels (S, S) int64) training pair."""
    spacing = np.asarray(sample.spacing_rc_mm, dtype=float)
    shape = np.asarray(sample.image.shape, dtype=float)
    center = lv_center_rc(sample.labels)
    negative = rng.random() < config.negative_fraction
    scrambled = negative and rng.random() < 0.5
    heart_crop = False  # a crop around the LV, as inference's heart crop (not a negative, not a whole view)
    if negative and not scrambled and center is not None:
        angle = rng.uniform(0, 2 * np.pi)
        offset_mm = rng.uniform(70, 120) * np.array([np.cos(angle), np.sin(angle)])
        center_rc = np.asarray(center) + offset_mm / spacing
        out_spacing = pixel_spacing_mm
    elif center is None or rng.random() < config.localise_fraction:
        # Whole field of view, as in the localisation pass (see inference.localise_heart).
        center_rc = (shape - 1) / 2 + rng.normal(0, 0.05, 2) * shape
        out_spacing = float((shape * spacing).max()) / input_size * rng.uniform(0.95, 1.15)
    else:
        center_rc = np.asarray(center) + rng.normal(0.0, config.center_jitter_mm / 2, 2) / spacing
        out_spacing = pixel_spacing_mm
        heart_crop = not negative
    scale = rng.uniform(*config.scale_range) * rng.uniform(*config.anisotropy_range, size=2)
    transform = plane_transform(
        tuple(center_rc), tuple(spacing), input_size, out_spacing,
        rotation_rad=rng.uniform(0, 2 * np.pi), flip=bool(rng.random() < config.flip_probability),
        scale_rc=(float(scale[0]), float(scale[1])), shear=float(rng.normal(0, config.shear_sd)),
    )
    source_image, source_labels = sample.image, sample.labels
    outside = OUTSIDE_MINIMUM
    # Drawn only when enabled (and for a heart crop), so that configs without it keep their exact random stream.
    if heart_crop and config.narrow_field_probability > 0 and rng.random() < config.narrow_field_probability:
        source_image, source_labels, transform = narrow_field(sample, transform,
                                                              rng.uniform(*config.narrow_field_margin_range_mm))
        outside = OUTSIDE_EDGE
    image = resample_image(source_image.astype(np.float32), transform, outside)
    labels = resample_plane(source_labels, transform, order=0)
    inside = valid_mask(source_image.shape, transform)
    if rng.random() < config.elastic_probability:
        image, labels = _elastic(image, labels, rng)
    # Drawn only when enabled, so that configs without it keep their exact random stream.
    if not scrambled and config.tissue_contrast_probability > 0 and rng.random() < config.tissue_contrast_probability:
        image = tissue_contrast(image, labels, rng, config)
    if scrambled:
        image = rng.permutation(image.ravel()).reshape(image.shape)
        labels = np.zeros_like(labels)
    if intensity is not None:
        image = intensity(image)
    x = normalise_intensity(image, inside)
    return x[None], labels.astype(np.int64)


class SliceSource:
    """Draws slices from a list of samples, oversampling slices with scar (they are a minority)."""

    def __init__(self, samples: Sequence[SliceSample], scar_weight: float = 2.0) -> None:
        self.samples = list(samples)
        weights = np.array([scar_weight if np.isin(s.labels, SCAR_LABELS).any() else 1.0 for s in self.samples])
        self.probabilities = weights / weights.sum()

    def draw(self, rng: np.random.Generator) -> SliceSample:
        return self.samples[int(rng.choice(len(self.samples), p=self.probabilities))]


def emidec_samples(cases) -> list[SliceSample]:
    """Every slice of the given :class:`~scarnet.train.emidec.EmidecCase` objects."""
    return [SliceSample(case.images[k], case.labels[k], case.spacing_rc_mm)
            for case in cases for k in range(case.images.shape[0])]


def volume_samples(image: Volume, labels: Volume, name: str = "image") -> list[SliceSample]:
    """Every slice of a short-axis stack and its labelmap, stored as inference stores them for the model
    (:func:`scarnet.inference.model_storage`), so that training sees the picture inference will;
    :class:`~scarnet.errors.InputError` for what cannot be a short-axis stack."""
    from ..inference import model_storage

    image, stack, order = model_storage(image, name)
    labels = stack.apply(labels)
    labels = order.apply(labels.with_array(labels.array.astype(np.uint8, copy=False)))
    spacing_rc_mm = (float(image.spacing_mm[1]), float(image.spacing_mm[0]))
    return [SliceSample(np.ascontiguousarray(image.array[k]), np.ascontiguousarray(labels.array[k]), spacing_rc_mm)
            for k in range(image.num_slices)]


class PhantomSource:
    """Slices of synthetic LGE phantoms with randomised appearance, made on demand and cached.

    The cache is known by the seeds of its phantoms (:meth:`state`): a restored source makes them
    again when they are drawn (a phantom is a function of its seed).
    """

    def __init__(self, seed: int, cache_size: int = 24, refresh_probability: float = 0.02) -> None:
        self.seed_rng = np.random.default_rng(seed)
        self.cache: list[list[SliceSample] | None] = []  # None: to be made again from its seed
        self.cache_seeds: list[int] = []
        self.cache_size = cache_size
        self.refresh_probability = refresh_probability

    @staticmethod
    def _volume(seed: int) -> list[SliceSample]:
        from ..phantom import make_phantom

        phantom = make_phantom(seed, randomize_appearance=True)
        spacing = phantom.image.spacing_mm
        return [SliceSample(phantom.image.array[k], phantom.labelmap.array[k], (spacing[1], spacing[0]))
                for k in range(phantom.image.num_slices)]

    def _put_new_volume(self, index: int) -> None:
        """A new phantom at ``index`` of the cache (appended at its end)."""
        seed = int(self.seed_rng.integers(1 << 31))
        if index == len(self.cache):
            self.cache.append(None)
            self.cache_seeds.append(seed)
        self.cache[index], self.cache_seeds[index] = self._volume(seed), seed

    def draw(self, rng: np.random.Generator) -> SliceSample:
        """A slice of a cached phantom (the cache filled, and now and then one of its phantoms replaced, first)."""
        if len(self.cache) < self.cache_size:
            self._put_new_volume(len(self.cache))
        elif rng.random() < self.refresh_probability:
            self._put_new_volume(int(rng.integers(len(self.cache))))
        index = int(rng.integers(len(self.cache)))
        volume = self.cache[index]
        if volume is None:
            volume = self.cache[index] = self._volume(self.cache_seeds[index])
        return volume[int(rng.integers(len(volume)))]

    def state(self) -> dict[str, Any]:
        """Where the source's draws stand (JSON-able): the seeds of the cached phantoms and of those to come."""
        return {"seed_rng": self.seed_rng.bit_generator.state, "cache_seeds": list(self.cache_seeds)}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state`; its phantoms are made again as they are drawn."""
        seeds = state["cache_seeds"]
        if not isinstance(seeds, list) or len(seeds) > self.cache_size or not all(
                isinstance(seed, int) and 0 <= seed < 1 << 31 for seed in seeds):
            raise ValueError("the phantom cache's seeds are unusable")
        self.seed_rng = generator_from_state(state["seed_rng"])
        self.cache_seeds = list(seeds)
        self.cache = [None] * len(seeds)


def generator_from_state(state: Any) -> np.random.Generator:
    """A NumPy generator (PCG64) continuing from ``bit_generator.state``; ValueError/TypeError/KeyError if unusable."""
    generator = np.random.default_rng(0)
    generator.bit_generator.state = state
    return generator


def random_state_to_json(random_state: np.random.RandomState) -> list[Any]:
    """A legacy NumPy ``RandomState`` (MONAI's transforms draw from one) as a JSON-able list."""
    return legacy_state_to_json(random_state.get_state(legacy=True))


def legacy_state_to_json(state: tuple[Any, ...]) -> list[Any]:
    """A ``RandomState``'s legacy state tuple (``get_state(legacy=True)``, ``np.random.get_state()``) as a JSON-able
    list, as :func:`random_state_from_json` reads it."""
    name, key, position, has_gauss, cached_gaussian = state
    return [name, key.tolist(), int(position), int(has_gauss), float(cached_gaussian)]


def random_state_from_json(state: Any) -> np.random.RandomState:
    """The ``RandomState`` of :func:`random_state_to_json`; ValueError/TypeError for a list that is not one."""
    name, key, position, has_gauss, cached_gaussian = state
    random_state = np.random.RandomState()
    random_state.set_state((name, np.asarray(key, dtype=np.uint32), position, has_gauss, cached_gaussian))
    return random_state


class TrainingStream(torch.utils.data.IterableDataset):
    """An endless stream of batches of augmented examples from real slices and phantoms.

    Each data-loading process draws its own random stream, a *lane* (``seed * 1000 + lane``); with
    ``num_workers`` processes a ``DataLoader`` takes batches from them in turn, so global batch
    ``g`` of a run comes from lane ``g % lanes`` (``lanes``: the number of processes, 1 without
    workers). Every batch comes with its lane and the lane's state after it (JSON text): a resumed
    run gives each lane the state of the last batch it trained on (``lane_states``, None: the lane
    starts from its seed) and ``first_lane`` (its step modulo the lanes), and so draws the very
    examples an uninterrupted run would have.

    Yields ``(x (B, 1, S, S) float32, y (B, S, S) int64, lane, lane_state)``.
    """

    def __init__(self, real: Sequence[SliceSample], phantom_fraction: float, input_size: int,
                 pixel_spacing_mm: float, augment: AugmentConfig, seed: int, batch_size: int = 1,
                 lane_states: Sequence[str | None] | None = None, first_lane: int = 0) -> None:
        super().__init__()
        self.real = list(real)
        self.phantom_fraction = phantom_fraction if self.real else 1.0
        self.input_size = input_size
        self.pixel_spacing_mm = pixel_spacing_mm
        self.augment = augment
        self.seed = seed
        self.batch_size = batch_size
        self.lane_states = None if lane_states is None else list(lane_states)
        self.first_lane = first_lane

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, lanes = (info.id, info.num_workers) if info is not None else (0, 1)
        lane = (self.first_lane + worker) % lanes
        seed = self.seed * 1000 + lane
        rng = np.random.default_rng(seed)
        real = SliceSource(self.real) if self.real else None
        phantoms = PhantomSource(seed + 7) if self.phantom_fraction > 0 else None
        intensity = IntensityAugmenter(self.augment, seed)
        saved = None if self.lane_states is None else self.lane_states[lane]
        if saved is not None:
            rng = restore_lane(json.loads(saved), intensity, phantoms)
        while True:
            examples = []
            for _ in range(self.batch_size):
                use_phantom = real is None or rng.random() < self.phantom_fraction
                sample = phantoms.draw(rng) if use_phantom else real.draw(rng)
                examples.append(make_example(sample, rng, self.input_size, self.pixel_spacing_mm, self.augment,
                                             intensity))
            state = {"rng": rng.bit_generator.state, "intensity": intensity.state(),
                     "phantoms": None if phantoms is None else phantoms.state()}
            yield (torch.from_numpy(np.stack([x for x, _ in examples])),
                   torch.from_numpy(np.stack([y for _, y in examples])), lane, json.dumps(state))


def restore_lane(state: dict[str, Any], intensity: IntensityAugmenter,
                 phantoms: PhantomSource | None) -> np.random.Generator:
    """Put a lane's ``intensity`` and ``phantoms`` where a :class:`TrainingStream` batch's state says; returns the
    lane's example generator. ValueError, KeyError or TypeError for a state that does not fit."""
    rng = generator_from_state(state["rng"])
    intensity.restore(state["intensity"])
    if (phantoms is None) != (state["phantoms"] is None):
        raise ValueError("the phantom state does not fit the stream (phantom_fraction changed)")
    if phantoms is not None:
        phantoms.restore(state["phantoms"])
    return rng
