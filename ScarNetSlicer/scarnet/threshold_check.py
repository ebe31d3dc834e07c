"""Scar by signal threshold in a labelmap's own myocardium: FWHM and 5-SD, beside the labelled scar, for comparison.

Readers report LGE scar with the SCMR-recommended signal-threshold methods (n-SD with n = 5 for infarcts, FWHM);
a report gives what those thresholds find *in the same myocardium* next to its own scar figures, so that a reader
can set them beside the figure they usually quote and see where the labels call more or less than the image's
signal does. The labels are not changed: this is an extra block of figures (``report.extra["threshold_check"]``,
written by :func:`scarnet.quantify.quantify` when it is given the image, and by a model run).

The block (:func:`threshold_check`)::

    {"remote": {"source", "voxels", "mean", "sd"},
     "myocardium_ml": float,
     "fwhm": {"threshold", "maximum", "scar_ml", "scar_percent", "labelled_scar_above_threshold_percent",
              "threshold_scar_labelled_percent"} | {"not_measured": reason},
     "5sd": {"threshold", "scar_ml", "scar_percent", "labelled_scar_above_threshold_percent",
             "threshold_scar_labelled_percent"} | {"not_measured": reason}}

- ``remote``: the reference for both thresholds, the labelmap's healthy myocardium (label 2) over the whole stack:
  its voxel count and the mean and SD (population SD) of the image there, in the image's grey levels; mean and SD
  null where it has fewer than :data:`MIN_REMOTE_VOXELS` voxels (both methods then not measured).
- ``5sd``: threshold = remote mean + :data:`N_SD` × remote SD.
- ``fwhm``: ``maximum`` = the :data:`FWHM_MAX_PERCENTILE` th percentile of the labelled scar (label 3; not MVO, whose
  no-reflow core is dark); threshold = half-way from the remote mean to it. Not measured under
  :data:`~scarnet.quantify.SMALL_SCAR_ML` of labelled scar (3|4: a normal heart's false scar, whose brightest voxels
  are noise), with fewer than :data:`MIN_SCAR_VOXELS` voxels of label 3, or when that scar is no brighter than the
  remote mean.
- Each method's scar: the myocardium (2|3|4) above the threshold, plus the labelled MVO (4: MVO counts as scar, SCMR,
  and a threshold cannot find the dark no-reflow core); ``scar_ml`` its volume, ``scar_percent`` its share of the
  labelmap's myocardium (``myocardium_ml``, labels 2|3|4). ``labelled_scar_above_threshold_percent``: of the
  labelled scar (3|4), the share the threshold also calls scar; ``threshold_scar_labelled_percent``: of the
  threshold's scar, the share labelled scar (3|4); null where there is none to share. MVO lies in both by
  definition, so a labelmap's MVO counts in both shares.

Known limits: the remote is the labelmap's healthy myocardium, so scar the labels missed stays in it, widens its SD
and raises the 5-SD threshold (5-SD then finds less of it); FWHM needs labelled scar (3 mL or more) for its maximum.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .labels import HEALTHY_MYOCARDIUM, MVO, MYOCARDIUM_LABELS, SCAR, SCAR_LABELS
from .quantify import SMALL_SCAR_ML, _round

#: n of the n-SD threshold: 5 SD above the remote mean, SCMR's recommendation for infarct scar.
N_SD = 5
#: The key of the n-SD method in the block.
N_SD_KEY = f"{N_SD}sd"
#: FWHM's robust maximum: the 99th percentile of the labelled scar, so that a few hot voxels at the blood-pool border
#: (partial volume with the bright blood) do not set it.
FWHM_MAX_PERCENTILE = 99.0
#: Healthy myocardium below this many voxels gives no remote reference (on a 1.5 × 1.5 × 10 mm grid, 50 voxels are
#: about 1 mL, a sliver of one slice's wall): its SD would be the noise of a handful of voxels.
MIN_REMOTE_VOXELS = 50
#: Label 3 below this many voxels gives no FWHM maximum (a labelmap of 3 mL of scar that is nearly all MVO): the
#: brightest voxels of a speck are noise.
MIN_SCAR_VOXELS = 20
#: What the remote reference is, as the block says it.
REMOTE_SOURCE = "healthy myocardium (label 2) of this labelmap, all slices"


def threshold_check(labels: np.ndarray, image: np.ndarray, voxel_ml: float) -> dict[str, Any]:
    """FWHM and :data:`N_SD`-SD scar in ``labels``' myocardium on ``image`` (the same shape, the image's own grey
    levels), with the labelmap's healthy myocardium as remote; ``voxel_ml``: the volume of one voxel (the
    labelmap's spacing). The block described in the module docstring, rounded as the report's other figures.

    One threshold per stack (3D), as ``scarnet evaluate``'s baselines do: LGE slices are 8-10 mm thick with a few
    hundred myocardium voxels each, too few for a steady remote SD slice by slice."""
    labels = np.asarray(labels)
    image = np.asarray(image, dtype=np.float64)
    if labels.shape != image.shape:
        raise ValueError(f"labels {labels.shape} and image {image.shape} differ in shape")
    myocardium = np.isin(labels, MYOCARDIUM_LABELS)
    labelled_scar = np.isin(labels, SCAR_LABELS)
    remote_values = image[labels == HEALTHY_MYOCARDIUM]
    myocardium_ml = float(myocardium.sum()) * voxel_ml
    out: dict[str, Any] = {"remote": {"source": REMOTE_SOURCE, "voxels": int(remote_values.size), "mean": None,
                                      "sd": None},
                           "myocardium_ml": _round(myocardium_ml)}
    if remote_values.size < MIN_REMOTE_VOXELS:
        reason = (f"too little healthy myocardium for a remote reference ({remote_values.size} voxels, "
                  f"{MIN_REMOTE_VOXELS} needed)")
        out["fwhm"] = {"not_measured": reason}
        out[N_SD_KEY] = {"not_measured": reason}
        return out
    remote_mean, remote_sd = float(remote_values.mean()), float(remote_values.std())
    out["remote"].update(mean=_round(remote_mean), sd=_round(remote_sd))

    def measured(threshold: float) -> dict[str, Any]:
        found = threshold_scar(labels, image, threshold)
        found_voxels, labelled_voxels = int(found.sum()), int(labelled_scar.sum())
        both = int((found & labelled_scar).sum())
        return {"threshold": _round(threshold), "scar_ml": _round(found_voxels * voxel_ml),
                "scar_percent": _round(100.0 * found_voxels * voxel_ml / myocardium_ml),
                "labelled_scar_above_threshold_percent": _share(both, labelled_voxels),
                "threshold_scar_labelled_percent": _share(both, found_voxels)}

    scar_values = image[labels == SCAR]
    labelled_scar_ml = float(labelled_scar.sum()) * voxel_ml
    if not labelled_scar.any():
        out["fwhm"] = {"not_measured": "no segmented scar to take the maximum from"}
    elif labelled_scar_ml < SMALL_SCAR_ML:
        # A normal heart's false scar (up to 1.6 mL on EMIDEC val) gives a maximum from noise: FWHM then called 12 %
        # of those hearts' myocardium scar on average, up to 25 % (tools/studies/threshold_check_val.py).
        out["fwhm"] = {"not_measured": f"under {SMALL_SCAR_ML:g} mL of segmented scar ({labelled_scar_ml:.2g} mL), "
                                       "too little to take its maximum from (it may be noise, as a normal heart's "
                                       "false scar)"}
    elif scar_values.size < MIN_SCAR_VOXELS:
        out["fwhm"] = {"not_measured": "too little enhanced scar (MVO aside) to take the maximum from (label 3: "
                                       f"{scar_values.size} voxels, {MIN_SCAR_VOXELS} needed)"}
    else:
        maximum = float(np.percentile(scar_values, FWHM_MAX_PERCENTILE))
        if maximum <= remote_mean:
            out["fwhm"] = {"not_measured": "the labelled scar is no brighter than the remote myocardium, so there is "
                                           "no enhancement to take half of"}
        else:
            # Half-way above the remote level, not "50 % of the maximum": on images with an offset (PSIR, rescaled
            # magnitude, EMIDEC's PNG levels) 50 % of the maximum lies below the remote myocardium and calls the
            # whole wall scar (scarnet.baselines.threshold_fwhm gives the same reason).
            figures = measured(remote_mean + 0.5 * (maximum - remote_mean))
            out["fwhm"] = {"threshold": figures.pop("threshold"), "maximum": _round(maximum), **figures}
    out[N_SD_KEY] = measured(remote_mean + N_SD * remote_sd)
    return out


def threshold_scar(labels: np.ndarray, image: np.ndarray, threshold: float) -> np.ndarray:
    """A threshold's scar as a mask: ``labels``' myocardium (2|3|4) brighter than ``threshold`` on ``image``, plus
    its MVO (4), which counts as scar whatever its signal (the no-reflow core is dark, below any threshold)."""
    return (np.isin(labels, MYOCARDIUM_LABELS) & (image > threshold)) | (labels == MVO)


def _share(part: int, whole: int) -> float | None:
    """``part`` as a % of ``whole`` voxels, rounded as the report's figures; None for none."""
    return _round(100.0 * part / whole) if whole else None


def threshold_check_line(block: Any) -> str | None:
    """The block as one short line for a terminal: "Scar by signal threshold in the same myocardium, for comparison
    (labels unchanged): 5-SD 12.3 %, FWHM not measured"; None without a block (no image given, an older report)."""
    if not isinstance(block, dict):
        return None
    figures = []
    for key, name in ((N_SD_KEY, f"{N_SD}-SD"), ("fwhm", "FWHM")):
        method = block.get(key) if isinstance(block.get(key), dict) else {}
        percent = method.get("scar_percent")
        figures.append(f"{name} {percent:.1f} %" if isinstance(percent, (int, float)) else f"{name} not measured")
    return f"Scar by signal threshold in the same myocardium, for comparison (labels unchanged): {', '.join(figures)}"
