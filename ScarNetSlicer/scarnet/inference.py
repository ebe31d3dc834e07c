"""Volume inference: LGE stack in, labelmap on the exact input grid and a per-slice report out.

Steps (each slice is a 2D problem; the stack is made consistent afterwards):

1. **Check** the volume: 3D, finite, not constant, plausibly a short-axis stack. The stack is
   then re-stored with its slices along k (a file saved slice-first has them along i) and in one
   canonical in-plane order (:mod:`scarnet.orientation`), so that a file storing the same slices
   another way gives the same labels.
2. **Localise the LV.** The model sees a few mid-stack slices whole (the field of view squeezed
   into the model's input, as trained with the ``localise`` view) and the LV centroid is the
   median over those slices of the largest predicted LV component. If no slice shows an LV of
   plausible size, all slices are tried; if still none, :class:`NoHeartFoundError` is raised
   rather than returning an empty labelmap. A field of view wider than the training views
   (:data:`MAX_SINGLE_VIEW_FOV_MM`) is searched in overlapping :data:`LOCALISATION_WINDOW_MM`
   windows instead, and the window that shows an LV in the most slices wins. How it fails: a
   field of view where another round bright structure dominates and the LV is tiny (< ~25 mm
   across) can be missed; a heart cut by the field of view is still found but the crop is then
   padded with the slice's minimum (background).
3. **Segment** every slice in a crop of ``input_size`` pixels at ``pixel_spacing_mm`` centred on
   the LV (same resampling and intensity normalisation as in training), batched; on CUDA in
   bf16 (weights converted once at load, see ``registry.inference_dtype``); optional test-time
   augmentation (flips, or the 8 turns and mirrors that make the labels independent of the image's
   in-plane orientation: :data:`TTA_MODES`).
4. **Back to the input grid**: class probabilities are resampled (linearly) from each crop
   onto the slice's own pixel grid; argmax there.
5. **Post-process**: one LV per slice: of the connected regions of labels 1–4 at least half the
   size of the slice's largest, the one nearest the stack's LV axis (the median centroid of the
   slices' largest regions), so that the LV does not jump to another ring on some slices; a slice
   with no such region within :data:`MAX_LV_OFFSET_MM` of the axis has no LV. Holes filled, scar kept inside the
   myocardium and MVO inside scar; optionally, scar regions (3D-connected) under a minimum volume
   returned to healthy myocardium (``min_scar_component_ml``, off by default; see
   :data:`MIN_SCAR_COMPONENT_ML`). Then three plausibility checks, because a network shown noise
   still draws a confident LV where LVs usually are: an image with spatial structure (neighbouring
   pixels correlated), at least 5 mL of myocardium, LGE contrast between the segmented blood
   pool and myocardium, and a model sure of its LV in more than half of the slices where it
   draws one (see :mod:`scarnet.qc`); failing any is :class:`NoHeartFoundError`, never an empty
   or invented result (the last is a warning for weights without an unsure threshold of their
   own, :class:`~scarnet.qc.QcCalibration`). How it fails: a field of view without the heart
   but with another round structure the model is sure of (the right heart, a slice through the
   great vessels) can still be segmented: 13 of 100 EMIDEC exams cut to the part without the LV
   were, their slices mostly flagged.
6. **QC flags** and the quantification report, with the scar that FWHM and 5-SD find in the model's myocardium
   beside it for comparison (:mod:`scarnet.threshold_check`).
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from . import __version__
from .errors import Cancelled, InputError, NoHeartFoundError
from .labels import (
    BACKGROUND,
    HEALTHY_MYOCARDIUM,
    LABEL_VALUES,
    LV_BLOOD_POOL,
    MVO,
    MYOCARDIUM_LABELS,
    NUM_CLASSES,
    SCAR,
    SCAR_LABELS,
)
from .orientation import (
    InPlaneOrder,
    StackAxis,
    canonical_in_plane_order,
    field_too_wide,
    find_stack_axis,
    stack_along_k_problem,
)
from .preprocess import OUTSIDE_EDGE, PlaneTransform, model_crop, plane_transform, resample_back, valid_mask
from .qc import (
    FLAG_DESCRIPTIONS,
    MAX_UNSURE_LV_FRACTION,
    MIN_NEIGHBOUR_CORRELATION,
    MIN_STACK_TISSUE_CONTRAST,
    UNLIKE_TRAINING_WARNING,
    QcCalibration,
    crop_edge_band,
    heart_confidence,
    neighbour_correlation,
    scar_ambiguity,
    slice_flags,
    tissue_contrast,
    unsure_lv_slices,
    warns_stack,
)
from .quantify import Report, quantify
from .threshold_check import threshold_check
from .volume import Volume

ProgressCallback = Callable[[float, str], None]

#: A slice's LV must cover at least this area (mm²) in the localisation view to count.
MIN_LV_AREA_MM2 = 400.0
#: Slices whose LV centroid lies further than this from the stack's median LV centroid are dropped.
MAX_LV_OFFSET_MM = 35.0
#: ``lv_removed``: a removed region counts as a removed LV from this area (mm², about an 11 mm disc, an
#: apical LV); smaller specks off the axis are removed without a flag.
MIN_REMOVED_LV_AREA_MM2 = 100.0
#: A region at least this fraction of a slice's largest is a candidate LV (see :func:`postprocess`).
LV_CANDIDATE_FRACTION = 0.5
#: Slices tried first for localisation.
LOCALISATION_SLICES = 4
#: The whole-field-of-view views the model was trained on span about 285–460 mm (EMIDEC's 358 mm
#: and the phantoms' 300–400 mm, zoomed 0.95–1.15×). In a wider view the LV is a dozen pixels
#: across and the estimate can land on another structure: with the 80 EMIDEC train exams embedded
#: in a 1.5× wider field (540 mm), heart in a corner, it was off by more than 10 mm in 40 of them.
#: Wider fields are therefore searched in overlapping windows (1 of 80 off by more than 10 mm),
#: at a cost: a 640 × 540 mm field takes 6 windows of 4 slices, 1.3 s more on 2 CPU threads.
MAX_SINGLE_VIEW_FOV_MM = 450.0
#: Width of those windows: EMIDEC's field of view, the middle of the trained range.
LOCALISATION_WINDOW_MM = 360.0
#: Scar regions (3D-connected scar and MVO) smaller than this are returned to healthy myocardium;
#: 0 (the default) keeps every region. 1 mL was tried: on the EMIDEC train split (interim CPU model,
#: thresholds 0–1.5 mL) it gave the best scar Dice there and halved the normal exams with false
#: scar (26/26 → 13/26), but on the val split it erased the whole of one true small infarct
#: (Case_P066, found only as regions under 1 mL each: scar Dice 0.19 → 0) and lowered mean scar
#: Dice 0.535 → 0.525. Missing an infarct is worse than a mL of false scar a reader can dismiss,
#: so it is an option (``scarnet segment --min-scar-ml``, the Slicer module's "Minimum scar
#: region"), as in the clinical tools' "remove small regions", not the default.
MIN_SCAR_COMPONENT_ML = 0.0
#: The heart crop continues the slice's edge where the image is narrower than the crop
#: (:func:`scarnet.preprocess.resample_image`): the 20 EMIDEC val exams cropped to the heart + 20 mm (about 105 mm
#: across; ``scarnet evaluate``'s "narrow field") kept myocardium Dice 0.832 (uncropped 0.850), where the slice's
#: minimum as the fill gave 0.695 (scar Dice 0.548 against 0.421). The views that find the heart keep the
#: minimum: continued edges there cost noisy and ghosted val exams their heart (EMIDEC val, side by side: 3 of 130
#: noisy runs and one ghosted exam refused as "no heart found", none with the minimum), while every val figure
#: stays the same with the heart crop's change alone.
HEART_CROP_OUTSIDE = OUTSIDE_EDGE
#: Less LV myocardium than this in the whole stack (a real LV holds 60–250 mL) is not a heart.
MIN_MYOCARDIUM_ML = 5.0
#: Test-time augmentation modes (``Segmenter(tta=...)``): the model's logits averaged over the crop as it is and
#: ``"flip"``: mirrored left-right and top-bottom (3 passes, ``tta=True``, ``scarnet segment --tta``);
#: ``"dihedral"``: turned by 0/90/180/270°, each with and without a mirror (8 passes, ``--tta-rotations``). The
#: canonical storage (:mod:`scarnet.orientation`) cannot undo an image that is itself turned or mirrored (another
#: centre's planning): over those 8 orientations an EMIDEC val exam's scar volume varied by 2.6 mL on average
#: without augmentation, 1.4 mL with flips; with the dihedral views (the localisation's averaged alike) every step
#: is equivariant and the labels were identical, at scar / myocardium Dice 0.574 / 0.853 against 0.564 / 0.849
#: and 0.571 / 0.852 (docs/experiments.md, 2026-12-03). Opt-in: 2.6× the flips' time.
TTA_MODES = ("flip", "dihedral")
#: The dihedral group as (quarter turns, mirrored first), identity first.
DIHEDRAL_VIEWS = tuple((turns, mirror) for mirror in (False, True) for turns in range(4))
#: The model passes per batch of each test-time augmentation (None: none).
TTA_PASSES = {None: 1, "flip": 3, "dihedral": len(DIHEDRAL_VIEWS)}


def tta_from_options(tta: bool, tta_rotations: bool) -> bool | str:
    """The ``tta`` setting of the command line's ``--tta`` and ``--tta-rotations`` (the 8 views include the 3)."""
    return "dihedral" if tta_rotations else tta


def tta_mode(tta: bool | str | None) -> str | None:
    """The test-time augmentation a ``tta`` setting names (:data:`TTA_MODES`), None for none.

    False, None, "" and "none": none; True: "flip" (what ``tta=True`` always meant). :class:`InputError` otherwise.
    """
    if tta is None or tta is False or tta in ("", "none"):
        return None
    if tta is True:
        return "flip"
    if isinstance(tta, str) and tta in TTA_MODES:
        return tta
    raise InputError(f"test-time augmentation {tta!r}: expected one of none, {', '.join(TTA_MODES)}")


@dataclass
class SegmentationResult:
    """What :func:`segment` returns: the labelmap on the input grid, the report, and diagnostics."""

    labelmap: Volume
    report: Report
    #: The LV axis as a (row, column) pixel position in the slices: (j, i) of the stored grid, or
    #: for a stack stored slice-first, of the stored grid with the slice axis swapped with k.
    lv_center_rc: tuple[float, float]
    timings_s: dict[str, float] = field(default_factory=dict)


@dataclass
class _LvEstimate:
    """Where one localisation view sees the LV, and how surely."""

    centre_rc: tuple[float, float]
    slices_with_lv: int  # slices of the view with an LV of plausible size
    confidence: float  # mean probability of "not background" inside those LVs


def window_centres(shape_rc: tuple[int, int], spacing_rc_mm: tuple[float, float],
                   window_mm: float) -> list[tuple[float, float]]:
    """Centres (row, col, in pixels) of square ``window_mm`` windows covering a slice, overlapping by half or more.

    Along an axis no longer than the window, one window at the middle; along a longer one, windows
    from edge to edge, neighbours at most half a window apart, so that any structure smaller than
    half a window lies whole in one of them.
    """
    positions = []
    for size, spacing in zip(shape_rc, spacing_rc_mm):
        length_mm = size * spacing
        if length_mm <= window_mm:
            centres_mm = [length_mm / 2]
        else:
            count = int(np.ceil((length_mm - window_mm) / (window_mm / 2))) + 1
            centres_mm = list(np.linspace(window_mm / 2, length_mm - window_mm / 2, count))
        positions.append([c / spacing - 0.5 for c in centres_mm])  # pixel i covers [i - 0.5, i + 0.5]
    return [(float(r), float(c)) for r in positions[0] for c in positions[1]]


def check_short_axis(volume: Volume, name: str = "image") -> None:
    """Raise :class:`InputError` when the volume cannot be a short-axis LGE stack.

    Short-axis stacks have thick slices along the third axis and in-plane matrices of at least
    64 pixels. An isotropic 3D volume with many thin slices, or a stack whose "slices" lie along
    another axis (one in-plane dimension tiny), is refused with a message saying why.
    """
    columns, rows, slices = volume.shape_ijk
    spacing_i, spacing_j, spacing_k = volume.spacing_mm
    problem = stack_along_k_problem(volume.shape_ijk, volume.spacing_mm)
    if problem == "in-plane":
        raise InputError(f"{name}: in-plane size {columns}×{rows} is too small for a short-axis slice; "
                         "are the slices along another axis?")
    if problem == "3D":
        raise InputError(f"{name}: {slices} slices {spacing_k:.2g} mm apart looks like a 3D volume, not a "
                         "short-axis LGE stack (expected 4–30 slices 5–15 mm apart)")
    if max(columns, rows) * max(spacing_i, spacing_j) < 60:
        raise InputError(f"{name}: field of view {columns * spacing_i:.0f}×{rows * spacing_j:.0f} mm is too small "
                         "to hold a heart")
    if too_wide := field_too_wide(volume.shape_ijk, volume.spacing_mm):
        raise InputError(f"{name}: {too_wide}")


def check_not_a_labelmap(volume: Volume, name: str = "image") -> None:
    """:class:`InputError` for an "image" that holds only label values (0–4): a labelmap given by mistake, which
    the model would answer with "no heart found" (no LGE contrast), not saying why."""
    if float(volume.array.min()) < min(LABEL_VALUES) or float(volume.array.max()) > max(LABEL_VALUES):
        return  # an image's range (checked first: np.unique sorts every voxel)
    values = np.unique(volume.array)
    if values.size <= len(LABEL_VALUES) and set(values.tolist()) <= set(LABEL_VALUES):
        shown = ", ".join(f"{v:g}" for v in values.tolist())
        raise InputError(f"{name}: holds only the values {shown}: a labelmap (0 background, 1 LV blood pool, "
                         "2 myocardium, 3 scar, 4 MVO), not an LGE image; give the image it was drawn on "
                         "(scarnet quantify measures a labelmap)")



def model_storage(volume: Volume, name: str = "image") -> tuple[Volume, StackAxis, InPlaneOrder]:
    """``volume`` checked and stored as the model sees it, whatever the file's storage (see
    :mod:`scarnet.orientation`): slices along k, then one order of rows and columns, float32. Returns it
    with the two re-storings (to map results back, or to store a labelmap alike); :class:`InputError`
    for an image no model should see or that cannot be a short-axis stack."""
    from .io import validate_image

    validate_image(volume, name)
    check_not_a_labelmap(volume, name)
    stack = find_stack_axis(volume)
    volume = stack.apply(volume)
    check_short_axis(volume, name)
    order = canonical_in_plane_order(volume.direction)
    return order.apply(volume.with_array(volume.array.astype(np.float32, copy=False))), stack, order


def resolve_device(name: str = "auto"):
    """``auto``: CUDA when available, else CPU."""
    import torch

    if name in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name in ("gpu", "cuda") or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError("device 'cuda' requested but no CUDA GPU is available: choose device auto or cpu")
        return torch.device("cuda" if name == "gpu" else name)
    if name == "cpu":
        return torch.device("cpu")
    raise InputError(f"unknown device '{name}' (use auto, cpu or cuda)")


_MODEL_CACHE: dict[tuple, tuple[Any, QcCalibration]] = {}


def _weights_key(weights: str | Path | None) -> tuple | None:
    """What identifies a weights file in the cache: its path and, when they exist, the size and
    modification time of the file and of its sidecar, so that weights retrained in place, or
    calibrated since (``scarnet calibrate-qc``), are loaded again, not served stale."""
    from .model.registry import sidecar_path  # (imported with the model, which needs it anyway)

    if not weights:
        return None
    path = Path(weights).resolve()
    key: list = [str(path)]
    for file in (path, sidecar_path(path)):
        try:
            stat = file.stat()
        except OSError:
            key.append(None)
        else:
            key.append((stat.st_size, stat.st_mtime_ns))
    return tuple(key)


def get_model_and_calibration(weights: str | Path | None = None, encoder: str | None = None,
                              device: str = "auto") -> tuple[Any, QcCalibration]:
    """Load (once per process) the model and the QC calibration of the same file; later calls are warm.

    The calibration is read when the model is, so a cached model never gets the threshold of a
    file written after it was loaded.
    """
    from .model.registry import load_model, qc_calibration_for

    torch_device = resolve_device(device)
    key = (_weights_key(weights), encoder, str(torch_device))
    if key not in _MODEL_CACHE:
        model = load_model(weights or None, encoder=encoder, device=torch_device)
        calibration = qc_calibration_for(weights or None, encoder)
        for stale in [k for k in _MODEL_CACHE
                      if key[0] is not None and k[0] is not None and k[0][0] == key[0][0] and k[0] != key[0]]:
            del _MODEL_CACHE[stale]  # an earlier version of the same file: never served again
        _MODEL_CACHE[key] = (model, calibration)
    return _MODEL_CACHE[key]


def weights_identity(weights: str | Path | None = None, encoder: str | None = None) -> dict[str, Any]:
    """Which weights a report was made with: file name, sha256 and whether they are the bundled ones.

    The bundled file's sha256 is its sidecar's (checked against the file when it is loaded).
    """
    from .errors import WeightsError
    from .io import sha256_of
    from .model.registry import DEFAULT_ENCODER, bundled_sha256, bundled_weights_path

    if weights:
        path = Path(weights)
        return {"file": path.name, "sha256": sha256_of(path), "bundled": False}
    path = bundled_weights_path(encoder or DEFAULT_ENCODER)
    if path is None:
        return {"file": None, "sha256": None, "bundled": True}
    try:
        sha = bundled_sha256(encoder or DEFAULT_ENCODER)
    except WeightsError:  # the sidecar gone since the model was loaded
        sha = sha256_of(path)
    return {"file": path.name, "sha256": sha, "bundled": True}


def get_model(weights: str | Path | None = None, encoder: str | None = None, device: str = "auto"):
    """Load (once per process) and return the model; later calls are warm."""
    return get_model_and_calibration(weights, encoder, device)[0]


class Segmenter:
    """Runs the whole pipeline with one loaded model. Keep it to make later calls warm.

    ``model`` may be any module mapping (B, 1, S, S) → (B, 5, S, S) logits with a ``config``
    attribute (tests inject small or fake models this way). ``tta``: test-time augmentation, False, True
    (flip) or a name in :data:`TTA_MODES`. ``cuda_graphs`` (experimental, off by
    default): on CUDA, the forward replayed as CUDA graphs (:mod:`scarnet.model.graphed`).
    """

    def __init__(self, model=None, *, weights: str | Path | None = None, encoder: str | None = None,
                 device: str = "auto", batch_size: int = 16, tta: bool | str = False, flip_check: bool = True,
                 threads: int | None = None, reject_implausible: bool = True,
                 min_scar_component_ml: float = MIN_SCAR_COMPONENT_ML,
                 qc_calibration: QcCalibration | None = None, cuda_graphs: bool = False) -> None:
        min_scar_component_ml = check_min_scar_component_ml(min_scar_component_ml)
        #: None, "flip" or "dihedral" (:func:`tta_mode`); ``tta`` says whether there is any.
        self.tta_mode = tta_mode(tta)
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.device = resolve_device(device)
        weights = weights or None  # "" is no file: the bundled weights, as for get_model
        from .io import names_bundled_weights

        if names_bundled_weights(weights):
            weights = None  # as the command line's --weights bundled and train's --init-weights bundled
        loaded_here = model is None
        if loaded_here:
            model, loaded_calibration = get_model_and_calibration(weights, encoder, device)
            if qc_calibration is None:
                qc_calibration = loaded_calibration
        elif qc_calibration is None:
            # An injected model (tests, the benchmark) gets the bundled model's threshold, not
            # calibrated for it (the report says so; the caller may pass the model's own).
            qc_calibration = QcCalibration(calibrated_for_weights=False)
        self.model = model
        self.qc_calibration = qc_calibration
        #: Which weights the reports are made with (None for a model passed in: tests, the benchmark).
        self.weights_identity = weights_identity(weights, encoder) if loaded_here else None
        # Said in every report of weights loaded here that carry no calibration of their own.
        uncalibrated = loaded_here and weights is not None and not qc_calibration.calibrated_for_weights
        self._uncalibrated_weights = weights if uncalibrated else None
        self.model.to(self.device)
        if cuda_graphs and self.device.type == "cuda":
            # Experimental, off by default: replays the forward as CUDA graphs (scarnet.model.graphed).
            from .model.graphed import CudaGraphed

            self.model = CudaGraphed(self.model, batch_size)
        self.input_size = int(self.model.config.input_size)
        self.pixel_spacing_mm = float(self.model.config.pixel_spacing_mm)
        self.batch_size = batch_size
        self.flip_check = flip_check
        # False only for benchmark timing with random weights, whose output is no anatomy at all:
        # the checks are still computed (same cost) but warn instead of raising.
        self.reject_implausible = reject_implausible
        self.min_scar_component_ml = min_scar_component_ml
        self.warnings: list[str] = []

    @property
    def tta(self) -> bool:
        """Whether the model's passes are test-time augmented (any mode; :attr:`tta_mode` says which)."""
        return self.tta_mode is not None

    @tta.setter
    def tta(self, value: bool | str | None) -> None:
        self.tta_mode = tta_mode(value)

    # -- model calls ---------------------------------------------------------------------------
    def _forward(self, batch: np.ndarray, plain_out: list[np.ndarray] | None = None) -> np.ndarray:
        """Softmax probabilities for a (N, S, S) batch, with the CUDA OOM fallbacks.

        With test-time augmentation, ``plain_out`` (a list) receives the un-augmented pass's
        probabilities too: the QC confidence is measured on those, as without augmentation.
        """
        import torch

        while True:
            try:
                return self._forward_batched(batch, plain_out)
            except torch.cuda.OutOfMemoryError:
                if self.device.type != "cuda":
                    raise
                torch.cuda.empty_cache()
                if self.batch_size > 1:
                    self.batch_size //= 2
                    if hasattr(self.model, "reset"):  # CUDA graphs: captured (and padded) at the old size
                        self.model.reset(self.batch_size)
                    self._warn(f"GPU out of memory: batch size halved to {self.batch_size}")
                else:
                    self._warn("GPU out of memory even with batch size 1: continuing on the CPU")
                    self.device = torch.device("cpu")
                    # bf16 weights (the GPU's, see registry.inference_dtype) are slow or unsupported on a CPU.
                    self.model.to(device=self.device, dtype=torch.float32)
                    # The process's cache must not hand this model out as a GPU model any more.
                    for key in [k for k, (cached, _) in _MODEL_CACHE.items() if cached is self.model]:
                        del _MODEL_CACHE[key]

    @contextlib.contextmanager
    def model_context(self) -> Iterator[None]:
        """The context the model runs in: inference mode, and fp16/bf16 autocast for float32 weights on CUDA.

        Weights already in bf16 or fp16 (loaded for a GPU) get their inputs in that precision and
        no autocast, so no casts are launched (:func:`scarnet.model.registry.inference_dtype`).
        """
        import torch

        from .model.registry import cuda_autocast_dtype

        use_autocast = self.device.type == "cuda" and self.weights_dtype == torch.float32
        autocast_dtype = cuda_autocast_dtype() if use_autocast else torch.float16
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=autocast_dtype, enabled=use_autocast):
            yield

    @property
    def weights_dtype(self):
        """The floating-point precision of the model's weights (float32 for a model without any)."""
        import torch

        for parameter in self.model.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
        return torch.float32

    def model_input(self, crops: np.ndarray):
        """(N, S, S) float32 crops → the model's (N, 1, S, S) input on its device, precision and layout."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(crops[:, None], dtype=np.float32)).to(self.device)
        return x.to(self.weights_dtype).contiguous(memory_format=torch.channels_last)

    def _forward_batched(self, batch: np.ndarray, plain_out: list[np.ndarray] | None = None) -> np.ndarray:
        import torch

        outputs, plain = [], []
        with self.model_context():
            for start in range(0, batch.shape[0], self.batch_size):
                x = self.model_input(batch[start:start + self.batch_size])
                logits = self.model(x).float()
                if self.tta_mode is not None and plain_out is not None:
                    plain.append(torch.softmax(logits, dim=1).cpu().numpy())
                logits = self._augmented_logits(x, logits)
                outputs.append(torch.softmax(logits, dim=1).cpu().numpy())
        if plain_out is not None:
            plain_out.extend(plain)  # only once the whole batch went through (an OOM retry starts over)
        return np.concatenate(outputs)

    def _augmented_logits(self, x, logits):
        """``logits`` (the model's for ``x``) averaged with those of the test-time augmentation's other views
        (:attr:`tta_mode`; none: ``logits`` as they are). :data:`TTA_PASSES` model passes in all."""
        if self.tta_mode == "flip":
            logits = logits + self.model(x.flip(-1)).float().flip(-1)
            logits = logits + self.model(x.flip(-2)).float().flip(-2)
            return logits / 3
        if self.tta_mode == "dihedral":
            return (logits + sum(self._dihedral_logits(x, turns, mirror)
                                 for turns, mirror in DIHEDRAL_VIEWS[1:])) / len(DIHEDRAL_VIEWS)
        return logits

    def _dihedral_logits(self, x, turns: int, mirror: bool):
        """The model's logits for ``x`` mirrored (left-right) then turned by ``turns`` quarter turns, turned and
        mirrored back onto ``x``'s pixels."""
        import torch

        view = torch.rot90(x.flip(-1) if mirror else x, turns, dims=(-2, -1))
        logits = torch.rot90(self.model(view.contiguous(memory_format=torch.channels_last)).float(), -turns,
                             dims=(-2, -1))
        return logits.flip(-1) if mirror else logits

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    # -- pipeline --------------------------------------------------------------------------------
    def _implausible(self, message: str) -> None:
        """A result that is not a heart: :class:`NoHeartFoundError`, or a warning for timing-only runs."""
        if self.reject_implausible:
            raise NoHeartFoundError(message)
        self.warnings.append(message)

    def localise(self, volume: Volume, slices: list[int] | None = None) -> tuple[float, float]:
        """LV centroid (row, col) in the volume's pixel grid, from whole-field-of-view predictions."""
        spacing_rc = np.asarray((volume.spacing_mm[1], volume.spacing_mm[0]))
        shape = np.asarray(volume.array.shape[1:], dtype=float)
        extent_mm = float((shape * spacing_rc).max())
        # A field the model was trained to see whole is one window of its own width, at its middle.
        size_mm = extent_mm if extent_mm <= MAX_SINGLE_VIEW_FOV_MM else LOCALISATION_WINDOW_MM
        candidates = slices if slices is not None else _central_slices(volume.num_slices, LOCALISATION_SLICES)
        found = [self._lv_in_view(volume, candidates, centre, size_mm)
                 for centre in window_centres(volume.array.shape[1:], tuple(spacing_rc), size_mm)]
        found = [estimate for estimate in found if estimate is not None]
        if not found:
            if slices is None and volume.num_slices > len(candidates):
                return self.localise(volume, list(range(volume.num_slices)))
            raise NoHeartFoundError("no heart found: the model sees no left ventricle in any slice "
                                    "(is this a short-axis LGE stack of the heart?)")
        best = max(found, key=lambda estimate: (estimate.slices_with_lv, estimate.confidence))
        return best.centre_rc

    def _lv_in_view(self, volume: Volume, slices: list[int], centre_rc: tuple[float, float],
                    size_mm: float) -> _LvEstimate | None:
        """The LV seen in ``slices`` through a square view of ``size_mm`` around ``centre_rc``.

        Per slice, the largest predicted LV component (labels 1–4) of plausible area
        (:data:`MIN_LV_AREA_MM2`); the estimate is the median of their centroids. None when no
        slice shows one.
        """
        spacing_rc = (volume.spacing_mm[1], volume.spacing_mm[0])
        out_spacing = size_mm / self.input_size
        transform = plane_transform(centre_rc, spacing_rc, self.input_size, out_spacing)
        inside = valid_mask(volume.array.shape[1:], transform)
        crops = np.stack([model_crop(volume.array[k], transform, inside) for k in slices])
        probabilities = self._forward(crops)
        centres, confidences = [], []
        min_pixels = MIN_LV_AREA_MM2 / out_spacing**2
        for p in probabilities:
            lv = _largest_component(np.argmax(p, axis=0) != BACKGROUND)
            if lv.sum() >= min_pixels:
                rows, cols = np.nonzero(lv)
                centres.append(transform.matrix @ np.array([rows.mean(), cols.mean()]) + transform.offset)
                confidences.append(float(1.0 - p[BACKGROUND][lv].mean()))
        if not centres:
            return None
        centre = np.median(np.stack(centres), axis=0)
        return _LvEstimate((float(centre[0]), float(centre[1])), len(centres), float(np.mean(confidences)))

    def predict_probabilities(self, volume: Volume, center_rc: tuple[float, float],
                              progress: ProgressCallback | None = None,
                              should_cancel: Callable[[], bool] | None = None,
                              plain_out: list[np.ndarray] | None = None) -> tuple[np.ndarray, PlaneTransform]:
        """Class probabilities (k, 5, S, S) on the heart crops, and the crop transform.

        ``plain_out``: see :meth:`_forward` (filled with test-time augmentation only).
        """
        spacing_rc = (volume.spacing_mm[1], volume.spacing_mm[0])
        transform = plane_transform(center_rc, spacing_rc, self.input_size, self.pixel_spacing_mm)
        inside = valid_mask(volume.array.shape[1:], transform)
        crops = np.stack([model_crop(volume.array[k], transform, inside, HEART_CROP_OUTSIDE)
                          for k in range(volume.num_slices)])
        chunks = []
        step = max(self.batch_size, 1)
        for start in range(0, crops.shape[0], step):
            if should_cancel is not None and should_cancel():
                raise Cancelled("cancelled")
            chunks.append(self._forward(crops[start:start + step], plain_out))
            if progress is not None:
                progress(0.2 + 0.6 * min(1.0, (start + step) / crops.shape[0]), "segmenting slices")
        return np.concatenate(chunks), transform

    def flipped_scar(self, volume: Volume, transform: PlaneTransform, slices: list[int]) -> dict[int, np.ndarray]:
        """Scar masks (on the input grid) predicted on horizontally flipped crops, flipped back."""
        if not slices:
            return {}
        inside = valid_mask(volume.array.shape[1:], transform)
        crops = np.stack([model_crop(volume.array[k], transform, inside, HEART_CROP_OUTSIDE)[:, ::-1]
                          for k in slices])
        saved, self.tta_mode = self.tta_mode, None
        try:
            probabilities = self._forward(np.ascontiguousarray(crops))[:, :, :, ::-1]
        finally:
            self.tta_mode = saved
        out = {}
        for k, p in zip(slices, probabilities):
            back = _probabilities_to_grid(np.ascontiguousarray(p), transform, volume.array.shape[1:])
            out[k] = np.isin(np.argmax(back, axis=0), SCAR_LABELS)
        return out

    def __call__(self, volume: Volume, progress: ProgressCallback | None = None,
                 should_cancel: Callable[[], bool] | None = None, name: str = "image", *,
                 basal_end: str | None = None, rv_insertion_lps: np.ndarray | None = None) -> SegmentationResult:
        """Segment ``volume`` and quantify the result (see the module docstring for the steps).

        ``basal_end`` and ``rv_insertion_lps`` go to :func:`scarnet.quantify.quantify` (levels and AHA segments).
        """
        timings: dict[str, float] = {}
        started = time.perf_counter()
        stored = volume
        volume, stack, order = model_storage(volume, name)
        array = volume.array
        self.warnings = []
        # An input property: checked before any model run (a network still draws an LV on noise).
        structureless = neighbour_correlation(array) < MIN_NEIGHBOUR_CORRELATION
        if structureless:
            self._implausible(f"no heart found: {name} has no spatial structure (neighbouring pixels are "
                              "uncorrelated, as in pure noise)")

        def report_progress(fraction: float, message: str) -> None:
            if should_cancel is not None and should_cancel():
                raise Cancelled("cancelled")
            if progress is not None:
                progress(fraction, message)

        report_progress(0.05, "locating the heart")
        t = time.perf_counter()
        center_rc = self.localise(volume)
        timings["localise_s"] = time.perf_counter() - t

        t = time.perf_counter()
        plain: list[np.ndarray] = []
        crop_probabilities, transform = self.predict_probabilities(volume, center_rc, report_progress, should_cancel,
                                                                   plain_out=plain)
        timings["segment_s"] = time.perf_counter() - t

        report_progress(0.85, "post-processing")
        t = time.perf_counter()
        probabilities = np.stack([_probabilities_to_grid(p, transform, volume.array.shape[1:])
                                  for p in crop_probabilities])  # (k, 5, rows, cols)
        labels = np.argmax(probabilities, axis=1).astype(np.uint8)
        max_probability = probabilities.max(axis=1)
        scar_probability = probabilities[:, SCAR] + probabilities[:, MVO]
        del probabilities
        lv_removed: list[int] = []
        labels = postprocess(labels, (volume.spacing_mm[1], volume.spacing_mm[0]), removed=lv_removed)
        remove_small_scar(labels, volume.voxel_volume_ml, self.min_scar_component_ml)
        timings["postprocess_s"] = time.perf_counter() - t
        myocardium_ml = float(np.isin(labels, MYOCARDIUM_LABELS).sum()) * volume.voxel_volume_ml
        contrast = [tissue_contrast(volume.array[k], labels[k]) for k in range(labels.shape[0])]
        if plain:
            # Test-time augmentation lowers the max-probability wherever the flipped passes disagree;
            # the QC thresholds were set without it, so confidence and scar ambiguity come from the
            # un-augmented pass.
            grids = [_probabilities_to_grid(p, transform, volume.array.shape[1:]) for p in np.concatenate(plain)]
            max_probability = np.stack([g.max(axis=0) for g in grids])
            scar_probability = np.stack([g[SCAR] + g[MVO] for g in grids])
            del grids
        confidence = heart_confidence(labels, max_probability, (volume.spacing_mm[1], volume.spacing_mm[0]))
        measured = [c for c in contrast if c is not None]
        if structureless:
            pass  # already reported: one reason per volume
        elif myocardium_ml < MIN_MYOCARDIUM_ML:
            self._implausible(f"no heart found: only {myocardium_ml:.1f} mL of LV myocardium segmented "
                              "(is this a short-axis LGE stack of the heart?)")
        elif measured and float(np.median(measured)) < MIN_STACK_TISSUE_CONTRAST:
            self._implausible("no heart found: where the model sees an LV, the blood pool is not brighter than "
                              "the myocardium (no LGE contrast; is this an LGE stack?)")
        else:
            unsure, with_lv = unsure_lv_slices(confidence, self.qc_calibration.unsure_lv_threshold)
            if unsure >= 2 and unsure >= MAX_UNSURE_LV_FRACTION * with_lv:
                unsure_of_lv = (f"the model is unsure of the LV it draws in {unsure} of the {with_lv} slices where "
                                "it draws one")
                if self.qc_calibration.refuses_unsure_lv:
                    self._implausible(f"no heart found: {unsure_of_lv} (is the heart in the field of view?)")
                else:
                    # How unsure is too unsure depends on the weights (QcCalibration.refuses_unsure_lv).
                    self._warn(f"{unsure_of_lv}; not refused as 'no heart found' because these weights have no "
                               "unsure-LV threshold of their own (scarnet calibrate-qc sets one): check that the "
                               "heart is in the field of view")

        t = time.perf_counter()
        flipped = None
        if self.flip_check:
            scar_slices = [k for k in range(labels.shape[0]) if np.isin(labels[k], SCAR_LABELS).any()]
            flipped = self.flipped_scar(volume, transform, scar_slices)
        timings["flip_check_s"] = time.perf_counter() - t

        labelmap = stored.with_array(stack.undo(order.undo(labels)))
        stored_center_rc = order.undo_point_rc(center_rc, labels.shape[1:])
        # Per slice along the same stack axis.
        try:
            report = quantify(labelmap, stack=stack, basal_end=basal_end, rv_insertion_lps=rv_insertion_lps)
        except InputError as error:
            if rv_insertion_lps is None:
                raise
            # A point that cannot be the RV insertion (or no base-apex order) must not cost the finished run.
            report = quantify(labelmap, stack=stack, basal_end=basal_end)
            self._warn(f"no AHA segments: {error}")
        # What FWHM and 5-SD find in the model's myocardium, beside its scar, as quantify gives it with the image.
        # Computed here rather than by giving quantify the image: its dark-scar warning asks whether a reader's labels
        # were swapped, which says nothing of the model's.
        report.extra["threshold_check"] = threshold_check(labelmap.array, stored.array, labelmap.voxel_volume_ml)
        pixel_area = volume.spacing_mm[0] * volume.spacing_mm[1]
        threshold = self.qc_calibration.low_confidence_threshold
        ambiguity = scar_ambiguity(labels, scar_probability)
        spacing_rc_mm = (volume.spacing_mm[1], volume.spacing_mm[0])
        footprint = resample_back(np.ones((transform.out_size, transform.out_size), dtype=np.float32), transform,
                                  labels.shape[1:], order=0) > 0.5
        flags_per_slice = slice_flags(labels, max_probability, pixel_area, flipped, contrast, spacing_rc_mm,
                                      confidence, threshold, ambiguity, self.qc_calibration.scar_uncertain_threshold,
                                      crop_edge_band(footprint, spacing_rc_mm), lv_removed)
        for slice_report, flags in zip(report.slices, flags_per_slice):
            slice_report.qc_flags = flags
        if self._uncalibrated_weights is not None:
            from .model.registry import sidecar_path

            weights = Path(self._uncalibrated_weights)
            sidecar = sidecar_path(weights)
            # A training checkpoint keeps none: the run's exported weights carry it (calibrate-qc refuses a .pt).
            checkpoint = weights.suffix.lower() == ".pt"
            # Weights copied out of their run folder without their sidecar lose a calibration they may have had.
            where = ("" if checkpoint or sidecar.exists() else
                     f"; no {sidecar.name} beside them, where a calibration would be kept")
            how = (f"use {weights.with_suffix('.safetensors').name}, the weights exported from it, calibrated with "
                   "scarnet calibrate-qc" if checkpoint else "calibrate them with scarnet calibrate-qc")
            self._warn(f"{weights.name} carries no QC calibration{where}: low_confidence and scar_uncertain use the "
                       "bundled model's thresholds, which may flag too many slices or too few with these weights "
                       f"({how})")
        unsure, with_lv = unsure_lv_slices(confidence, threshold)  # the low_confidence slices
        if warns_stack(unsure, with_lv, self.qc_calibration.stack_warning_fraction):
            self._warn(f"the model is unsure of the heart in {unsure} of the {with_lv} slices where it finds the LV "
                       f"(flagged low_confidence): {UNLIKE_TRAINING_WARNING} (sequence, vendor, grey levels, "
                       "artifacts); read every slice")
        timings["total_s"] = time.perf_counter() - started
        report.extra["qc"] = {
            "flags": FLAG_DESCRIPTIONS,
            "slices_to_check": [s.index for s in report.slices if s.qc_flags],
            # Per slice (null without LV): the figure behind ``low_confidence``, for readers and studies.
            "heart_confidence": [None if np.isnan(c) else round(float(c), 4) for c in confidence],
            # Per slice (null without myocardium): the figure behind ``scar_uncertain``.
            "scar_ambiguity": [None if np.isnan(a) else round(float(a), 4) for a in ambiguity],
            "low_confidence_threshold": threshold,
            "scar_uncertain_threshold": self.qc_calibration.scar_uncertain_threshold,
            "unsure_lv_threshold": self.qc_calibration.unsure_lv_threshold,
            "refuses_unsure_lv": self.qc_calibration.refuses_unsure_lv,
            "stack_warning_fraction": self.qc_calibration.stack_warning_fraction,
            "threshold_calibrated_for_weights": self.qc_calibration.calibrated_for_weights,
        }
        report.extra["inference"] = {
            "scarnet_version": __version__,
            "weights": self.weights_identity,
            "device": str(self.device),
            "tta": self.tta,
            "tta_mode": self.tta_mode,
            "encoder": getattr(self.model.config, "encoder", None),
            "input_size_px": self.input_size,
            "pixel_spacing_mm": self.pixel_spacing_mm,
            "min_scar_component_ml": self.min_scar_component_ml,
            "lv_center_rc": [round(stored_center_rc[0], 2), round(stored_center_rc[1], 2)],
            "warnings": list(self.warnings),
            "timings_s": {k: round(v, 4) for k, v in timings.items()},
        }
        report_progress(1.0, "done")
        return SegmentationResult(labelmap, report, stored_center_rc, timings)


def segment(volume: Volume, *, weights: str | Path | None = None, encoder: str | None = None, device: str = "auto",
            tta: bool | str = False, rv_insertion_lps: np.ndarray | None = None, basal_end: str | None = None,
            min_scar_component_ml: float = MIN_SCAR_COMPONENT_ML, progress: ProgressCallback | None = None,
            should_cancel: Callable[[], bool] | None = None) -> SegmentationResult:
    """Segment and quantify an LGE volume (:func:`scarnet.read_volume`) with the bundled (or given) weights.

    ``weights``: a ``.safetensors`` file (with its sidecar) or a training ``.pt``; None or "bundled": the weights
    that come with scarnet. ``device``: "auto" (CUDA when available), "cpu" or "cuda". ``tta``: test-time
    augmentation, True (or "flip") for flips, "dihedral" for the 8 turns and mirrors (:data:`TTA_MODES`).
    ``rv_insertion_lps``: the anterior RV insertion point (LPS mm, shape (3,); RAS as Slicer shows it is
    ``[-R, -A, S]``), or it and the inferior one (shape (2, 3)): adds the 17 AHA segments; ``basal_end``:
    "first" or "last" slice index when the orientation does not say; ``min_scar_component_ml``: scar regions
    smaller than this become healthy myocardium (all three as on the command line, :func:`scarnet.quantify.quantify`).
    ``progress(fraction, message)`` is called as the work goes on; ``should_cancel()`` returning True
    stops it (:class:`Cancelled`). The model stays loaded: later calls with the same weights start warm.

    Returns a :class:`SegmentationResult`: ``labelmap`` (0 background, 1 LV blood pool, 2 healthy myocardium,
    3 scar, 4 MVO, on the input's grid), ``report`` (:class:`scarnet.quantify.Report`: per-slice and total
    figures, QC flags, ``report.warnings()``; for a volume from :func:`scarnet.read_volume`, its ``input``, DICOM
    ``input_series`` and ``input_warnings`` under ``report.extra``), ``timings_s``. Raises
    :class:`~scarnet.errors.InputError` for an input that is not a short-axis LGE stack and
    :class:`~scarnet.errors.NoHeartFoundError` (one of them) when no heart is found;
    :class:`~scarnet.errors.WeightsError` for weights that cannot be used.
    """
    if not isinstance(volume, Volume):
        raise InputError(f"segment takes a scarnet.Volume (scarnet.read_volume(path) reads one), not "
                         f"{type(volume).__name__}")
    segmenter = Segmenter(weights=weights, encoder=encoder, device=device, tta=tta,
                          min_scar_component_ml=check_min_scar_component_ml(min_scar_component_ml),
                          threads=_default_threads())
    # The report names the input (path, DICOM series, what reading it warned of) as the CLI's does: the labelmap,
    # made on the input's grid with Volume.with_array, carries its provenance into quantify.
    name = (volume.provenance or {}).get("input", "image")
    return segmenter(volume, progress=progress, should_cancel=should_cancel, name=name, basal_end=basal_end,
                     rv_insertion_lps=rv_insertion_lps)


def _default_threads() -> int | None:
    value = os.environ.get("SCARNET_THREADS")
    return int(value) if value else None


def _central_slices(num_slices: int, count: int) -> list[int]:
    """Up to ``count`` slice indices spread over the central 60 % of the stack."""
    if num_slices <= count:
        return list(range(num_slices))
    low, high = 0.2 * (num_slices - 1), 0.8 * (num_slices - 1)
    return sorted({int(round(v)) for v in np.linspace(low, high, count)})


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        return mask
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled == int(np.argmax(sizes))


def _probabilities_to_grid(probabilities: np.ndarray, transform: PlaneTransform,
                           shape: tuple[int, int]) -> np.ndarray:
    """(5, S, S) crop probabilities → (5, rows, cols) on the slice grid; background outside the crop."""
    out = np.empty((NUM_CLASSES, *shape), dtype=np.float32)
    for c in range(NUM_CLASSES):
        out[c] = resample_back(probabilities[c], transform, shape, order=1, cval=1.0 if c == BACKGROUND else 0.0)
    return out


def postprocess(labels: np.ndarray, spacing_rc_mm: tuple[float, float], removed: list[int] | None = None
                ) -> np.ndarray:
    """Anatomical consistency of a (k, rows, cols) labelmap; see the module docstring, step 5.

    ``removed``, when given, receives the slices whose LV was removed for lying off the stack's axis
    (the ``lv_removed`` QC flag): those where the largest region removed covers at least
    :data:`MIN_REMOVED_LV_AREA_MM2`.
    """
    labels = labels.copy()
    spacing = np.asarray(spacing_rc_mm, dtype=float)
    regions = {k: _lv_candidates(labels[k]) for k in range(labels.shape[0])}
    # The stack's LV axis: the median of each slice's largest region (robust to a minority of slices
    # where another round structure, e.g. the outflow tract, came out largest).
    largest = [centroids[int(np.argmax(sizes))] for _, sizes, centroids in regions.values() if sizes.size]
    axis = np.median(np.stack(largest), axis=0) if len(largest) >= 3 else None
    for k, (labelled, sizes, centroids) in regions.items():
        plane = labels[k]
        if not sizes.size:
            continue
        keep = int(np.argmax(sizes))
        if axis is not None:
            # Of the LV-sized regions, the one on the stack's axis: the kept LV does not jump between
            # two rings from slice to slice; a slice with none near the axis has no LV.
            offsets_mm = np.linalg.norm((centroids - axis) * spacing, axis=1)
            offsets_mm[sizes < LV_CANDIDATE_FRACTION * sizes.max()] = np.inf
            keep = int(np.argmin(offsets_mm))
            if offsets_mm[keep] > MAX_LV_OFFSET_MM:
                if removed is not None and sizes.max() * spacing.prod() >= MIN_REMOVED_LV_AREA_MM2:
                    removed.append(k)
                plane[:] = BACKGROUND
                continue
        plane[labelled != keep + 1] = BACKGROUND
        _fill_holes(plane)
        _nest_scar(plane)
    return labels


def _lv_candidates(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8-connected regions of labels 1–4: label image, sizes (n,) and centroids (n, 2) of regions 1..n."""
    labelled, count = ndimage.label(plane != BACKGROUND, structure=np.ones((3, 3)))
    if count == 0:
        return labelled, np.zeros(0), np.zeros((0, 2))
    index = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(np.ones_like(labelled), labelled, index)
    centroids = np.asarray(ndimage.center_of_mass(np.ones_like(labelled), labelled, index), dtype=float)
    return labelled, sizes, centroids.reshape(count, 2)


def check_min_scar_component_ml(value: float) -> float:
    """``value`` as a float when it is a valid minimum scar region (0 or more); :class:`InputError` otherwise."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"minimum scar region {value!r}: expected a number of mL, 0 or more") from None
    if not value >= 0:  # also catches NaN
        raise InputError(f"minimum scar region {value} mL: must be 0 or more")
    return value


def remove_small_scar(labels: np.ndarray, voxel_volume_ml: float, min_ml: float) -> int:
    """Scar regions (scar and MVO, 26-connected in 3D) under ``min_ml`` become healthy myocardium, in place.

    Returns the number of regions removed. Regions are 3D so that an infarct seen small on several
    slices counts as the one infarct it is.
    """
    if min_ml <= 0:
        return 0
    scar = np.isin(labels, SCAR_LABELS)
    labelled, count = ndimage.label(scar, structure=np.ones((3, 3, 3)))
    if count == 0:
        return 0
    volumes_ml = ndimage.sum_labels(scar, labelled, np.arange(1, count + 1)) * voxel_volume_ml
    small = np.nonzero(volumes_ml < min_ml)[0] + 1
    labels[np.isin(labelled, small)] = HEALTHY_MYOCARDIUM
    return int(small.size)


def _fill_holes(plane: np.ndarray) -> None:
    """Holes inside the LV take the label of the nearest labelled pixel (in place).

    Except the cavity of a ring drawn without blood pool (an apical slice where the small cavity
    was called background): the hole around the ring's centre is blood pool, not wall, which
    would inflate myocardial mass and subendocardial scar.
    """
    region = plane != BACKGROUND
    filled = ndimage.binary_fill_holes(region)
    holes = filled & ~region
    if not holes.any():
        return
    if not (plane == LV_BLOOD_POOL).any():
        rows, cols = np.nonzero(region)
        centre = (int(round(rows.mean())), int(round(cols.mean())))
        if holes[centre]:
            labelled, _ = ndimage.label(holes)
            cavity = labelled == labelled[centre]
            plane[cavity] = LV_BLOOD_POOL
            holes &= ~cavity
            region |= cavity
    if holes.any():
        _, (rows, cols) = ndimage.distance_transform_edt(~region, return_indices=True)
        plane[holes] = plane[rows[holes], cols[holes]]


def _nest_scar(plane: np.ndarray) -> None:
    """Scar only within the myocardial wall, MVO only inside scar (in place).

    * A scar/MVO component that touches no healthy myocardium and no background (it floats in the
      blood pool: bright blood taken for enhancement) becomes blood pool.
    * An MVO component that touches no scar becomes scar (the enhanced region it belongs to was
      missed; it still counts as infarct, and MVO stays nested in scar).
    """
    structure = np.ones((3, 3))
    scar = np.isin(plane, SCAR_LABELS)
    if not scar.any():
        return
    labelled, count = ndimage.label(scar, structure=structure)
    for index in range(1, count + 1):
        component = labelled == index
        ring = ndimage.binary_dilation(component, structure=structure) & ~component
        neighbours = plane[ring]
        if not np.isin(neighbours, (HEALTHY_MYOCARDIUM, BACKGROUND)).any():
            plane[component] = LV_BLOOD_POOL
    mvo = plane == MVO
    if mvo.any():
        labelled, count = ndimage.label(mvo, structure=structure)
        for index in range(1, count + 1):
            component = labelled == index
            ring = ndimage.binary_dilation(component, structure=structure) & ~component
            if not (plane[ring] == SCAR).any():
                plane[component] = SCAR
