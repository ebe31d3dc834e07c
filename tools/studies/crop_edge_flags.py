"""Study: how often do the ``at_crop_edge`` and ``lv_removed`` QC flags fire, and does ``at_crop_edge``
fire where it should? EMIDEC val, bundled weights, CPU.

1. The 20 val exams as stored: which slices get either flag.
2. The same exams with the heart made larger than any adult's: each slice magnified ``--zoom`` times
   in-plane about the image centre on the same pixel spacing (a 60 mm LV becomes 108 mm at 1.8×): the
   share of LV slices flagged ``at_crop_edge``.
3. ``--offset-mm D``: instead of 2, the exams as stored with the located heart moved D mm along the
   rows (a localisation error), so that the 160 mm crop cuts through the LV: the share of LV slices
   flagged ``at_crop_edge``, and the myocardium lost against the run as located.

    python tools/studies/crop_edge_flags.py [--zoom 1.8 | --offset-mm 60] [--cases 20]
"""

from __future__ import annotations

import argparse

import numpy as np
from _val import val_exams_and_model
from scipy import ndimage

from scarnet.errors import InputError

NEW_FLAGS = ("at_crop_edge", "lv_removed")


def magnified(array: np.ndarray, zoom: float) -> np.ndarray:
    """Each (k) slice magnified ``zoom``× about its centre, same shape (the field of view shrinks)."""
    rows, cols = array.shape[1:]
    center = np.array([(rows - 1) / 2, (cols - 1) / 2])
    matrix = np.eye(2) / zoom
    offset = center - matrix @ center
    return np.stack([ndimage.affine_transform(plane, matrix, offset, order=1, mode="nearest") for plane in array])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoom", type=float, default=1.8)
    parser.add_argument("--offset-mm", type=float, default=None)
    parser.add_argument("--cases", type=int, default=20)
    args = parser.parse_args()
    cases, segmenter = val_exams_and_model(args.cases)
    stored = {flag: [] for flag in NEW_FLAGS}
    stored_lv_slices = zoomed_lv_slices = zoomed_at_edge = refused = 0
    for case in cases:
        image = case.as_volume()[0]
        result = segmenter(image, name=case.name)
        for s in result.report.slices:
            stored_lv_slices += s.myocardium_ml > 0
            for flag in NEW_FLAGS:
                if flag in s.qc_flags:
                    stored[flag].append(f"{case.name}:{s.index}")
        variant = f"located {args.offset_mm:g} mm off" if args.offset_mm is not None else f"×{args.zoom}"
        try:
            if args.offset_mm is not None:
                located = segmenter.localise
                # along rows of the volume the pipeline localises on: (row, col) spacing is (j, i)
                segmenter.localise = (lambda volume, slices=None, located=located: tuple(
                    np.add(located(volume, slices), (args.offset_mm / volume.spacing_mm[1], 0))))
                try:
                    big = segmenter(image, name=f"{case.name} {variant}")
                finally:
                    del segmenter.localise  # back to the method
            else:
                big = segmenter(image.with_array(magnified(image.array, args.zoom)), name=f"{case.name} {variant}")
        except InputError as error:  # refused outright: also a safe outcome
            refused += 1
            print(f"{case.name} {variant}: refused ({error})", flush=True)
            continue
        lv = [s for s in big.report.slices if s.myocardium_ml > 0]
        at_edge = sum("at_crop_edge" in s.qc_flags for s in lv)
        zoomed_lv_slices += len(lv)
        zoomed_at_edge += at_edge
        lost = 1 - big.report.total.myocardium_ml / result.report.total.myocardium_ml
        print(f"{case.name}: as stored {[s.qc_flags for s in result.report.slices if set(s.qc_flags) & set(NEW_FLAGS)]}"
              f"; {variant}: at_crop_edge on {at_edge} of {len(lv)} LV slices, myocardium {lost:+.0%} lost",
              flush=True)
    print(f"As stored: {stored_lv_slices} slices with myocardium in {len(cases)} exams; "
          + "; ".join(f"{flag} on {len(where)} ({', '.join(where) or '-'})" for flag, where in stored.items()))
    print(f"{variant}: at_crop_edge on {zoomed_at_edge} of {zoomed_lv_slices} slices with myocardium; "
          f"{refused} of {len(cases)} exams refused")


if __name__ == "__main__":
    main()
