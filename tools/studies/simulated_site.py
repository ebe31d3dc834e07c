"""Study: what fine-tuning on a site's own exams buys (``scarnet train --images``), on a simulated site.

We have no LGE from another centre, so this makes one from EMIDEC's real anatomy and expert labels:
every exam as another protocol would show it, with the evaluation's own simulations applied in turn:
blood pool contrast × 1.4 (imaged earlier after contrast), healthy myocardium not nulled (inversion
time off the null point) and a 2.5 mm in-plane acquisition (``scarnet.evaluate_cli``). It writes
the exams as a site would have them, NIfTI image and labelmap of one name in two folders:

* ``train/``: the EMIDEC train split (80 exams), to fine-tune on;
* ``select/``: every other exam of the val split from the first (7 infarct, 3 normal), to select the checkpoint on;
* ``report/``: the other 10 val exams (6 infarct, 4 normal), for the figures (never seen in training or selection);
* ``report_clean/``: those 10 exams as EMIDEC has them, to see what fine-tuning costs on the original protocol.

    python tools/studies/simulated_site.py --out /tmp/site

then the commands of the model card's section "Fine-tuning to a site (simulated)".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scarnet.evaluate_cli import add_artifact, add_contrast_shift
from scarnet.io import write_volume
from scarnet.train.emidec import default_emidec_root, load_cases, load_split
from scarnet.volume import Volume

#: The simulated site's protocol: the evaluation's shifts, applied in this order.
SITE_SHIFTS = ("blood ×1.4", "myocardium not nulled")
SITE_ARTIFACT = "low resolution"


def site_image(image: Volume, reference: Volume) -> Volume:
    """``image`` as the simulated site's protocol shows it."""
    for shift in SITE_SHIFTS:
        image = add_contrast_shift(image, reference, shift)
    return add_artifact(image, SITE_ARTIFACT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="new folder for the simulated site's exams")
    args = parser.parse_args()
    root = default_emidec_root()
    if root is None:
        sys.exit("EMIDEC data not found (../shared/data/emidec)")
    if args.out.exists():
        sys.exit(f"{args.out}: exists; give a new folder")
    split = load_split(root)
    val = split["val"]
    # Interleaved: the val list has its infarct exams first, and each part needs both kinds.
    parts = {"train": (split["train"], True), "select": (val[0::2], True), "report": (val[1::2], True),
             "report_clean": (val[1::2], False)}
    for part, (names, shifted) in parts.items():
        for folder in ("images", "labels"):
            (args.out / part / folder).mkdir(parents=True)
        for case in load_cases(root, names):
            image, reference = case.as_volume()
            if shifted:
                image = site_image(image, reference)
            write_volume(image, args.out / part / "images" / f"{case.name}.nii.gz")
            write_volume(reference, args.out / part / "labels" / f"{case.name}.nii.gz")
        print(f"{part}: {len(names)} exams{' (simulated site)' if shifted else ' (as EMIDEC has them)'}")


if __name__ == "__main__":
    main()
