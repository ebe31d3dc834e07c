"""Figure of the bundled model's segmentations on EMIDEC validation cases, beside the expert labels.

    python docs/make_prediction_figure.py [--weights W] [--out docs/predictions_emidec_val.png]

Each column is one validation case (its middle slice with scar, else its middle slice), cropped
around the LV: the LGE image, the expert contours, and ScarNet's contours (myocardium green,
blood pool red, scar yellow, MVO blue). The EMIDEC images are CC BY-NC-SA 4.0 (Lalande et al.,
Data 5(4):89, 2020); so is this figure.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scarnet.inference import Segmenter  # noqa: E402
from scarnet.train.emidec import default_emidec_root, load_cases, load_split  # noqa: E402

#: (label values drawn as one contour, colour): myocardium is the whole wall 2|3|4, scar includes MVO.
CONTOURS = (((1,), "red"), ((2, 3, 4), "lime"), ((3, 4), "yellow"), ((4,), "deepskyblue"))
CASES = ("Case_P100", "Case_P022", "Case_P061", "Case_P066", "Case_P091", "Case_N024")


def _contours(axis, labels: np.ndarray) -> None:
    for values, colour in CONTOURS:
        mask = np.isin(labels, values)
        if mask.any():
            axis.contour(mask, levels=[0.5], colors=colour, linewidths=0.8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "predictions_emidec_val.png")
    args = parser.parse_args()
    root = default_emidec_root()
    if root is None:
        raise SystemExit("EMIDEC data not found beside the checkout")
    names = [n for n in CASES if n in load_split(root)["val"]]
    segmenter = Segmenter(weights=args.weights, device="cpu", flip_check=False)
    figure, axes = plt.subplots(2, len(names), figsize=(2.6 * len(names), 5.4))
    for column, case in enumerate(load_cases(root, names)):
        image, reference = case.as_volume()
        prediction = segmenter(image, name=case.name).labelmap.array
        scar_slices = [k for k in range(reference.num_slices) if np.isin(reference.array[k], (3, 4)).any()]
        k = scar_slices[len(scar_slices) // 2] if scar_slices else reference.num_slices // 2
        rows, cols = np.nonzero(reference.array[k] > 0)
        r0, c0 = int(rows.mean()), int(cols.mean())
        window = (slice(max(r0 - 50, 0), r0 + 50), slice(max(c0 - 50, 0), c0 + 50))
        for row, (labels, title) in enumerate(((reference.array[k], "expert"), (prediction[k], "ScarNet"))):
            axis = axes[row, column]
            axis.imshow(image.array[k][window], cmap="gray")
            _contours(axis, labels[window])
            axis.set_title(f"{case.name} s{k}: {title}", fontsize=8)
            axis.axis("off")
    figure.suptitle("EMIDEC validation cases (not used in training): expert labels vs the bundled ScarNet model "
                    "(myocardium green, blood pool red, scar yellow, MVO blue)", fontsize=9)
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
