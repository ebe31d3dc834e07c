"""Replace baseline rows of a published evaluation with the same rows of a newer run on the same exams.

Used when a baseline was fixed after an evaluation that cannot be rerun whole here (the main EMIDEC
table needs the plain U-Net's weights, ``runs/gpu_full_unet``). The newer run must have segmented
the same exams with the same weights to the last digit: ScarNet's per-case figures are compared and
the amendment is refused when any differs. The summaries of the other methods are recomputed from
their per-case figures (so keys added since, such as the infarct-only limits of agreement, appear),
and refused if any figure they had changes. The Markdown is rendered again from the JSON.

    python tools/studies/amend_evaluation.py docs/evaluation_emidec_val.json \\
        docs/evaluation_emidec_val_thresholds.json threshold_2sd threshold_fwhm \\
        --why "2SD's darker half includes the ties at the median; FWHM from the remote level" \\
        --markdown docs/evaluation_emidec_val.md --note "..."
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from scarnet.evaluate_cli import _summary, render_markdown
from scarnet.io import json_safe as _jsonable

# Settings that say how a baseline was computed; copied with its row.
_METHOD_SETTINGS = {"threshold_2sd": ["two_sd_remote"], "threshold_fwhm": ["fwhm_remote_percentile"]}


def _same(a: object, b: object) -> bool:
    a, b = _jsonable(a), _jsonable(b)  # NaN is stored as null
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def check_same_run(published: dict, newer: dict, method: str = "scarnet") -> None:
    """Raise ValueError unless the two evaluations are of the same exams with the same ``method`` weights."""
    if published["cases"] != newer["cases"]:
        raise ValueError("the two evaluations are not of the same exams")
    if published["weights"][method]["sha256"] != newer["weights"][method]["sha256"]:
        label = "ScarNet" if method == "scarnet" else method
        raise ValueError(f"the two evaluations used different {label} weights")


def resummarise(key: str, method: dict) -> None:
    """Compute ``method``'s summary again from its per-case figures (keys added since then appear); raise
    ValueError, leaving it as it was, if any figure it had changes."""
    summary = _summary(method["per_case"])
    changed = [name for name, value in method["summary"].items() if not _same(value, summary.get(name))]
    if changed:
        raise ValueError(f"re-summarising {key} changes {', '.join(changed)}")
    method["summary"] = summary


def write_amended(amended: dict, json_path: Path, markdown_path: Path | None) -> None:
    """The amended evaluation over the published JSON, and its Markdown rendered again when a path is given."""
    json_path.write_text(json.dumps(_jsonable(amended), indent=2) + "\n", encoding="utf-8")
    if markdown_path:
        markdown_path.write_text(render_markdown(amended), encoding="utf-8")  # ᵇ, ±, –: not in every locale's


def amend(published: dict, newer: dict, rows: list[str], why: str) -> dict:
    """``published`` with ``rows`` taken from ``newer`` (see the module docstring); raises ValueError."""
    check_same_run(published, newer)
    if not _same(published["methods"]["scarnet"]["per_case"], newer["methods"]["scarnet"]["per_case"]):
        raise ValueError("ScarNet's per-case figures differ: the rows would not be on the same predictions")
    amended = json.loads(json.dumps(published))
    for key, method in amended["methods"].items():
        if key in rows or method.get("status") != "ok" or "per_case" not in method:
            continue
        resummarise(key, method)
    for key in rows:
        amended["methods"][key] = newer["methods"][key]
        for setting in _METHOD_SETTINGS.get(key, []):
            amended["settings"][setting] = newer["settings"].get(setting)
    labels = ", ".join(newer["methods"][key]["label"] for key in rows)
    amended.setdefault("amendments", []).append(
        f"{labels} re-measured {newer.get('date', '')} ({why}) by `{newer.get('command', '')}`, on the same "
        "predictions (ScarNet's per-case figures identical)")
    return amended


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("published", type=Path)
    parser.add_argument("newer", type=Path)
    parser.add_argument("rows", nargs="+", help="method keys, e.g. threshold_2sd")
    parser.add_argument("--why", required=True)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--note", action="append", default=[],
                        help="a further amendment line (a finding about the run made since, with its command)")
    args = parser.parse_args()
    try:
        amended = amend(json.loads(args.published.read_text(encoding="utf-8")),
                        json.loads(args.newer.read_text(encoding="utf-8")), args.rows,
                        args.why)
    except (ValueError, KeyError) as error:
        print(f"amend_evaluation: {error}", file=sys.stderr)
        return 1
    amended["amendments"] += args.note
    write_amended(amended, args.published, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
