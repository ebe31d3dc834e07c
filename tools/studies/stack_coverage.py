"""Study: does the short-axis stack reach the apex? A check on the segmentation, EMIDEC and phantoms, CPU.

A stack that reaches the apex ends, at its apical end, on a slice whose LV cavity is small or gone (or on
one without myocardium); a stack that stops short (a slice missing at the end of a DICOM series, a planner
who stopped early) ends on a slice with a large cavity, and its scar beyond the last slice is not counted.
Per exam and for the stack cut short by 1 and by 2 slices at its apical end, this prints the apical end
slice's cavity (blood pool and enclosed background, :func:`scarnet.aha.cavity_area_mm2`) and myocardium
as fractions of the stack's largest, and whether it has myocardium at all. Which end is apical: the
base-apex order the report finds (:func:`scarnet.aha.base_apex_order`; for EMIDEC's PNG stacks, from the
cavity size), else the end slice with the smaller cavity.

Sources: EMIDEC *train* (the rule is designed there) and *val*, expert labels and the bundled model's
labelmaps (the model run on each cut stack, as ``scarnet segment`` would see it), and phantoms
(``scarnet.phantom``, seeds 0 to ``--phantoms``-1, their own labels and the model's). For each candidate
threshold on the cavity fraction it prints how many complete stacks would be warned (false alarms) and
how many cut ones (detections).

``--basal`` asks the same of the basal end, on the EMIDEC expert labels alone (seconds): for the stack as acquired
and cut by 1 and by 2 basal slices, the basal end slice's cavity and myocardium as fractions of the largest and how
much of the ring around the cavity its myocardium closes (share of 10-degree sectors seen from the cavity's centre).
Nothing there tells a complete base from a cut one, so no basal warning is given (docs/reports.md).

    python tools/studies/stack_coverage.py [--no-model] [--phantoms 20] [--save F.json] [--load F.json]
    python tools/studies/stack_coverage.py --basal
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from scarnet.aha import base_apex_order
from scarnet.phantom import make_phantom
from scarnet.qc import APICAL_CAVITY_WARNING_FRACTION, apical_end_coverage
from scarnet.train.emidec import default_emidec_root, load_cases, load_split
from scarnet.volume import Volume

#: How many slices are cut from the apical end (0: the stack as acquired).
CUTS = (0, 1, 2)
#: Candidate thresholds on the apical end slice's cavity, as a fraction of the stack's largest.
THRESHOLDS = tuple(round(0.05 * n, 2) for n in range(6, 19))


@dataclass
class Row:
    """One stack's apical end, as measured."""

    source: str  # "train", "val" or "phantom"
    labels: str  # "reference" or "model"
    case: str
    cut: int
    basal_end: str | None  # the order the labels give ("first" / "last"), None when unknown
    end_slice: int
    has_myocardium: bool
    cavity_fraction: float
    myocardium_fraction: float
    #: The same with the apical end known (the full stack's, from its reference labels), as an oriented DICOM
    #: stack's patient axes would give it: the cavity-size order of a PNG stack cut short may be wrong or unknown.
    known_end_has_myocardium: bool
    known_end_cavity_fraction: float


def cut_apex(volume: Volume, cut: int, apex_last: bool) -> Volume:
    """``volume`` without its ``cut`` slices at the apical end (the origin moves when they are the first)."""
    if cut == 0:
        return volume
    array = volume.array[:-cut] if apex_last else volume.array[cut:]
    origin = np.asarray(volume.origin_mm)
    if not apex_last:
        origin = origin + volume.direction[:, 2] * volume.spacing_mm[2] * cut
    return Volume(array, volume.spacing_mm, tuple(origin), volume.direction.copy())


def measure(source: str, what: str, case: str, cut: int, labelmap: Volume, apex_last: bool) -> Row | None:
    """The apical end of ``labelmap`` (its slices along k) as :func:`scarnet.qc.apical_end_coverage` sees it, with
    the order found on it and with the known one (``apex_last``); None when it has nothing to compare (no cavity)."""
    labels = labelmap.array.astype(np.uint8)
    order = base_apex_order(labelmap, labels)
    pixel_area_mm2 = labelmap.spacing_mm[0] * labelmap.spacing_mm[1]
    end = apical_end_coverage(labels, None if order is None else order.base_first, pixel_area_mm2)
    known = apical_end_coverage(labels, apex_last, pixel_area_mm2)
    if end is None or known is None:
        return None
    return Row(source, what, case, cut, None if order is None else order.to_dict()["basal_end"],
               end.slice_index, end.has_myocardium, end.cavity_fraction, end.myocardium_fraction,
               known.has_myocardium, known.cavity_fraction)


def exam_rows(source: str, case: str, image: Volume, reference: Volume, segmenter, apex_last: bool) -> list[Row]:
    """Rows for one exam cut by each of :data:`CUTS`: its reference labels, and the model's when ``segmenter``."""
    from scarnet.errors import ScarNetError

    rows = []

    def add(row: Row | None, what: str, cut: int) -> None:
        if row is None:
            print(f"{case} cut {cut}, {what}: no LV cavity; left out", flush=True)
            return
        rows.append(row)
        print(" ".join(f"{k}={v}" for k, v in asdict(row).items()), flush=True)

    for cut in CUTS:
        add(measure(source, "reference", case, cut, cut_apex(reference, cut, apex_last), apex_last), "reference", cut)
        if segmenter is not None:
            try:  # one exam the pipeline refuses (no heart found) does not lose the others' rows
                predicted = segmenter(cut_apex(image, cut, apex_last), name=f"{case} cut {cut}").labelmap
            except ScarNetError as error:
                print(f"{case} cut {cut}, model: {error}; left out", flush=True)
                continue
            add(measure(source, "model", case, cut, predicted, apex_last), "model", cut)
    return rows


def collect(use_model: bool, phantoms: int) -> list[Row]:
    """Every row: EMIDEC train and val, then the phantoms."""
    root = default_emidec_root()
    if root is None:
        sys.exit("EMIDEC data not found (../shared/data/emidec)")
    segmenter = None
    if use_model:
        import torch

        from scarnet.inference import Segmenter

        torch.set_num_threads(2)
        segmenter = Segmenter(device="cpu", threads=2)
    rows: list[Row] = []
    split = load_split(root)
    for source in ("train", "val"):
        for case in load_cases(root, split[source]):
            image, reference = case.as_volume()
            order = base_apex_order(reference, case.labels)
            if order is None:
                print(f"{case.name}: no base-apex order on the reference labels; left out")
                continue
            rows += exam_rows(source, case.name, image, reference, segmenter, apex_last=order.base_first)
    for seed in range(phantoms):
        phantom = make_phantom(seed)
        order = base_apex_order(phantom.labelmap, phantom.labelmap.array)
        rows += exam_rows("phantom", f"phantom {seed}", phantom.image, phantom.labelmap, segmenter,
                          apex_last=order.base_first)
    return rows


def warned(row: Row, threshold: float, known_end: bool = False) -> bool:
    """The rule: the apical end slice has myocardium and a cavity of at least ``threshold`` of the largest (the end
    found on the labels, or with ``known_end`` the known one)."""
    if known_end:
        return row.known_end_has_myocardium and row.known_end_cavity_fraction >= threshold
    return row.has_myocardium and row.cavity_fraction >= threshold


def summarise(rows: list[Row]) -> None:
    """Distributions per source and cut, and each threshold's false alarms and detections."""
    groups = sorted({(r.source, r.labels) for r in rows}, key=lambda g: (["train", "val", "phantom"].index(g[0]), g[1]))
    print("\napical end slice: cavity as % of the largest (median [min-max]); end slices without myocardium; "
          "basal end found")
    for source, what in groups:
        for cut in CUTS:
            chosen = [r for r in rows if r.source == source and r.labels == what and r.cut == cut]
            cavity = np.array([100 * r.cavity_fraction for r in chosen])
            myocardium = np.array([100 * r.myocardium_fraction for r in chosen])
            ends = {e: sum(r.basal_end == e for r in chosen) for e in ("first", "last", None)}
            print(f"  {source:7} {what:9} cut {cut}: n={len(chosen):2}  cavity {np.median(cavity):3.0f} "
                  f"[{cavity.min():3.0f}-{cavity.max():3.0f}]  myocardium {np.median(myocardium):3.0f} "
                  f"[{myocardium.min():3.0f}-{myocardium.max():3.0f}]  no myocardium "
                  f"{sum(not r.has_myocardium for r in chosen)}  basal end {ends}")
    for known_end in (False, True):
        print_counts(rows, groups, known_end)


def print_counts(rows: list[Row], groups: list[tuple[str, str]], known_end: bool) -> None:
    """Each threshold's warned stacks per source: complete (false alarms), cut by 1 and by 2 (detections)."""
    print(f"\nwarned (apical end slice with myocardium and cavity >= threshold; apical end "
          f"{'known' if known_end else 'as found on the labels'}): complete / cut 1 / cut 2")
    for threshold in THRESHOLDS:
        marker = "  <- qc.APICAL_CAVITY_WARNING_FRACTION" if abs(threshold - APICAL_CAVITY_WARNING_FRACTION) < 1e-9 \
            else ""
        cells = []
        for source, what in groups:
            counts = []
            for cut in CUTS:
                chosen = [r for r in rows if r.source == source and r.labels == what and r.cut == cut]
                counts.append(f"{sum(warned(r, threshold, known_end) for r in chosen)}/{len(chosen)}")
            cells.append(f"{source} {what[:3]} {' '.join(counts)}")
        print(f"  {100 * threshold:3.0f} %: " + " | ".join(cells) + marker)


def ring_closure(plane: np.ndarray, sectors: int = 36) -> float | None:
    """The share of ``sectors`` equal angles around the LV cavity's centre (blood pool, label 1) in which ``plane``
    has myocardium (2|3|4): 1 for a closed ring, less where the outflow tract opens it; None without both."""
    myocardium = np.isin(plane, (2, 3, 4))
    cavity_rows, cavity_cols = np.nonzero(plane == 1)
    if cavity_rows.size == 0 or not myocardium.any():
        return None
    rows, cols = np.nonzero(myocardium)
    angles = np.arctan2(rows - cavity_rows.mean(), cols - cavity_cols.mean())
    sector = np.floor((angles + np.pi) / (2 * np.pi) * sectors).astype(int) % sectors
    return len(np.unique(sector)) / sectors


def basal_summary() -> None:
    """The basal end slice of each EMIDEC exam's expert labels, as acquired and cut by 1 and 2 basal slices."""
    from scarnet.aha import cavity_area_mm2

    root = default_emidec_root()
    if root is None:
        sys.exit("EMIDEC data not found (../shared/data/emidec)")
    split = load_split(root)
    print("basal end slice, expert labels: cavity and myocardium as % of the largest (median [10th-90th "
          "percentile]); ring closure (share of 10-degree sectors with myocardium around the cavity)")
    for source in ("train", "val"):
        measured: dict[int, list[tuple[float, float, float | None]]] = {cut: [] for cut in CUTS}
        for case in load_cases(root, split[source]):
            reference = case.as_volume()[1]
            order = base_apex_order(reference, case.labels)
            if order is None:
                continue
            labels = case.labels if order.base_first else case.labels[::-1]  # base first
            pixel_area_mm2 = case.spacing_rc_mm[0] * case.spacing_rc_mm[1]
            cavity = np.array([cavity_area_mm2(plane, pixel_area_mm2) for plane in labels])
            myocardium = np.isin(labels, (2, 3, 4)).sum(axis=(1, 2)).astype(float)
            for cut in CUTS:  # the cut stack's own largest: the base's slices are among the largest
                kept_cavity, kept_myocardium = cavity[cut:], myocardium[cut:]
                measured[cut].append((kept_cavity[0] / kept_cavity.max(), kept_myocardium[0] / kept_myocardium.max(),
                                      ring_closure(labels[cut])))
        for cut, values in measured.items():
            cavity_share = 100 * np.array([v[0] for v in values])
            myocardium_share = 100 * np.array([v[1] for v in values])
            closures = [v[2] for v in values if v[2] is not None]
            print(f"  {source:5} cut {cut}: n={len(values):2}  cavity {np.median(cavity_share):3.0f} "
                  f"[{np.percentile(cavity_share, 10):3.0f}-{np.percentile(cavity_share, 90):3.0f}]  myocardium "
                  f"{np.median(myocardium_share):3.0f} [{np.percentile(myocardium_share, 10):3.0f}-"
                  f"{np.percentile(myocardium_share, 90):3.0f}]  ring closed in {sum(c == 1 for c in closures)}/"
                  f"{len(closures)} (least {min(closures):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-model", action="store_true", help="reference labels only (no model runs)")
    parser.add_argument("--phantoms", type=int, default=20, help="phantom seeds 0 to N-1 (default 20)")
    parser.add_argument("--save", type=Path, help="write the rows here (JSON)")
    parser.add_argument("--load", type=Path, help="summarise rows saved with --save instead of measuring")
    parser.add_argument("--basal", action="store_true", help="the basal end instead, expert labels only (seconds)")
    args = parser.parse_args()
    if args.basal:
        basal_summary()
        return
    if args.load:
        rows = [Row(**row) for row in json.loads(args.load.read_text(encoding="utf-8"))]
    else:
        rows = collect(not args.no_model, args.phantoms)
    if args.save:
        args.save.write_text(json.dumps([asdict(r) for r in rows]), encoding="utf-8")
    summarise(rows)


if __name__ == "__main__":
    main()
