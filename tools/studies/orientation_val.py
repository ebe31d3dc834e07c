"""Study: how much an exam's result depends on which way the short-axis image is turned, EMIDEC val, bundled weights.

Another centre's planning can show the same heart turned by 90° or mirrored. Each exam is presented in
the 8 physical in-plane orientations (turned by 0/90/180/270°, each also mirrored left-right first): the
pixel array is turned and the geometry kept as EMIDEC's (identity direction, the in-plane spacings
swapped with a quarter turn), so the image really shows the heart turned and the pipeline's canonical
storage (:mod:`scarnet.orientation`) keeps it so (checked for every presentation). The labelmap is turned
back and compared with the expert's: scar (labels 3|4) and myocardium (2|3|4) mL and Dice. For each
test-time augmentation (none, flip = ``scarnet segment --tta``, dihedral = ``--tta-rotations``), the
spread of an exam's scar mL over its orientations (max − min and coefficient of variation, population
SD / mean) and the mean Dice per orientation. mL use the PNGs' estimated spacing, as ``scarnet evaluate``.

One line of JSON per exam and augmentation is appended to ``--out`` as it goes (a run stopped part-way
continues where it stopped); the tables are printed from that file at the end, or alone with ``--summary``.
With the dihedral augmentation in two orientations (``--few-orientations dihedral``: its labels are the same
in all), about 30 s per exam on 2 quiet CPU threads, 7 minutes under three other sessions' load. ``--nifti``:
the two exams with real geometry (``nifti/``) instead. Figures and the runs: docs/experiments.md.

    python tools/studies/orientation_val.py --out runs/orientation_val.jsonl [--infarct-only] [--cases CASE ...]
        [--max-cases N] [--few-orientations dihedral] [--nifti]
    python tools/studies/orientation_val.py --out runs/orientation_val.jsonl --summary
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _val import dice, val_exams_and_model  # noqa: E402

from scarnet.inference import DIHEDRAL_VIEWS, model_storage  # noqa: E402
from scarnet.io import read_volume  # noqa: E402
from scarnet.labels import MYOCARDIUM_LABELS, SCAR_LABELS  # noqa: E402
from scarnet.train.emidec import default_emidec_root  # noqa: E402
from scarnet.volume import Volume  # noqa: E402

#: (quarter turns counter-clockwise as the array is shown, mirrored left-right first), the original first: the
#: views the dihedral test-time augmentation averages, so that the study presents the exam in each of them.
ORIENTATIONS = DIHEDRAL_VIEWS
#: The augmentations compared, as ``Segmenter(tta=...)`` takes them.
AUGMENTATIONS = ("none", "flip", "dihedral")


def orientation_name(turns: int, mirror: bool) -> str:
    """``"90"``, ``"m270"``: the turn in degrees, ``m`` in front for mirrored first."""
    return f"{'m' if mirror else ''}{90 * turns}"


def present(image: Volume, turns: int, mirror: bool) -> Volume:
    """``image`` physically turned: the (k, rows, cols) array mirrored (columns reversed) then turned by ``turns``
    quarter turns, on a grid of the same direction (identity for EMIDEC), the in-plane spacings swapped with it."""
    array = image.array[:, :, ::-1] if mirror else image.array
    array = np.ascontiguousarray(np.rot90(array, turns, axes=(1, 2)))
    spacing = image.spacing_mm
    if turns % 2:
        spacing = (spacing[1], spacing[0], spacing[2])
    return Volume(array, spacing, tuple(image.origin_mm), image.direction.copy())


def turn_back(array: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    """A (k, rows, cols) array of a presentation (:func:`present`) back on the original grid."""
    array = np.rot90(array, -turns, axes=(1, 2))
    return np.ascontiguousarray(array[:, :, ::-1] if mirror else array)


def check_presentation(image: Volume, shown: Volume, turns: int, mirror: bool) -> None:
    """Exit with one line unless ``shown`` is the turned image and the pipeline sees it turned: re-stored as the
    original is (so the re-storage cannot undo the turn), into other pixels than the original's."""
    name = orientation_name(turns, mirror)
    if not np.array_equal(turn_back(shown.array, turns, mirror), image.array):
        sys.exit(f"orientation {name}: does not turn back onto the original")
    stored, stack, order = model_storage(shown)
    original, original_stack, original_order = model_storage(image)
    if (stack, order) != (original_stack, original_order):
        sys.exit(f"orientation {name}: re-stored otherwise than the original ({stack}, {order})")
    if (turns, mirror) != (0, False) and np.array_equal(stored.array, original.array):
        sys.exit(f"orientation {name}: the pipeline sees the same pixels as the original")


@dataclass
class NiftiExam:
    """An exam of EMIDEC's ``nifti/`` folder (real geometry), with :class:`EmidecCase`'s ``name`` and ``as_volume``."""

    name: str
    folder: Path

    def as_volume(self) -> tuple[Volume, Volume]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # these headers' sform/pixdim mismatch (data README)
            image, labels = (read_volume(self.folder / f"{part}.nii.gz") for part in ("image", "label"))
        return image, labels.with_array(np.rint(labels.array).astype(np.uint8))


def run_exam(case, segmenter, augmentation: str, orientations=ORIENTATIONS) -> dict:
    """One exam in ``orientations`` with one augmentation: per orientation the figures of the module docstring."""
    image, reference = case.as_volume()
    voxel_ml = image.voxel_volume_ml
    segmenter.tta = augmentation
    rows = {}
    for turns, mirror in orientations:
        shown = present(image, turns, mirror)
        check_presentation(image, shown, turns, mirror)
        started, cpu_started = time.perf_counter(), time.process_time()
        result = segmenter(shown, name=case.name)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        labels = turn_back(result.labelmap.array, turns, mirror)
        rows[orientation_name(turns, mirror)] = {
            "scar_ml": float(np.isin(labels, SCAR_LABELS).sum() * voxel_ml),
            "myocardium_ml": float(np.isin(labels, MYOCARDIUM_LABELS).sum() * voxel_ml),
            "scar_dice": dice(labels, reference.array, SCAR_LABELS),
            "myocardium_dice": dice(labels, reference.array, MYOCARDIUM_LABELS),
            "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu_seconds, 2),  # both threads' (the machine is shared: wall time varies)
            # Kept to check, at the summary, that dihedral results are the same labels in every orientation.
            "labels_sha": _digest(labels),
        }
    expert_scar = np.isin(reference.array, SCAR_LABELS)
    return {"case": case.name, "augmentation": augmentation, "infarct": bool(expert_scar.any()),
            "expert_scar_ml": float(expert_scar.sum() * voxel_ml), "orientations": rows}


def _digest(labels: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.uint8).tobytes()).hexdigest()[:16]


def _mean(values: list[float | None]) -> float:
    """The mean of the figures there are (None and NaN left out: no scar Dice, no CPU time recorded)."""
    present_values = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(present_values)) if present_values else float("nan")


def _orientation_row(name: str, per_exam: list[list[tuple[dict, dict]]]) -> str:
    """A Markdown row of means over exams of each exam's mean over its (run, orientation row) pairs."""
    def exam_means(figure, infarct_only: bool = False) -> float:
        return _mean([_mean([figure(run, row) for run, row in pairs]) for pairs in per_exam
                      if not infarct_only or pairs[0][0]["infarct"]])

    scar_dice = exam_means(lambda run, row: row["scar_dice"], infarct_only=True)
    myo_dice = exam_means(lambda run, row: row["myocardium_dice"])
    error = exam_means(lambda run, row: abs(row["scar_ml"] - run["expert_scar_ml"]))
    seconds = exam_means(lambda run, row: row["seconds"])
    cpu = exam_means(lambda run, row: row.get("cpu_seconds"))
    return (f"| {name} | {len(per_exam)} | {scar_dice:.3f} | {myo_dice:.3f} | {error:.2f} | {seconds:.1f} "
            f"({cpu:.1f}) |")


def summarise(lines: list[dict]) -> str:
    """The tables of the module docstring, as Markdown, from the JSON lines of :func:`run_exam`.

    Spreads are over the orientations each exam was run in (all 8, or fewer for an augmentation run with
    ``--few-orientations``: the table says how many); per-orientation means over the exams run in it.
    """
    out = []
    names = [orientation_name(t, m) for t, m in ORIENTATIONS]
    turns_only = [orientation_name(t, False) for t in range(4)]
    for augmentation in AUGMENTATIONS:
        runs = [line for line in lines if line["augmentation"] == augmentation]
        if not runs:
            continue
        infarct = [r for r in runs if r["infarct"]]
        out.append(f"\n### {augmentation} ({len(runs)} exams, {len(infarct)} with infarct)\n")
        out.append("| exam | expert scar mL | orientations | scar mL min–max | spread mL (4 turns) | CoV % | "
                   "myo mL spread | scar Dice min–max | labels identical to the first |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        spreads, spreads4, covs, myo_spreads = [], [], [], []
        for run in runs:
            rows = run["orientations"]
            shown = [n for n in names if n in rows]
            scar = np.array([rows[n]["scar_ml"] for n in shown])
            myo = np.array([rows[n]["myocardium_ml"] for n in shown])
            cov = float(scar.std() / scar.mean() * 100) if scar.mean() > 0 else float("nan")
            dices = [rows[n]["scar_dice"] for n in shown if rows[n]["scar_dice"] is not None]
            same = sum(rows[n]["labels_sha"] == rows[shown[0]]["labels_sha"] for n in shown)
            spread4 = (float(np.ptp([rows[n]["scar_ml"] for n in turns_only]))
                       if all(n in rows for n in turns_only) else None)
            spreads.append(float(np.ptp(scar)))
            spreads4.append(spread4)
            myo_spreads.append(float(np.ptp(myo)))
            if run["infarct"]:
                covs.append(cov)
            dice_text = f"{min(dices):.3f}–{max(dices):.3f}" if dices else "–"
            spread4_text = "–" if spread4 is None else f"{spread4:.2f}"
            out.append(f"| {run['case']} | {run['expert_scar_ml']:.2f} | {len(shown)} | "
                       f"{scar.min():.2f}–{scar.max():.2f} | {np.ptp(scar):.2f} ({spread4_text}) | {cov:.1f} | "
                       f"{np.ptp(myo):.2f} | {dice_text} | {same}/{len(shown)} |")
        infarct_spreads = [spread for spread, run in zip(spreads, runs) if run["infarct"]]
        out.append(f"\nScar mL spread over the orientations, mean over exams: {np.mean(spreads):.2f} mL (infarct exams "
                   f"{_mean(infarct_spreads):.2f}; over the 4 turns alone {_mean(spreads4):.2f}); largest "
                   f"{max(spreads):.2f}; scar CoV, infarct exams: mean {_mean(covs):.1f} %, median "
                   f"{float(np.median(covs)) if covs else float('nan'):.1f} %; myocardium mL spread mean "
                   f"{np.mean(myo_spreads):.2f}.")
        out.append("\n| orientation | exams | scar Dice (infarct exams) | myocardium Dice | scar mL abs. error | "
                   "s per run (CPU s) |")
        out.append("|---|---|---|---|---|---|")
        for name in names:
            pairs = [(r, r["orientations"][name]) for r in runs if name in r["orientations"]]
            if pairs:
                out.append(_orientation_row(name, [[pair] for pair in pairs]))
        # Each exam weighs alike, however many orientations it was run in.
        out.append(_orientation_row("all (exam means)", [[(r, row) for row in r["orientations"].values()]
                                                         for r in runs]))
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines file the results are appended to")
    parser.add_argument("--infarct-only", action="store_true", help="only the val exams with an expert infarct")
    parser.add_argument("--max-cases", type=int, help="only the first N exams (after --infarct-only)")
    parser.add_argument("--cases", nargs="+", metavar="CASE", help="only these val exams (Case_P100 …)")
    parser.add_argument("--augmentations", nargs="+", choices=AUGMENTATIONS, default=list(AUGMENTATIONS))
    parser.add_argument("--few-orientations", nargs="*", choices=AUGMENTATIONS, default=[], metavar="AUGMENTATION",
                        help="run these augmentations in two orientations only, the original and one that cycles "
                             "through the other 7 from exam to exam (for dihedral, whose labels are the same in all)")
    parser.add_argument("--nifti", action="store_true",
                        help="the exams of EMIDEC's nifti/ folder (real geometry: Case_P100, Case_N006) instead")
    parser.add_argument("--summary", action="store_true", help="print the tables of --out and stop")
    args = parser.parse_args()
    done = [json.loads(line) for line in args.out.read_text().splitlines() if line] if args.out.exists() else []
    if not args.summary:
        cases, segmenter = val_exams_and_model()
        if args.nifti:
            folder = default_emidec_root() / "nifti"
            cases = [NiftiExam(path.name, path) for path in sorted(folder.iterdir()) if path.is_dir()]
        segmenter.flip_check = False  # the scar flip check only sets QC flags: not compared here
        if args.infarct_only:
            cases = [c for c in cases if np.isin(c.as_volume()[1].array, SCAR_LABELS).any()]
        if args.cases:
            unknown = sorted(set(args.cases) - {c.name for c in cases})
            if unknown:
                sys.exit(f"not among the val exams chosen: {', '.join(unknown)}")
            cases = [c for c in cases if c.name in args.cases]
        cases = cases[:args.max_cases]
        finished = {(line["case"], line["augmentation"]) for line in done}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for number, case in enumerate(cases):
            for augmentation in args.augmentations:
                if (case.name, augmentation) in finished:
                    continue
                started = time.perf_counter()
                few = (ORIENTATIONS[0], ORIENTATIONS[1 + number % (len(ORIENTATIONS) - 1)])
                line = run_exam(case, segmenter, augmentation,
                                few if augmentation in args.few_orientations else ORIENTATIONS)
                with args.out.open("a") as stream:
                    stream.write(json.dumps(line) + "\n")
                done.append(line)
                scar = [row["scar_ml"] for row in line["orientations"].values()]
                print(f"{case.name} {augmentation}: scar {min(scar):.2f}–{max(scar):.2f} mL, "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
    print(summarise(done))


if __name__ == "__main__":
    main()
