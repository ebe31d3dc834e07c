"""Per-case figures in 3D: Dice, HD95, scar % error; used for model selection and ``scarnet evaluate``.

Conventions (stated in every table):

* Dice per case over the whole stack, then averaged over cases.
* Myocardium = labels 2|3|4, scar = 3|4 (MVO included), blood pool = 1, MVO = 4.
* Scar Dice is averaged over cases **with** scar in the reference (Dice is undefined when both
  are empty, and 0 for any false positive on a normal heart, which would mostly measure
  something else); false-positive scar on normal hearts is reported separately as
  ``normal_cases_with_scar`` and ``normal_scar_ml_mean``. MVO Dice likewise over cases with MVO.
* Scar % = scar / myocardium of the same labelmap: the prediction's own myocardium for the
  prediction (the figure a user of the model gets), the reference's for the reference.
* Bland–Altman of scar %: error = predicted − reference per case; bias = mean error, limits of
  agreement = bias ± 1.96 SD (sample SD, ddof = 1), n = all cases. Normal hearts are included
  (their error is the false-positive scar %, near 0), which narrows the limits; the same over the
  infarct cases alone is ``scar_percent_bias_infarct`` / ``scar_percent_loa_infarct``.
* HD95 (:func:`hd95_mm`): 3D, in mm with the voxel spacing, as medpy's ``hd95``.
* Myocardial volume: per case (predicted − reference) / reference in %, Bland–Altman over the cases whose reference
  has myocardium (``myocardium_volume_percent_bias`` / ``_loa``; grid-independent, so valid on EMIDEC's estimated
  spacing).
* MVO presence per exam (:func:`mvo_presence`): the reference has MVO when any of its voxels is 4 (the expert drew
  some); the prediction counts two ways, any voxel of 4, and at least :data:`MVO_PRESENCE_MIN_ML`. Over the cases
  without reference MVO: how many the model draws MVO in, and its mean MVO volume over all of them ("MVO drawn where
  the expert drew none"); over the cases with reference MVO: how many the model draws any in (per-exam sensitivity).
  Volumes as ``scar_ml_*``: voxel count × the reference's voxel volume.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .labels import LV_BLOOD_POOL, MVO, MYOCARDIUM_LABELS, SCAR_LABELS
from .volume import Volume

#: Predicted MVO of at least this volume (mL) counts as "MVO drawn" under the second presence rule, so that a few
#: stray voxels do not count as an MVO finding (the first rule counts any voxel; both are reported).
MVO_PRESENCE_MIN_ML = 0.5


def dice(prediction: np.ndarray, reference: np.ndarray) -> float | None:
    """Dice of two boolean masks; None when both are empty."""
    total = int(prediction.sum()) + int(reference.sum())
    if total == 0:
        return None
    return float(2 * np.logical_and(prediction, reference).sum() / total)


def hd95_mm(prediction: np.ndarray, reference: np.ndarray, spacing_kji_mm: tuple[float, float, float]) -> float | None:
    """95th-percentile symmetric surface distance (mm) in 3D; None when either mask is empty.

    As medpy's ``hd95``: the surface is the mask minus its 6-connected erosion (the array's edge
    counts as outside), distances go from each surface voxel to the nearest surface voxel of the
    other mask with the anisotropic spacing, and the 95th percentile is taken over both directions
    pooled (not the larger of the two directed percentiles, as MONAI's or DeepMind's
    surface-distance give, which is at least as large).

    In 3D on thick slices (8-13 mm) the surface includes each mask's whole end slices and every
    in-plane voxel uncovered by the next slice's ring; most coincide with the other mask's (distance 0)
    and dilute the percentile. On EMIDEC val (10 mm slices assumed) 61 % of the myocardium's surface
    voxels were such through-plane faces and 69 % of the distances 0; ScarNet's mean HD95 of 2.3 mm read
    3.2 mm per slice in 2D (in-plane contours only). Compare it only with HD95 computed the same way.
    """
    if not prediction.any() or not reference.any():
        return None
    from scipy import ndimage

    def surface(mask: np.ndarray) -> np.ndarray:
        return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1))

    pred_surface, ref_surface = surface(prediction), surface(reference)
    to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=spacing_kji_mm)
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=spacing_kji_mm)
    distances = np.concatenate([to_ref[pred_surface], to_pred[ref_surface]])
    return float(np.percentile(distances, 95))


def scar_percent(labels: np.ndarray) -> float:
    """Scar (labels 3|4) in % of the myocardium (2|3|4) of one labelmap; 0 without myocardium."""
    return _scar_percent(np.isin(labels, MYOCARDIUM_LABELS), np.isin(labels, SCAR_LABELS))


def _scar_percent(myocardium: np.ndarray, scar: np.ndarray) -> float:
    """:func:`scar_percent` from the labelmap's myocardium and scar masks, made once by the caller."""
    myocardium_voxels = myocardium.sum()
    return float(100.0 * scar.sum() / myocardium_voxels) if myocardium_voxels else 0.0


def case_metrics(prediction: Volume, reference: Volume, surface_distance: bool = True) -> dict[str, Any]:
    """All per-case figures for one predicted labelmap against its reference."""
    p, r = prediction.array, reference.array
    voxel_ml = reference.voxel_volume_ml
    # Each mask once: the figures below use each of them two to four times.
    myocardium_p, myocardium_r = np.isin(p, MYOCARDIUM_LABELS), np.isin(r, MYOCARDIUM_LABELS)
    scar_p, scar_r = np.isin(p, SCAR_LABELS), np.isin(r, SCAR_LABELS)
    mvo_p, mvo_r = p == MVO, r == MVO
    has_scar = bool(scar_r.any())
    out: dict[str, Any] = {
        "myocardium_dice": dice(myocardium_p, myocardium_r),
        "scar_dice": dice(scar_p, scar_r) if has_scar else None,
        "blood_pool_dice": dice(p == LV_BLOOD_POOL, r == LV_BLOOD_POOL),
        "mvo_dice": dice(mvo_p, mvo_r) if mvo_r.any() else None,
        "scar_percent_pred": _scar_percent(myocardium_p, scar_p),
        "scar_percent_ref": _scar_percent(myocardium_r, scar_r),
        "scar_ml_pred": float(scar_p.sum() * voxel_ml),
        "scar_ml_ref": float(scar_r.sum() * voxel_ml),
        "myocardium_ml_pred": float(myocardium_p.sum() * voxel_ml),
        "myocardium_ml_ref": float(myocardium_r.sum() * voxel_ml),
        "mvo_ml_pred": float(mvo_p.sum() * voxel_ml),
        "mvo_ml_ref": float(mvo_r.sum() * voxel_ml),
        "has_scar": has_scar,
    }
    out["scar_percent_error"] = out["scar_percent_pred"] - out["scar_percent_ref"]
    if surface_distance:
        spacing_kji = tuple(reversed(reference.spacing_mm))
        out["myocardium_hd95_mm"] = hd95_mm(myocardium_p, myocardium_r, spacing_kji)
    return out


def _mean(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else float("nan")


def bland_altman(errors: list[float] | np.ndarray) -> tuple[float, list[float] | None]:
    """Bias (mean difference) and 95 % limits of agreement (bias ± 1.96 SD, ddof = 1; None under 2 values)."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        return float("nan"), None
    bias = float(errors.mean())
    if errors.size < 2:
        return bias, None
    sd = float(errors.std(ddof=1))
    return bias, [bias - 1.96 * sd, bias + 1.96 * sd]


def mvo_presence(per_case: dict[str, dict[str, Any]], min_ml: float = MVO_PRESENCE_MIN_ML) -> dict[str, Any] | None:
    """Per-exam MVO presence of the prediction against the reference (conventions of the module docstring).

    ``no_mvo_*``: over the cases whose reference has no MVO, how many the prediction has any MVO in
    (``no_mvo_cases_with_mvo``), at least ``min_ml`` in (``_min``), their names, and the mean and largest predicted
    MVO volume over all of them; ``no_mvo_infarct_*`` the same counts over those of them with scar in the reference
    (infarcts without MVO, where a false MVO is likeliest: a normal heart's has no scar core to put it in).
    ``mvo_*``: over the cases with reference MVO, how many the prediction has any in and at least ``min_ml`` in.
    None when a case lacks ``mvo_ml_pred`` or ``mvo_ml_ref`` (an evaluation made before
    they were recorded, or a method that draws no labelmap, such as LiteMedSAM's boxes).
    """
    cases = list(per_case.items())
    if not cases or any(c.get("mvo_ml_pred") is None or c.get("mvo_ml_ref") is None for _, c in cases):
        return None
    without = [(name, c["mvo_ml_pred"]) for name, c in cases if c["mvo_ml_ref"] == 0]
    infarct_without = [c["mvo_ml_pred"] for _, c in cases if c["mvo_ml_ref"] == 0 and c.get("has_scar")]
    with_mvo = [c["mvo_ml_pred"] for _, c in cases if c["mvo_ml_ref"] > 0]
    return {
        "mvo_presence_min_ml": min_ml,
        "no_mvo_cases": len(without),
        "no_mvo_cases_with_mvo": sum(1 for _, ml in without if ml > 0),
        "no_mvo_cases_with_mvo_min": sum(1 for _, ml in without if ml >= min_ml),
        "no_mvo_cases_with_mvo_names": sorted(name for name, ml in without if ml > 0),
        "no_mvo_mvo_ml_mean": _mean([ml for _, ml in without]),
        "no_mvo_mvo_ml_max": max((ml for _, ml in without), default=float("nan")),
        "no_mvo_infarct_cases": len(infarct_without),
        "no_mvo_infarct_cases_with_mvo": sum(1 for ml in infarct_without if ml > 0),
        "no_mvo_infarct_cases_with_mvo_min": sum(1 for ml in infarct_without if ml >= min_ml),
        "mvo_cases": len(with_mvo),
        "mvo_cases_with_mvo": sum(1 for ml in with_mvo if ml > 0),
        "mvo_cases_with_mvo_min": sum(1 for ml in with_mvo if ml >= min_ml),
    }


def summarise(per_case: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Means over cases with the conventions of the module docstring, and Bland–Altman of scar %."""
    cases = list(per_case.values())
    bias, loa = bland_altman([c["scar_percent_error"] for c in cases])
    bias_infarct, loa_infarct = bland_altman([c["scar_percent_error"] for c in cases if c["has_scar"]])
    normal = [c for c in cases if not c["has_scar"]]
    # The myocardium's size against the reference's, in % of it: scar % is relative to each labelmap's own
    # myocardium, so a larger one dilutes it (evaluations made before this was recorded lack the volumes).
    volume_errors = [100.0 * (c["myocardium_ml_pred"] - c["myocardium_ml_ref"]) / c["myocardium_ml_ref"]
                     for c in cases if c.get("myocardium_ml_ref") and c.get("myocardium_ml_pred") is not None
                     and not c.get("refused")]  # a refused exam (no heart found) counts in Dice, not as -100 % here
    summary = {
        "cases": len(cases),
        "myocardium_dice_mean": _mean([c["myocardium_dice"] for c in cases]),
        "scar_dice_mean": _mean([c["scar_dice"] for c in cases]),
        "blood_pool_dice_mean": _mean([c["blood_pool_dice"] for c in cases]),
        "mvo_dice_mean": _mean([c["mvo_dice"] for c in cases]),
        "scar_percent_bias": bias,
        "scar_percent_loa": loa,
        "scar_percent_bias_infarct": bias_infarct,
        "scar_percent_loa_infarct": loa_infarct,
        "normal_cases": len(normal),
        "normal_cases_with_scar": sum(1 for c in normal if c["scar_ml_pred"] > 0),
        "normal_scar_ml_mean": _mean([c["scar_ml_pred"] for c in normal]),
    }
    if (presence := mvo_presence(per_case)) is not None:
        summary.update(presence)
    if volume_errors:
        summary["myocardium_volume_percent_bias"], summary["myocardium_volume_percent_loa"] = \
            bland_altman(volume_errors)
    if cases and "myocardium_hd95_mm" in cases[0]:
        summary["myocardium_hd95_mm_mean"] = _mean([c["myocardium_hd95_mm"] for c in cases])
    return summary


def evaluate_model(model, cases: list[tuple[str, Volume, Volume]], device="cpu", surface_distance: bool = False,
                   tta: bool | str = False) -> dict[str, Any]:
    """Run the full inference pipeline on each (name, image, reference) case and summarise.

    A case where no heart is found counts with Dice 0 (the pipeline refused it). The pipeline's warnings come
    out named by the case, as about the model's labelmap: in training's validation, "slice 7 has the blood
    pool open to the background" is about the model in training, not a fault in the reference.
    """
    import warnings

    from .errors import NoHeartFoundError
    from .inference import Segmenter

    was_training = model.training
    model.eval()
    segmenter = Segmenter(model, device=str(device), tta=tta, flip_check=False)
    per_case = {}
    for name, image, reference in cases:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                prediction = segmenter(image, name=name).labelmap
            except NoHeartFoundError:
                prediction = reference.with_array(np.zeros_like(reference.array))
        for warning in caught:
            if issubclass(warning.category, (UserWarning, RuntimeWarning)):
                warnings.warn(f"{name} (the model's labelmap): {warning.message}", warning.category, stacklevel=2)
        per_case[name] = case_metrics(prediction, reference, surface_distance=surface_distance)
    model.train(was_training)
    summary = summarise(per_case)
    summary["per_case"] = per_case
    return summary
