"""Per-case figures in 3D: Dice, HD95, scar % error; used for model selection and ``scarnet evaluate``.

Conventions (stated in every table):

* Dice per case over the whole stack, then averaged over cases.
* Myocardium = labels 2|3|4, scar = 3|4 (MVO included), blood pool = 1, MVO = 4.
* Scar Dice is averaged over cases **with** scar in the reference (Dice is undefined when both
  are empty, and 0 for any false positive on a normal heart, which would mostly measure
  something else); false-positive scar on normal hearts is reported separately as
  ``normal_cases_with_scar`` and ``normal_scar_ml_mean``. MVO Dice likewise over cases with MVO.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .labels import LV_BLOOD_POOL, MVO, MYOCARDIUM_LABELS, SCAR_LABELS
from .volume import Volume


def dice(prediction: np.ndarray, reference: np.ndarray) -> float | None:
    """Dice of two boolean masks; None when both are empty."""
    total = int(prediction.sum()) + int(reference.sum())
    if total == 0:
        return None
    return float(2 * np.logical_and(prediction, reference).sum() / total)


def hd95_mm(prediction: np.ndarray, reference: np.ndarray, spacing_kji_mm: tuple[float, float, float]) -> float | None:
    """95th-percentile symmetric surface distance (mm) in 3D; None when either mask is empty."""
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
    myocardium = np.isin(labels, MYOCARDIUM_LABELS).sum()
    return float(100.0 * np.isin(labels, SCAR_LABELS).sum() / myocardium) if myocardium else 0.0


def case_metrics(prediction: Volume, reference: Volume, surface_distance: bool = True) -> dict[str, Any]:
    """All per-case figures for one predicted labelmap against its reference."""
    p, r = prediction.array, reference.array
    voxel_ml = reference.voxel_volume_ml
    out: dict[str, Any] = {
        "myocardium_dice": dice(np.isin(p, MYOCARDIUM_LABELS), np.isin(r, MYOCARDIUM_LABELS)),
        "scar_dice": dice(np.isin(p, SCAR_LABELS), np.isin(r, SCAR_LABELS)) if np.isin(r, SCAR_LABELS).any() else None,
        "blood_pool_dice": dice(p == LV_BLOOD_POOL, r == LV_BLOOD_POOL),
        "mvo_dice": dice(p == MVO, r == MVO) if (r == MVO).any() else None,
        "scar_percent_pred": scar_percent(p),
        "scar_percent_ref": scar_percent(r),
        "scar_ml_pred": float(np.isin(p, SCAR_LABELS).sum() * voxel_ml),
        "scar_ml_ref": float(np.isin(r, SCAR_LABELS).sum() * voxel_ml),
        "has_scar": bool(np.isin(r, SCAR_LABELS).any()),
    }
    out["scar_percent_error"] = out["scar_percent_pred"] - out["scar_percent_ref"]
    if surface_distance:
        spacing_kji = tuple(reversed(reference.spacing_mm))
        out["myocardium_hd95_mm"] = hd95_mm(np.isin(p, MYOCARDIUM_LABELS), np.isin(r, MYOCARDIUM_LABELS), spacing_kji)
    return out


def _mean(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else float("nan")


def summarise(per_case: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Means over cases with the conventions of the module docstring, and Bland–Altman of scar %."""
    cases = list(per_case.values())
    errors = np.array([c["scar_percent_error"] for c in cases])
    normal = [c for c in cases if not c["has_scar"]]
    summary = {
        "cases": len(cases),
        "myocardium_dice_mean": _mean([c["myocardium_dice"] for c in cases]),
        "scar_dice_mean": _mean([c["scar_dice"] for c in cases]),
        "blood_pool_dice_mean": _mean([c["blood_pool_dice"] for c in cases]),
        "mvo_dice_mean": _mean([c["mvo_dice"] for c in cases]),
        "scar_percent_bias": float(errors.mean()) if errors.size else float("nan"),
        "scar_percent_loa": ([float(errors.mean() - 1.96 * errors.std(ddof=1)),
                              float(errors.mean() + 1.96 * errors.std(ddof=1))] if errors.size > 1 else None),
        "normal_cases": len(normal),
        "normal_cases_with_scar": sum(1 for c in normal if c["scar_ml_pred"] > 0),
        "normal_scar_ml_mean": _mean([c["scar_ml_pred"] for c in normal]),
    }
    if cases and "myocardium_hd95_mm" in cases[0]:
        summary["myocardium_hd95_mm_mean"] = _mean([c["myocardium_hd95_mm"] for c in cases])
    return summary


def evaluate_model(model, cases: list[tuple[str, Volume, Volume]], device="cpu", surface_distance: bool = False,
                   tta: bool = False) -> dict[str, Any]:
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
