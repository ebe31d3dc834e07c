"""Per-slice quality flags: which slices a reader should check before trusting the numbers.

Flags (names are stable; the report, the CLI table and the Slicer table show them):

* ``low_confidence``: the model's mean max-probability over the heart region of the slice (its
  "heart confidence", also in the report) is under the weights' threshold (:class:`QcCalibration`;
  :data:`LOW_CONFIDENCE_THRESHOLD` for the bundled weights and for weights without one).
* ``broken_ring``: the LV blood pool touches tissue outside the LV, i.e. the myocardial ring is
  open (expected at the very base through the outflow tract; elsewhere it means missed wall).
* ``lv_missing``: no LV in a slice that lies between slices that have one.
* ``scar_unstable``: the slice has scar, and the scar predicted on the flipped slice overlaps
  it with Dice under :data:`FLIP_DICE_THRESHOLD` (the model disagrees with itself).
* ``scar_uncertain``: the model is unsure where the scar ends: in a large part of the slice's
  myocardium (its "scar ambiguity", also in the report) the scar probability lies between
  :data:`SCAR_AMBIGUOUS_PROBABILITY`'s bounds. The threshold belongs to the weights, as for
  ``low_confidence`` (:class:`QcCalibration`).
* ``low_contrast``: the segmented blood pool and healthy myocardium have (nearly) the same
  intensity (|effect size| under :data:`MIN_TISSUE_CONTRAST`), which LGE never shows: blood
  is bright and healthy myocardium nulled. A model shown noise or a corrupted slice can still
  draw a confident LV ring where the LV usually is; the image itself then contradicts it.
* ``near_image_edge``: the LV lies within :data:`NEAR_EDGE_MM` of the edge of the image (a small or
  off-centre field of view). The model then sees the image end next to the heart, which it never
  saw in training, and tends to lose myocardium there (12 % of Case_P100's with a 6 mm margin).
* ``at_crop_edge``: the segmented LV reaches within :data:`CROP_EDGE_MM` of the edge of the region
  the model was shown (its crop around the located heart, where that lies inside the image; a 160 mm
  square for the bundled weights): a heart located off-centre, or a very large one, may have wall or
  blood pool cut off there.
* ``lv_removed``: the model drew an LV in this slice, but off the stack's LV axis, and post-processing
  removed it (:data:`scarnet.inference.MAX_LV_OFFSET_MM`): the slice reports no LV. Unlike
  ``lv_missing`` it also marks the first and last slices, where a removed LV would otherwise go unseen.

Stack-level, a warning rather than a flag: a stack that may stop short of the apex (its apical end slice still has a
large cavity, :func:`apical_coverage_warning`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .aha import MIN_CAVITY_AREA_MM2, cavity_area_mm2
from .labels import BACKGROUND, HEALTHY_MYOCARDIUM, LV_BLOOD_POOL, MYOCARDIUM_LABELS, SCAR_LABELS
from .preprocess import NORMALISATION_PERCENTILES

#: ``low_confidence`` flag, for the bundled weights (their sidecar records it as ``qc_calibration``;
#: a test keeps the two equal), and the stand-in for weights that carry no calibration of their own
#: (:class:`QcCalibration`). Set on EMIDEC *train* (the first 40 exams, 294 slices with myocardium):
#: the least confident fifth of the slices, where 25 of the 42 slices a reader would have to correct
#: lie (myocardium Dice under 0.7 or scar % off by over 10 points; 14 % of all slices).
#: ``scarnet evaluate`` reports how the flags do on the split it evaluates. Calibrate new weights
#: with ``scarnet evaluate --weights W --split train --max-cases 40 --skip noise artifacts contrast
#: field thresholds medsam unet --json T.json``, then ``scarnet calibrate-qc T.json`` (writes the
#: thresholds, this one, scar_uncertain's and the unsure-LV refusal's, and the stack warning's
#: share, into W's sidecar). (At 0.80, as before, it never fired on EMIDEC.)
LOW_CONFIDENCE_THRESHOLD = 0.927
#: ``low_confidence`` marks the least confident fraction of the calibration slices (see :func:`calibrate`).
LOW_CONFIDENCE_QUANTILE = 0.2
#: The highest threshold a calibration stores (a threshold of 1 would flag every slice); the lowest is
#: its complement (:meth:`QcCalibration.from_sidecar` refuses 0 and 1).
MAX_LOW_CONFIDENCE_THRESHOLD = 0.999
#: Fewer calibration slices than this give no usable percentile.
MIN_CALIBRATION_SLICES = 50
#: ``scar_uncertain``: a myocardium pixel is ambiguous when its scar probability (scar + MVO) lies
#: strictly between these.
SCAR_AMBIGUOUS_PROBABILITY = (0.2, 0.8)
#: ``scar_uncertain`` flag for the bundled weights (their sidecar's ``qc_calibration``; a test keeps
#: the two equal) and the stand-in for weights without one: the most ambiguous 15 % of the slices
#: with myocardium on EMIDEC *train* (the first 40 exams). With the interim (CPU) model it ranked
#: the slices to correct better than heart confidence there (AUC 0.83 against 0.80; among the
#: slices with predicted scar 0.77, against 0.72 for the scar % itself; a study script, not
#: shipped). With the bundled GPU model, beside ``low_confidence`` it raises the share of the
#: train slices to correct that are flagged from 25 of 42 to 31, for 71 of 294 slices flagged
#: (``scarnet calibrate-qc``'s figures).
SCAR_UNCERTAIN_THRESHOLD = 0.079
#: ``scar_uncertain`` marks the most ambiguous fraction ``1 − this`` of the calibration slices.
SCAR_UNCERTAIN_QUANTILE = 0.85
#: The heart region over which confidence is averaged: the LV (labels 1–4) and this margin around it.
HEART_REGION_MARGIN_MM = 3.0
#: The stack-level refusal counts the slices whose LV the model is *unsure* of: heart confidence
#: under this, far below the flag's threshold (see :data:`MAX_UNSURE_LV_FRACTION`). For the bundled
#: weights (their sidecar's ``qc_calibration``; a test keeps the two equal), and the stand-in for a
#: model passed in without a calibration (training's validation, the benchmark).
UNSURE_LV_THRESHOLD = 0.799
#: The most a calibration stores as the unsure threshold: the refusal's power on images without a
#: heart was measured at 0.80 with the interim bundled weights only, so a more confident model is
#: not made stricter than that.
MAX_UNSURE_LV_THRESHOLD = 0.80
#: A calibration puts the unsure threshold this far under the least confident of its slices (at most
#: :data:`MAX_UNSURE_LV_THRESHOLD`), so that no exam like the training data is refused: the bundled
#: weights' least confident slice of the 40 train exams is at 0.844, their threshold 0.799. Weights
#: less sure of themselves (say a least confident slice at 0.70) would otherwise refuse real exams
#: as "no heart found".
UNSURE_LV_MARGIN = 0.045
#: ``scar_unstable``: flip Dice under this. With the interim (CPU) weights flip disagreement did not rank
#: the slices a reader has to correct (AUC 0.40 over 191 scar slices of 40 EMIDEC train exams, 0.61
#: on val), so no threshold was tuned: the flag reports the model's self-disagreement, nothing more.
FLIP_DICE_THRESHOLD = 0.5
#: |Cohen's d| between blood pool and healthy myocardium intensities. On all 100 EMIDEC exams (expert
#: labels) the per-exam median is ≥ 1.15 and 97 % of slices are above 0.5; on pure noise under labels
#: that do not depend on it, ≈ 0.1.
MIN_TISSUE_CONTRAST = 0.5
#: The stack-level refusal ("no heart found") uses the median over slices and a lower bar than the
#: per-slice flag: 5 % Gaussian noise (the robustness test) takes a real EMIDEC exam (Case_P081,
#: median 1.1 clean) down to a median of 0.37–0.49, and that must still be segmented (with its slices
#: flagged). It catches structured images without LGE contrast where the model still draws an LV;
#: pure noise is left to the neighbour-correlation check below. It is signed: in LGE the blood
#: pool is brighter than nulled myocardium, so a stack where it is the darker (inverted grey
#: levels, a T1-weighted series) is refused too. With the interim (CPU) model the median signed d was
#: ≥ 1.12 on the 100 EMIDEC exams and ≥ 0.31 in 360 runs under noise (up to 15 %), artifacts and
#: contrast shifts. Of the 20 val exams with grey levels inverted it refuses 11 (with |d| it refused 4).
MIN_STACK_TISSUE_CONTRAST = 0.3
#: Correlation of horizontally and vertically neighbouring pixels: ≥ 0.95 on every clean EMIDEC exam,
#: ≥ 0.85 with 5 % Gaussian noise, ≥ 0.47 with 15 %; ≈ 0 for pure noise, on which a network still
#: draws a confident LV ring (and, by selecting bright and dark pixels, a "contrast" of 0.4–0.6).
MIN_NEIGHBOUR_CORRELATION = 0.2
#: The stack-level refusal ("no heart found") when the model is unsure of the LV (heart confidence
#: under the weights' unsure threshold, :data:`UNSURE_LV_THRESHOLD` for the bundled ones) in at
#: least this fraction of the slices where it draws one (and in two or more); weights without an
#: unsure threshold of their own get a warning instead (:class:`QcCalibration`). Measured with the
#: interim (CPU) model: 0 % of LV slices on all 100 EMIDEC exams; at most 20 % under the evaluation's 5 %
#: noise, motion, ghosting, bias field and contrast shifts, 33 % under 15 % noise (EMIDEC val and a
#: quarter of train, 360 runs); 50–100 % on 22 of the 35 EMIDEC exams cut to the part of the field
#: of view without the heart that the other checks let through (an LV drawn on chest wall, liver,
#: the right heart), and on a stack resliced along a long axis.
MAX_UNSURE_LV_FRACTION = 0.5
#: A stack with ``low_confidence`` on at least this fraction of its LV slices (and two or more) gets
#: a warning: the exam may differ from the training data (sequence, vendor, grey levels, artifacts),
#: so every slice needs reading. With the interim (CPU) model, at 0.75: at most 0.67 of the slices
#: of a clean exam among the first 40 EMIDEC train exams, at least 0.83 with the grey levels
#: inverted (in the 23 of 40 that the contrast check does not refuse); on val (a study script, not
#: shipped) no clean exam; inverted, 7 of the 8 not refused; 10 % noise 5 of 19; ghosting 5 of 20.
#: Like the thresholds, the share belongs to the weights (:func:`calibrate`): this is the bundled
#: weights' (a test keeps the two equal) and the stand-in for weights without one. The bundled GPU
#: model flags three quarters of one clean train exam's LV slices, so its calibration sets 0.80
#: (no val exam warned).
UNSURE_STACK_WARNING_FRACTION = 0.8
#: What that warning says (the evaluation counts the exams that get it).
UNLIKE_TRAINING_WARNING = "this exam may differ from the training data"
#: The least share a calibration sets (the interim model's clean exams stayed under it), and its
#: steps: the first multiple of the step from there above every calibration exam's share.
MIN_STACK_WARNING_FRACTION = 0.75
STACK_WARNING_STEP = 0.05
#: Scar smaller than this (mm²) in a slice is not judged for flip stability (a few pixels always differ).
MIN_SCAR_AREA_MM2 = 20.0
#: An LV closer than this to the image edge is flagged. In all 100 EMIDEC exams (the training data)
#: the LV lies ≥ 42 mm from the edge.
NEAR_EDGE_MM = 20.0
#: Stack coverage: the apical end slice's cavity (a fraction of the stack's largest) from which the stack may stop
#: short of the apex (:func:`apical_coverage_warning`). Set on EMIDEC *train*'s expert labels as the lowest 5 % step
#: warning at most a tenth of the complete stacks (45 %: 14 of 80), with the exams cut by 1 and 2 apical slices; then,
#: unchanged, warned (complete / cut by 1 / cut by 2): train experts 5 / 49 / 75 of 80, the bundled model 3 / 43 / 77;
#: val experts 1 / 12 / 19 of 20, model 0 / 12 / 19. Phantoms (seeds 0-19) reach the apex (end slice's cavity 0-17 %
#: of the largest, 0-25 % in the model's labels): 0 warned complete, 0 cut by 1, 8 (model 7) cut by 2: their slices
#: are thinner, so one or two missing cut off less of the LV. ``python tools/studies/stack_coverage.py`` (CPU).
APICAL_CAVITY_WARNING_FRACTION = 0.5
#: ``at_crop_edge``: segmented LV this close (mm) to the edge of the model's crop (two pixels of the bundled
#: weights' 1.25 mm crop).
CROP_EDGE_MM = 2.5

FLAG_DESCRIPTIONS = {
    "low_confidence": "model confidence low in the heart region",
    "broken_ring": "myocardial ring open (blood pool touches outside tissue)",
    "lv_missing": "no LV found between slices that have one",
    "scar_unstable": "scar changes when the slice is flipped",
    "scar_uncertain": "model unsure where the scar ends (scar probability 0.2–0.8 in much of the myocardium)",
    "low_contrast": "blood pool and myocardium look alike (no LGE contrast)",
    "near_image_edge": "LV close to the edge of the image (small or off-centre field of view)",
    "at_crop_edge": "LV reaches the edge of the region the model saw (wall may be cut off)",
    "lv_removed": "an LV drawn off the stack's LV axis was removed (the slice reports none)",
}


@dataclass(frozen=True)
class QcCalibration:
    """The QC threshold that depends on the weights, as the weights' sidecar JSON records it.

    Heart confidence is a property of one set of weights: a model trained longer or on other data
    is more (or less) sure of itself everywhere, so a threshold set for one model would flag every
    slice, or none, with another. Weights written by ``scarnet calibrate-qc`` carry their own
    (``qc_calibration`` in the sidecar); others get the bundled model's, marked not calibrated.
    """

    low_confidence_threshold: float = LOW_CONFIDENCE_THRESHOLD
    #: False when the weights carry no calibration and the bundled model's thresholds stand in.
    calibrated_for_weights: bool = True
    scar_uncertain_threshold: float = SCAR_UNCERTAIN_THRESHOLD
    #: The stack-level refusal's (:data:`UNSURE_LV_THRESHOLD`); never above ``low_confidence_threshold``.
    unsure_lv_threshold: float = UNSURE_LV_THRESHOLD
    #: False for weights without an unsure threshold of their own (no calibration, or one written
    #: before the threshold was part of it): an LV the model is unsure of in most slices is then
    #: warned about, not refused. Another model's scale could refuse every real exam, and keep
    #: the weights' own calibration run (an evaluation on train) from seeing them.
    refuses_unsure_lv: bool = True
    #: The share of a stack's LV slices flagged ``low_confidence`` from which it gets the warning
    #: that the exam may differ from the training data (:data:`UNSURE_STACK_WARNING_FRACTION`).
    stack_warning_fraction: float = UNSURE_STACK_WARNING_FRACTION

    def __post_init__(self) -> None:
        # A slice the refusal counts as unsure is always flagged low_confidence too.
        if self.unsure_lv_threshold > self.low_confidence_threshold:
            object.__setattr__(self, "unsure_lv_threshold", self.low_confidence_threshold)

    @classmethod
    def from_sidecar(cls, data: Any) -> QcCalibration:
        """Read a sidecar's ``qc_calibration`` entry; ``ValueError`` (one line) when it is unusable.

        An entry without ``unsure_lv_threshold`` (written before it was calibrated) keeps its flag
        thresholds, but the unsure-LV refusal becomes a warning (``refuses_unsure_lv`` False); one
        without ``stack_warning_fraction`` warns from :data:`UNSURE_STACK_WARNING_FRACTION`.
        """
        if not isinstance(data, dict):
            raise ValueError(f"it must be an object with the thresholds, not {type(data).__name__}")
        keys = ["low_confidence_threshold", "scar_uncertain_threshold"]
        keys += ["unsure_lv_threshold"] if "unsure_lv_threshold" in data else []
        thresholds = []
        for key in keys:
            threshold = data.get(key)
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
                raise ValueError(f"{key} must be a number between 0 and 1, not {threshold!r}")
            thresholds.append(float(threshold))
        share = data.get("stack_warning_fraction", UNSURE_STACK_WARNING_FRACTION)
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 < share <= 1.0:
            raise ValueError(f"stack_warning_fraction must be a number above 0 and at most 1, not {share!r}")
        if len(thresholds) == 2:
            return cls(thresholds[0], scar_uncertain_threshold=thresholds[1], refuses_unsure_lv=False,
                       stack_warning_fraction=float(share))
        if thresholds[2] > thresholds[0]:
            raise ValueError(f"unsure_lv_threshold ({thresholds[2]:g}) must be at most low_confidence_threshold "
                             f"({thresholds[0]:g}): a slice the refusal counts as unsure is also flagged")
        return cls(thresholds[0], scar_uncertain_threshold=thresholds[1], unsure_lv_threshold=thresholds[2],
                   stack_warning_fraction=float(share))


def _measured(values: Sequence[float | None]) -> np.ndarray:
    """Mask of the entries that were measured (not None, finite)."""
    return np.array([v is not None and math.isfinite(v) for v in values], dtype=bool)


#: The lowest threshold a calibration stores (0 would never flag, nor refuse).
_MIN_STORED_THRESHOLD = round(1.0 - MAX_LOW_CONFIDENCE_THRESHOLD, 3)


def _stored_threshold(values: np.ndarray, quantile: float) -> float:
    """The ``quantile`` of ``values`` to 3 decimals, kept inside (0, 1): a model sure of every slice,
    or never (or always) ambiguous, would otherwise get an unusable 1.0 or 0.0."""
    return min(max(round(float(np.quantile(values, quantile)), 3), _MIN_STORED_THRESHOLD),
               MAX_LOW_CONFIDENCE_THRESHOLD)


def warns_stack(flagged: int, with_lv: int, fraction: float) -> bool:
    """Whether a stack with ``flagged`` of its ``with_lv`` LV slices flagged ``low_confidence`` gets
    the warning that it may differ from the training data (two or more, and ``fraction`` of them)."""
    return with_lv >= 2 and flagged > 0 and flagged / with_lv >= fraction - 1e-9


def _stack_warning_fraction(most_flagged_share: float) -> float:
    """The first step of :data:`STACK_WARNING_STEP` from :data:`MIN_STACK_WARNING_FRACTION` up that is
    above ``most_flagged_share`` (at most 1: then only stacks flagged in every LV slice are warned)."""
    fraction = MIN_STACK_WARNING_FRACTION
    while fraction <= most_flagged_share + 1e-9 and fraction < 1.0:
        fraction = round(fraction + STACK_WARNING_STEP, 2)
    return min(fraction, 1.0)


def calibrate(heart_confidences: Sequence[float | None], scar_ambiguities: Sequence[float | None],
              needs_correction: Sequence[bool] | None = None, cases: Sequence[str] | None = None) -> dict[str, Any]:
    """The ``qc_calibration`` sidecar entry from a train-split evaluation's per-slice figures.

    One entry per slice with myocardium in the prediction or the reference:
    ``heart_confidences`` (:func:`heart_confidence`) and ``scar_ambiguities``
    (:func:`scar_ambiguity`), None where the model drew no LV, or no myocardium (slices without
    either figure are left out).
    ``low_confidence`` then marks the least confident :data:`LOW_CONFIDENCE_QUANTILE` of slices like
    the training data's, ``scar_uncertain`` the most ambiguous ``1 −`` :data:`SCAR_UNCERTAIN_QUANTILE`;
    the stack-level refusal counts a slice as unsure :data:`UNSURE_LV_MARGIN` under the least
    confident one (of all slices with a confidence; at most :data:`MAX_UNSURE_LV_THRESHOLD`).
    ``needs_correction`` (same order) adds how many of the slices a reader has to correct each flag
    and either of them mark. ``cases`` (the exam of each slice) sets the stack warning's share: the
    first step above the largest share of one calibration exam's slices with a confidence that
    ``low_confidence`` marks (exams with two or more), so that no exam like them is warned.
    ``ValueError`` when too few slices were measured.
    """
    if len(scar_ambiguities) != len(heart_confidences) or any(
            extra is not None and len(extra) != len(heart_confidences) for extra in (needs_correction, cases)):
        raise ValueError("one entry per slice is needed in every list")
    has_confidence = _measured(heart_confidences)
    measured = has_confidence & _measured(scar_ambiguities)
    if measured.sum() < MIN_CALIBRATION_SLICES:
        raise ValueError(f"{measured.sum()} slices with a heart confidence and a scar ambiguity; at least "
                         f"{MIN_CALIBRATION_SLICES} are needed (evaluate more cases)")
    confidence = np.array([c for c, m in zip(heart_confidences, measured) if m], dtype=float)
    ambiguity = np.array([a for a, m in zip(scar_ambiguities, measured) if m], dtype=float)
    # The counts below use the stored values, so they say what the flags will do.
    low_confidence = _stored_threshold(confidence, LOW_CONFIDENCE_QUANTILE)
    scar_uncertain = _stored_threshold(ambiguity, SCAR_UNCERTAIN_QUANTILE)
    # Over every slice with a confidence: the refusal counts LV slices without myocardium too.
    least_confidence = round(float(np.min(np.array(heart_confidences, dtype=float)[has_confidence])), 3)
    unsure_lv = min(max(round(least_confidence - UNSURE_LV_MARGIN, 3), _MIN_STORED_THRESHOLD),
                    MAX_UNSURE_LV_THRESHOLD, low_confidence)
    entry: dict[str, Any] = {"low_confidence_threshold": low_confidence, "low_confidence_quantile":
                             LOW_CONFIDENCE_QUANTILE, "scar_uncertain_threshold": scar_uncertain,
                             "scar_uncertain_quantile": SCAR_UNCERTAIN_QUANTILE, "unsure_lv_threshold": unsure_lv,
                             "least_heart_confidence": least_confidence, "slices": int(measured.sum())}
    if cases is not None:
        # Counted as the pipeline counts a stack's low_confidence slices (unsure_lv_slices).
        confidence_by_case: dict[str, list[float]] = {}
        for case, value, has in zip(cases, heart_confidences, has_confidence):
            if has:
                confidence_by_case.setdefault(str(case), []).append(float(value))
        counts = [unsure_lv_slices(np.array(values), low_confidence) for values in confidence_by_case.values()]
        shares = [flagged / with_lv for flagged, with_lv in counts if with_lv >= 2]
        most = max(shares, default=0.0)
        entry["most_flagged_exam_share"] = round(most, 3)
        entry["stack_warning_fraction"] = _stack_warning_fraction(most)
    if needs_correction is not None:
        to_correct = np.array([bool(n) for n, m in zip(needs_correction, measured) if m], dtype=bool)
        flagged_low, flagged_scar = confidence < low_confidence, ambiguity >= scar_uncertain
        entry["slices_to_correct"] = int(to_correct.sum())
        entry["slices_to_correct_flagged"] = {
            "low_confidence": int((to_correct & flagged_low).sum()),
            "scar_uncertain": int((to_correct & flagged_scar).sum()),
            "either": int((to_correct & (flagged_low | flagged_scar)).sum())}
        entry["slices_flagged_either"] = int((flagged_low | flagged_scar).sum())
    return entry


def neighbour_correlation(array: np.ndarray) -> float:
    """The smaller of the correlations of in-plane neighbouring pixels (along rows, along columns).

    Any image of anatomy is spatially smooth at the pixel scale; white noise is not.
    ``array`` is (slices, rows, columns). Computed on the intensities clipped to the range the model sees
    (:data:`~scarnet.preprocess.NORMALISATION_PERCENTILES`): one hot voxel outside the heart (an ICD artefact,
    a value left at the scanner's maximum) otherwise held most of the variance, and the exam was refused as noise.
    """
    values = array.astype(np.float64, copy=False)
    # Percentiles of at most ~1M voxels: the same range on a large volume, in a fraction of the time.
    sample = values.ravel()[:: max(1, values.size // 1_000_000)]
    low, high = np.percentile(sample, NORMALISATION_PERCENTILES)
    values = np.clip(values, low, high)
    correlations = []
    for a, b in ((values[:, :, :-1], values[:, :, 1:]), (values[:, :-1, :], values[:, 1:, :])):
        a = a.ravel() - a.mean()
        b = b.ravel() - b.mean()
        denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
        correlations.append(float((a * b).sum()) / denominator if denominator > 0 else 0.0)
    return min(correlations)


def tissue_contrast(image_2d: np.ndarray, labels_2d: np.ndarray, min_pixels: int = 20) -> float | None:
    """Cohen's d of blood pool vs healthy myocardium intensity; None when either has too few pixels."""
    blood = image_2d[labels_2d == LV_BLOOD_POOL].astype(np.float64)
    myocardium = image_2d[labels_2d == HEALTHY_MYOCARDIUM].astype(np.float64)
    if blood.size < min_pixels or myocardium.size < min_pixels:
        return None
    pooled_sd = np.sqrt((blood.var() + myocardium.var()) / 2)
    if pooled_sd == 0:
        return 0.0 if blood.mean() == myocardium.mean() else float("inf")
    return float((blood.mean() - myocardium.mean()) / pooled_sd)


def heart_confidence(labels: np.ndarray, max_probability: np.ndarray,
                     spacing_rc_mm: tuple[float, float]) -> np.ndarray:
    """Mean max-probability per slice over the LV region and a :data:`HEART_REGION_MARGIN_MM` margin (NaN
    where no LV).

    The margin is in mm, not pixels, so that the figure does not depend on the pixel size: with a
    2-pixel margin, EMIDEC val resampled to half its pixel size had 34 of 140 slices under 0.915,
    at twice the pixel size 14 (28 as stored); with 3 mm, 22, 28 and 24.
    """
    out = np.full(labels.shape[0], np.nan)
    # Only a box around the LV can be within the margin: the distance map is computed there.
    margin_px = [int(np.ceil(HEART_REGION_MARGIN_MM / s)) + 1 for s in spacing_rc_mm]
    for k in range(labels.shape[0]):
        region = labels[k] != BACKGROUND
        if region.any():
            rows, cols = np.nonzero(region)
            r0, r1 = max(rows.min() - margin_px[0], 0), rows.max() + margin_px[0] + 1
            c0, c1 = max(cols.min() - margin_px[1], 0), cols.max() + margin_px[1] + 1
            distance = ndimage.distance_transform_edt(~region[r0:r1, c0:c1], sampling=spacing_rc_mm)
            out[k] = float(max_probability[k][r0:r1, c0:c1][distance <= HEART_REGION_MARGIN_MM].mean())
    return out


def scar_ambiguity(labels: np.ndarray, scar_probability: np.ndarray) -> np.ndarray:
    """Per slice of a (k, j, i) labelmap: the fraction of its myocardium (labels 2–4) where the scar
    probability (scar + MVO, same shape) lies strictly inside :data:`SCAR_AMBIGUOUS_PROBABILITY`;
    NaN for slices without myocardium."""
    low, high = SCAR_AMBIGUOUS_PROBABILITY
    myocardium = np.isin(labels, (HEALTHY_MYOCARDIUM, *SCAR_LABELS))
    ambiguous = myocardium & (scar_probability > low) & (scar_probability < high)
    area = myocardium.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(area > 0, ambiguous.sum(axis=(1, 2)) / np.maximum(area, 1), np.nan)


def unsure_lv_slices(confidence: np.ndarray, threshold: float) -> tuple[int, int]:
    """(slices whose heart confidence is under ``threshold``, slices with an LV), from :func:`heart_confidence`.

    With the weights' unsure threshold (:class:`QcCalibration`), the slices the stack-level refusal
    counts; with their low-confidence threshold, the slices flagged ``low_confidence``.
    """
    with_lv = ~np.isnan(confidence)
    return int((confidence[with_lv] < threshold).sum()), int(with_lv.sum())


def ring_is_broken(labels_2d: np.ndarray) -> bool:
    """True when the blood pool is 4-adjacent to background (the myocardium does not enclose it).

    Outside the image counts as background: an LV cut by the field of view is not enclosed either.
    """
    blood = labels_2d == LV_BLOOD_POOL
    if not blood.any():
        return False
    padded = np.pad(labels_2d, 1, constant_values=BACKGROUND)
    touching = ndimage.binary_dilation(np.pad(blood, 1)) & (padded == BACKGROUND)
    return bool(touching.any())


def flip_scar_dice(scar: np.ndarray, scar_flipped: np.ndarray) -> float:
    """Dice between the scar masks of one slice predicted plainly and on the flipped input."""
    total = scar.sum() + scar_flipped.sum()
    return 1.0 if total == 0 else float(2 * (scar & scar_flipped).sum() / total)


def distance_to_image_edge_mm(labels_2d: np.ndarray, spacing_rc_mm: tuple[float, float]) -> float | None:
    """Distance (mm) from the slice's LV (labels 1–4) to the nearest edge of the image; None without LV."""
    rows, cols = np.nonzero(labels_2d != BACKGROUND)
    if rows.size == 0:
        return None
    last_row, last_col = labels_2d.shape[0] - 1, labels_2d.shape[1] - 1
    return float(min(rows.min() * spacing_rc_mm[0], (last_row - rows.max()) * spacing_rc_mm[0],
                     cols.min() * spacing_rc_mm[1], (last_col - cols.max()) * spacing_rc_mm[1]))


def slice_flags(labels: np.ndarray, max_probability: np.ndarray, pixel_area_mm2: float,
                flipped_scar: dict[int, np.ndarray] | None = None,
                contrast: list[float | None] | None = None,
                spacing_rc_mm: tuple[float, float] | None = None,
                confidence: np.ndarray | None = None,
                low_confidence_threshold: float = LOW_CONFIDENCE_THRESHOLD,
                ambiguity: np.ndarray | None = None,
                scar_uncertain_threshold: float = SCAR_UNCERTAIN_THRESHOLD,
                crop_edge: np.ndarray | None = None,
                lv_removed: Sequence[int] = ()) -> list[list[str]]:
    """QC flags for every slice of a (k, j, i) labelmap.

    ``flipped_scar`` maps slice index → scar mask predicted on the flipped slice (already
    flipped back), for the slices that were checked; ``contrast`` gives each slice's
    :func:`tissue_contrast` (None where it could not be measured); ``spacing_rc_mm`` (row, column
    pixel spacing) enables ``near_image_edge``; ``confidence``: :func:`heart_confidence` when the
    caller has it already; ``ambiguity``: :func:`scar_ambiguity` (enables ``scar_uncertain``); the
    thresholds: the weights' (:class:`QcCalibration`); ``crop_edge``: (rows, cols) mask of the band
    inside the edge of the model's crop (enables ``at_crop_edge``); ``lv_removed``: the slices whose
    LV post-processing removed.
    """
    num_slices = labels.shape[0]
    flags: list[list[str]] = [[] for _ in range(num_slices)]
    if confidence is None:
        side_mm = float(np.sqrt(pixel_area_mm2))
        confidence = heart_confidence(labels, max_probability, spacing_rc_mm or (side_mm, side_mm))
    has_lv = ~np.isnan(confidence)  # NaN exactly where the slice has no LV (labels 1–4)
    lv_slices = np.nonzero(has_lv)[0]
    for k in range(num_slices):
        if has_lv[k] and confidence[k] < low_confidence_threshold:
            flags[k].append("low_confidence")
        if has_lv[k] and ring_is_broken(labels[k]):
            flags[k].append("broken_ring")
        if not has_lv[k] and lv_slices.size and lv_slices.min() < k < lv_slices.max():
            flags[k].append("lv_missing")
        if flipped_scar is not None and k in flipped_scar:
            scar = np.isin(labels[k], SCAR_LABELS)
            area_mm2 = max(scar.sum(), flipped_scar[k].sum()) * pixel_area_mm2
            if area_mm2 >= MIN_SCAR_AREA_MM2 and flip_scar_dice(scar, flipped_scar[k]) < FLIP_DICE_THRESHOLD:
                flags[k].append("scar_unstable")
        if ambiguity is not None and not np.isnan(ambiguity[k]) and ambiguity[k] >= scar_uncertain_threshold:
            flags[k].append("scar_uncertain")
        if contrast is not None and contrast[k] is not None and abs(contrast[k]) < MIN_TISSUE_CONTRAST:
            flags[k].append("low_contrast")
        if has_lv[k] and spacing_rc_mm is not None:
            distance_mm = distance_to_image_edge_mm(labels[k], spacing_rc_mm)
            if distance_mm is not None and distance_mm < NEAR_EDGE_MM:
                flags[k].append("near_image_edge")
        if has_lv[k] and crop_edge is not None and bool((labels[k] != BACKGROUND)[crop_edge].any()):
            flags[k].append("at_crop_edge")
        if k in lv_removed:
            flags[k].append("lv_removed")
    return flags


def crop_edge_band(footprint: np.ndarray, spacing_rc_mm: tuple[float, float], width_mm: float = CROP_EDGE_MM
                   ) -> np.ndarray:
    """The part of a crop's ``footprint`` (its pixels on the slice grid) within ``width_mm`` of the crop's edge:
    the pixels whose centre lies that close to the centre of the nearest pixel outside the crop.

    Only the edge the crop has inside the image counts: where the crop runs past the image, the
    image's own edge is ``near_image_edge``'s business.
    """
    if footprint.all():  # the crop covers the whole slice: no edge of its own inside the image
        return np.zeros_like(footprint, dtype=bool)
    distance_mm = ndimage.distance_transform_edt(footprint, sampling=spacing_rc_mm)
    return footprint & (distance_mm <= width_mm)


@dataclass(frozen=True)
class ApicalEnd:
    """The slice at the apical end of a stack, as :func:`apical_end_coverage` measures it."""

    slice_index: int
    has_myocardium: bool
    #: Its LV cavity (blood pool and the background its labels enclose, :func:`scarnet.aha.cavity_area_mm2`)
    #: and its myocardium (labels 2-4), as fractions of the stack's largest slice's.
    cavity_fraction: float
    myocardium_fraction: float
    #: True when the base-apex order was unknown and the end with the smaller cavity was taken as apical.
    end_from_cavity: bool


def apical_end_coverage(labels: np.ndarray, base_first: bool | None, pixel_area_mm2: float) -> ApicalEnd | None:
    """The apical end slice of a (k, rows, cols) labelmap: the stack's last slice at that end, with LV or not.

    ``base_first``: slice 0 is basal (the report's ``base_apex``); None when the order is unknown: then the
    end slice with the smaller cavity fraction is taken (the smaller myocardium on a tie), the one more likely
    to be apical; a stack that warns that way has a large cavity at both ends. None for a labelmap without
    any cavity of :data:`scarnet.aha.MIN_CAVITY_AREA_MM2`, and for a single slice (nothing to compare with).
    """
    if labels.shape[0] < 2:
        return None  # one slice: its own largest, nothing to compare with
    cavity = np.array([cavity_area_mm2(plane, pixel_area_mm2) for plane in labels])
    myocardium = np.isin(labels, MYOCARDIUM_LABELS).sum(axis=(1, 2)).astype(float)
    if cavity.max() < MIN_CAVITY_AREA_MM2 or myocardium.max() == 0:
        return None

    def end(k: int, from_cavity: bool) -> ApicalEnd:
        return ApicalEnd(k, bool(myocardium[k] > 0), float(cavity[k] / cavity.max()),
                         float(myocardium[k] / myocardium.max()), from_cavity)

    last = labels.shape[0] - 1
    if base_first is not None:
        return end(last if base_first else 0, False)
    return min((end(0, True), end(last, True)), key=lambda e: (e.cavity_fraction, e.myocardium_fraction))


#: How :func:`apical_coverage_warning`'s message starts (the page's headline is this clause).
APICAL_COVERAGE_WARNING_START = "the stack may stop short of the apex"


def apical_coverage_warning(labels: np.ndarray, base_first: bool | None, pixel_area_mm2: float) -> str | None:
    """The stack-level warning that the stack may not reach the apex, from a (k, rows, cols) labelmap; None when
    its apical end looks like an apex.

    A stack that reaches the apex ends on a slice whose LV cavity is small or gone (or on one without
    myocardium); one cut short (a slice missing at the end of a series, a planner who stopped early) ends on
    a large cavity, and the scar beyond it, in the apical segments and the apex, is not counted. Slice
    positions cannot tell: they stay evenly spaced when an end slice is missing. Warned when the apical end
    slice (:func:`apical_end_coverage`; ``base_first`` None: the end with the smaller cavity) has myocardium
    and a cavity of at least :data:`APICAL_CAVITY_WARNING_FRACTION` of the stack's largest.
    """
    end = apical_end_coverage(labels, base_first, pixel_area_mm2)
    if end is None or not end.has_myocardium or end.cavity_fraction < APICAL_CAVITY_WARNING_FRACTION:
        return None
    which = (f"the end slice with the smaller cavity (slice {end.slice_index}; which end is apical is unknown)"
             if end.end_from_cavity else f"the apical end slice (slice {end.slice_index})")
    return (f"{APICAL_COVERAGE_WARNING_START}: the LV cavity on {which} is {100 * end.cavity_fraction:.0f} % of "
            "its largest, where a stack that reaches the apex ends on a small cavity or none; myocardium and scar "
            "beyond the last slice (apical segments, apex) are not counted: check that the series is complete")
