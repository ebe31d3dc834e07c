"""Study: the report's scar by signal threshold (FWHM, 5-SD) against the experts' scar %, EMIDEC val, CPU.

For each of the 20 val exams, the bundled model is run as ``scarnet segment`` runs it, and the report's
``threshold_check`` (:mod:`scarnet.threshold_check`) is taken twice: in the model's myocardium (the model run's own
block: its healthy myocardium as remote, its scar for FWHM's maximum) and in the experts' (the same computed on the
expert labelmap, as ``scarnet quantify --image`` gives it). Printed: per exam the experts' scar %, ScarNet's and
each threshold's in both myocardia; then, against the experts' scar %, the bias and 95 % limits of agreement
(method − expert, percentage points of the LV myocardium) over the 20 exams and over the 13 with an infarct
(expert scar); and, over the infarct exams, the per-exam Dice of each method's scar mask against the experts' scar
(3|4), ScarNet's own beside it. A method not measured on an exam (FWHM under 3 mL of labelled scar) is left out of
its row, which says how many exams it has. One more row, FWHM in the model's myocardium with that 3 mL rule off (its
maximum taken from any labelled scar of 20 voxels or more), shows what the rule keeps out: in the normal hearts, the
model's false scar as FWHM's maximum.

    python tools/studies/threshold_check_val.py [--save F.json] [--load F.json]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from scarnet.labels import MYOCARDIUM_LABELS, SCAR_LABELS
from scarnet.threshold_check import N_SD, N_SD_KEY, threshold_check, threshold_scar

#: The methods compared with the experts' scar %: key of a :class:`Row`'s figures, and how the table names it.
METHODS = (("scarnet", "ScarNet scar % (the model's labels)"),
           ("model_5sd", f"{N_SD}-SD in the model's myocardium"),
           ("model_fwhm", "FWHM in the model's myocardium"),
           ("expert_5sd", f"{N_SD}-SD in the experts' myocardium"),
           ("expert_fwhm", "FWHM in the experts' myocardium"),
           ("anyscar_fwhm", "FWHM, model's myocardium, no 3 mL rule"))


@dataclass
class Row:
    """One exam: scar % of the LV myocardium by each method (None where not measured) and Dice against the experts'
    scar (None without expert scar, or where not measured)."""

    case: str
    expert_percent: float
    percent: dict[str, float | None]
    dice: dict[str, float | None]
    #: The labelled scar (3|4), mL: ``model`` and ``expert``.
    scar_ml: dict[str, float]
    #: How far the experts' scar (3) is above their remote (2), in remote SDs: (scar mean − remote mean) / remote SD;
    #: None without expert scar. 5-SD finds little of a scar only 2 SDs above the remote, whatever the remote.
    expert_scar_contrast_sd: float | None


def mask_dice(a: np.ndarray, b: np.ndarray) -> float | None:
    """Dice of two masks; None when both are empty."""
    total = int(a.sum() + b.sum())
    return None if total == 0 else 2.0 * float((a & b).sum()) / total


def scar_percent(labels: np.ndarray) -> float:
    """Scar (3|4) as % of the myocardium (2|3|4), as the report's total gives it."""
    return 100.0 * float(np.isin(labels, SCAR_LABELS).sum()) / float(np.isin(labels, MYOCARDIUM_LABELS).sum())


def method_figures(block: dict, labels: np.ndarray, image: np.ndarray, expert_scar: np.ndarray, voxel_ml: float,
                   side: str) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Scar % and Dice against ``expert_scar`` of the block's two methods, keyed ``{side}_5sd`` / ``{side}_fwhm``;
    the mask is rebuilt from the block's threshold and checked against the block's volume."""
    percent, dice = {}, {}
    for key, name in ((N_SD_KEY, "5sd"), ("fwhm", "fwhm")):
        method = block[key]
        if "not_measured" in method:
            percent[f"{side}_{name}"] = dice[f"{side}_{name}"] = None
            continue
        found = threshold_scar(labels, image, method["threshold"])
        assert abs(found.sum() * voxel_ml - method["scar_ml"]) < 1e-6 * max(1.0, method["scar_ml"]), "mask differs"
        percent[f"{side}_{name}"] = method["scar_percent"]
        dice[f"{side}_{name}"] = mask_dice(found, expert_scar) if expert_scar.any() else None
    return percent, dice


def without_small_scar_rule(labels: np.ndarray, image: np.ndarray, voxel_ml: float) -> dict:
    """The block with FWHM taking its maximum from any labelled scar (the 3 mL rule off), to show what the rule keeps
    out."""
    import scarnet.threshold_check as module

    kept = module.SMALL_SCAR_ML
    module.SMALL_SCAR_ML = 0.0
    try:
        return module.threshold_check(labels, image, voxel_ml)
    finally:
        module.SMALL_SCAR_ML = kept


def collect() -> list[Row]:
    """Every val exam's row, the model run on each (about 5 s an exam on 2 threads)."""
    from _val import val_exams_and_model

    cases, segmenter = val_exams_and_model()
    rows = []
    for case in cases:
        image, reference = case.as_volume()
        result = segmenter(image, name=case.name)
        model_labels, expert_labels = result.labelmap.array, reference.array
        voxel_ml = reference.voxel_volume_ml
        expert_scar = np.isin(expert_labels, SCAR_LABELS)
        pixels = np.asarray(image.array, dtype=np.float64)
        model_block = result.report.extra["threshold_check"]
        expert_block = threshold_check(expert_labels, pixels, voxel_ml)
        percent = {"scarnet": result.report.total.scar_percent}
        dice = {"scarnet": mask_dice(np.isin(model_labels, SCAR_LABELS), expert_scar) if expert_scar.any() else None}
        any_scar_block = without_small_scar_rule(model_labels, pixels, voxel_ml)
        for side, block, labels in (("model", model_block, model_labels), ("expert", expert_block, expert_labels),
                                    ("anyscar", any_scar_block, model_labels)):
            side_percent, side_dice = method_figures(block, labels, pixels, expert_scar, voxel_ml, side)
            if side == "anyscar":  # only its FWHM: its 5-SD is the model's
                side_percent, side_dice = {"anyscar_fwhm": side_percent["anyscar_fwhm"]}, {
                    "anyscar_fwhm": side_dice["anyscar_fwhm"]}
            percent.update(side_percent)
            dice.update(side_dice)
        remote = expert_block["remote"]
        contrast = ((float(pixels[expert_labels == 3].mean()) - remote["mean"]) / remote["sd"]
                    if (expert_labels == 3).any() else None)
        scar_ml = {"model": result.report.total.scar_ml, "expert": float(expert_scar.sum()) * voxel_ml}
        row = Row(case.name, scar_percent(expert_labels), percent, dice, scar_ml, contrast)
        rows.append(row)
        shown = ", ".join(f"{key} {'-' if value is None else f'{value:.1f}'}" for key, value in percent.items())
        print(f"{case.name}: expert {row.expert_percent:.1f} %; {shown}; labelled scar mL model "
              f"{scar_ml['model']:.2f}, expert {scar_ml['expert']:.2f}; expert scar "
              f"{'-' if contrast is None else f'{contrast:.1f}'} remote SDs above the remote", flush=True)
    return rows


def agreement(differences: list[float]) -> str:
    """Bias and 95 % limits of agreement (mean ± 1.96 SD) of ``differences``, and their count."""
    d = np.asarray(differences, dtype=np.float64)
    if d.size < 2:
        return f"n = {d.size}"
    sd = d.std(ddof=1)
    return f"{d.mean():+6.1f}  [{d.mean() - 1.96 * sd:+6.1f}, {d.mean() + 1.96 * sd:+6.1f}]  n = {d.size}"


def summarise(rows: list[Row]) -> None:
    """The agreement table against the experts' scar %, then the Dice table over the infarct exams."""
    infarct = [r for r in rows if r.expert_percent > 0]
    print(f"\nscar % of the LV myocardium, method - expert (percentage points): bias [95 % limits of agreement]; "
          f"{len(rows)} exams, {len(infarct)} with expert scar")
    for key, name in METHODS:
        every = [r.percent[key] - r.expert_percent for r in rows if r.percent[key] is not None]
        infarcts = [r.percent[key] - r.expert_percent for r in infarct if r.percent[key] is not None]
        print(f"  {name:38}  all: {agreement(every)}   infarct: {agreement(infarcts)}")
    print(f"\nscar Dice against the experts' scar (3|4), per exam, over the {len(infarct)} infarct exams: "
          "mean, median [min-max]")
    for key, name in METHODS:
        values = np.array([r.dice[key] for r in infarct if r.dice[key] is not None])
        if values.size:
            print(f"  {name:38}  {values.mean():.3f}, {np.median(values):.3f} [{values.min():.3f}-{values.max():.3f}]"
                  f"  n = {values.size}")
    contrasts = np.array([r.expert_scar_contrast_sd for r in infarct])
    print(f"\nexperts' scar mean above their remote mean, in remote SDs, infarct exams: median "
          f"{np.median(contrasts):.1f} [{contrasts.min():.1f}-{contrasts.max():.1f}]")
    normal = [r for r in rows if r.expert_percent == 0]
    model_ml = [r.scar_ml["model"] for r in normal]
    print(f"normal hearts: the model's scar {np.mean(model_ml):.2f} mL mean, {np.max(model_ml):.2f} max (without the "
          "3 mL rule, FWHM's maximum is taken from it)")
    for key, name in METHODS:
        values = [r.percent[key] for r in normal if r.percent[key] is not None]
        if not values:
            print(f"  normal hearts, {name}: measured in none of {len(normal)}")
            continue
        print(f"  normal hearts, {name}: scar % mean {np.mean(values):.1f}, max {np.max(values):.1f}, "
              f"measured in {len(values)} of {len(normal)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", type=Path, help="write the rows here (JSON)")
    parser.add_argument("--load", type=Path, help="summarise rows saved with --save instead of measuring")
    args = parser.parse_args()
    rows = ([Row(**row) for row in json.loads(args.load.read_text(encoding="utf-8"))] if args.load else collect())
    if args.save:
        args.save.write_text(json.dumps([asdict(r) for r in rows]), encoding="utf-8")
    summarise(rows)


if __name__ == "__main__":
    main()
