"""Draw synthetic phantoms beside real EMIDEC LGE slices: ``docs/phantoms_vs_emidec.png``.

Top row: six phantom mid-ventricular slices (different seeds, some with MVO) and two real EMIDEC
slices, all with the same grey scaling rule (1st to 99.5th percentile of the non-padding pixels).
Bottom row: the same slices with the label contours (blood pool red, myocardium green, scar
yellow, MVO blue). Phantoms are resampled to 1.4 mm pixels like the EMIDEC PNGs, so sizes in mm
compare directly; the EMIDEC PNGs are shown as stored.

Run from the repository root::

    python docs/make_phantom_montage.py [--randomize] [--out docs/phantoms_vs_emidec.png]

EMIDEC is CC BY-NC-SA 4.0 (Lalande et al., Data 2020): the figure is for documentation only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "ScarNetSlicer"))

from scarnet.phantom import make_phantom  # noqa: E402

EMIDEC_PNG = REPO.parent / "shared" / "data" / "emidec" / "png"
EMIDEC_SLICES = ("Case_P100_slice004", "Case_P002_slice004")
PANEL_PX = 180  # panels are 180 x 180 pixels at 1.4 mm (252 mm)
PNG_MM = 1.4
CONTOUR_RGB = {1: (1.0, 0.2, 0.2), 2: (0.2, 0.9, 0.2), 3: (1.0, 0.9, 0.1), 4: (0.2, 0.5, 1.0)}


def _window(img: np.ndarray) -> np.ndarray:
    """Same grey scaling for every panel: 1st-99.5th percentile of the non-zero pixels."""
    vals = img[img > 0]
    lo, hi = np.percentile(vals, [1.0, 99.5]) if vals.size else (0.0, 1.0)
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def _phantom_panel(seed: int, randomize: bool, want_mvo: bool | None) -> tuple[np.ndarray, np.ndarray, str]:
    """A mid-ventricular phantom slice resampled to 1.4 mm pixels, centred on the LV."""
    ph = make_phantom(seed, infarct=want_mvo, randomize_appearance=randomize)
    lab = ph.labelmap.array
    scar_per_slice = (lab >= 3).sum(axis=(1, 2))
    lv_per_slice = (lab > 0).sum(axis=(1, 2))
    # Mid-ventricular: among slices with at least 60 % of the largest LV area, the one with most
    # MVO, else most scar, else the largest LV.
    mid = lv_per_slice >= 0.6 * lv_per_slice.max()
    mvo_per_slice = (lab == 4).sum(axis=(1, 2))
    score = lv_per_slice + 100 * scar_per_slice + 10000 * mvo_per_slice
    k = int(np.argmax(np.where(mid, score, -1)))
    si, sj = ph.image.spacing_mm[:2]
    img = ndimage.zoom(ph.image.array[k], (sj / PNG_MM, si / PNG_MM), order=1)
    lbl = ndimage.zoom(lab[k], (sj / PNG_MM, si / PNG_MM), order=0)
    cj, ci = ndimage.center_of_mass(lbl > 0)
    # Keep some of the off-centre placement: shift the crop only part of the way to the LV.
    cj = 0.5 * cj + 0.5 * img.shape[0] / 2
    ci = 0.5 * ci + 0.5 * img.shape[1] / 2
    img, lbl = _crop(img, cj, ci), _crop(lbl, cj, ci)
    terr = ph.info["territory"] or "no MI"
    title = f"seed {seed}: {terr}{' +MVO' if (lbl == 4).any() else ''}"
    return img, lbl, title


def _crop(a: np.ndarray, cj: float, ci: float) -> np.ndarray:
    out = np.zeros((PANEL_PX, PANEL_PX), dtype=a.dtype)
    j0, i0 = int(round(cj)) - PANEL_PX // 2, int(round(ci)) - PANEL_PX // 2
    sj0, si0 = max(0, j0), max(0, i0)
    sj1, si1 = min(a.shape[0], j0 + PANEL_PX), min(a.shape[1], i0 + PANEL_PX)
    out[sj0 - j0 : sj1 - j0, si0 - i0 : si1 - i0] = a[sj0:sj1, si0:si1]
    return out


def _emidec_panel(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    from PIL import Image

    img = np.asarray(Image.open(EMIDEC_PNG / "images" / f"{name}.png"), dtype=np.float32)
    lbl = np.asarray(Image.open(EMIDEC_PNG / "labels" / f"{name}.png"))
    cj, ci = ndimage.center_of_mass(lbl > 0)
    cj = 0.5 * cj + 0.5 * img.shape[0] / 2
    ci = 0.5 * ci + 0.5 * img.shape[1] / 2
    return _crop(img, cj, ci), _crop(lbl, cj, ci), f"EMIDEC {name.replace('_slice', ' s')}"


def _overlay(grey: np.ndarray, lbl: np.ndarray) -> np.ndarray:
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for value, colour in CONTOUR_RGB.items():
        mask = lbl == value
        edge = mask & ~ndimage.binary_erosion(mask)
        rgb[edge] = colour
    return rgb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "phantoms_vs_emidec.png")
    parser.add_argument("--randomize", action="store_true", help="phantoms with randomize_appearance=True")
    parser.add_argument("--seeds", type=int, nargs=6, default=(4, 6, 11, 21, 7, 0))
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Ask for MVO in the first three, leave the rest to chance (seed 0 is infarct-free here).
    want = [True, True, True, None, None, False]
    panels = [_phantom_panel(s, args.randomize, w) for s, w in zip(args.seeds, want, strict=True)]
    for name in EMIDEC_SLICES:
        if (EMIDEC_PNG / "images" / f"{name}.png").exists():
            panels.append(_emidec_panel(name))
    fig, axes = plt.subplots(2, len(panels), figsize=(2.2 * len(panels), 4.7), dpi=110)
    for col, (img, lbl, title) in enumerate(panels):
        grey = _window(img)
        axes[0, col].imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[0, col].set_title(title, fontsize=7)
        axes[1, col].imshow(_overlay(grey, lbl), interpolation="nearest")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "ScarNetSlicer phantoms (left six) vs real EMIDEC LGE (right); 1.4 mm pixels, 252 mm panels"
        + (" - randomize_appearance=True" if args.randomize else ""),
        fontsize=8,
    )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
