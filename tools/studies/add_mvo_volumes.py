"""Add ScarNet's per-case MVO volumes, and the MVO presence per exam they give, to a published evaluation.

The published EMIDEC table (``docs/evaluation_emidec_val.json``) was made before ``scarnet evaluate`` recorded
``mvo_ml_pred`` and ``mvo_ml_ref``, and it cannot be rerun whole here (its U-Net row needs the plain U-Net's weights,
``runs/gpu_full_unet``). A newer run of ScarNet alone on the same exams with the same weights gives them: every
per-case figure the published row has must be identical in the newer run (else the volumes would not be of the same
predictions, and nothing is written). The fields are copied into ScarNet's per-case figures, its summary is computed
again (refused if any figure it had changes), an "Amended" line says so, and the Markdown is rendered again from the
JSON. The other rows are left as they are (the U-Net's says its MVO volumes were not recorded).

    scarnet evaluate --skip unet medsam thresholds artifacts noise contrast field \\
        --markdown /tmp/val_mvo.md --json /tmp/val_mvo.json --device cpu
    python tools/studies/add_mvo_volumes.py docs/evaluation_emidec_val.json /tmp/val_mvo.json \\
        --markdown docs/evaluation_emidec_val.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from amend_evaluation import _same, check_same_run, resummarise, write_amended  # tools/studies is on the path

#: The per-case fields added (``scarnet.evaluate.case_metrics``).
MVO_FIELDS = ("mvo_ml_pred", "mvo_ml_ref")


def add_mvo_volumes(published: dict, newer: dict, method: str = "scarnet") -> dict:
    """``published`` with ``method``'s per-case :data:`MVO_FIELDS` taken from ``newer`` and its summary computed
    again; raises ValueError when the two are not the same predictions or a published figure would change."""
    check_same_run(published, newer, method)
    old_cases, new_cases = published["methods"][method]["per_case"], newer["methods"][method]["per_case"]
    if all(all(key in figures for key in MVO_FIELDS) for figures in old_cases.values()):
        raise ValueError(f"{method}: the published evaluation has its MVO volumes already")
    if old_cases.keys() != new_cases.keys():
        raise ValueError(f"{method}: the two evaluations have different cases")
    for name, figures in old_cases.items():
        differing = [key for key, value in figures.items() if not _same(value, new_cases[name].get(key))]
        if differing:
            raise ValueError(f"{method} {name}: {', '.join(differing)} differ: the volumes would not be of the same "
                             "predictions")
        missing = [key for key in MVO_FIELDS if new_cases[name].get(key) is None]
        if missing:
            raise ValueError(f"{method} {name}: the newer evaluation lacks {', '.join(missing)} (made before they "
                             "were recorded?)")
    amended = json.loads(json.dumps(published))
    row = amended["methods"][method]
    for name, figures in row["per_case"].items():
        figures.update({key: new_cases[name][key] for key in MVO_FIELDS})
    resummarise(method, row)
    amended.setdefault("amendments", []).append(
        f"{row['label']}'s per-case MVO volumes and its MVO presence per exam added from a run of "
        f"{newer.get('date', '')} by `{newer.get('command', '')}`, on the same predictions (ScarNet's per-case "
        "figures identical); the other rows were not re-run (the U-Net's weights are not on this machine)")
    return amended


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("published", type=Path)
    parser.add_argument("newer", type=Path)
    parser.add_argument("--markdown", type=Path, help="render the amended evaluation here (the published .md)")
    args = parser.parse_args()
    try:
        published = json.loads(args.published.read_text(encoding="utf-8"))
        amended = add_mvo_volumes(published, json.loads(args.newer.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError) as error:
        print(f"add_mvo_volumes: {error}", file=sys.stderr)
        return 1
    write_amended(amended, args.published, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
