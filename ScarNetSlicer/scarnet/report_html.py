"""A printable report of one exam: a self-contained HTML page (open it in a browser, print it to PDF).

What a reader files with the study: which input and which weights, the warnings, the totals (LV
myocardium and scar mass, scar % of the myocardium, MVO, transmurality), the AHA bullseye and
segment table when the segments were reported, the per-slice table with its QC flags, and the
conventions behind the figures. Plain HTML and CSS with the bullseye's SVG inline: nothing is
fetched, so the page reads the same offline and in ten years.
"""

from __future__ import annotations

import datetime
from html import escape as _html_escape
from typing import Any

from .bullseye import (
    APEX_NOT_IMAGED,
    apex_not_imaged,
    basal_end_text,
    bullseye_svg,
    percent_text,
    septum_text,
    summary_text,
)
from .quantify import (
    INTENDED_USE,
    Report,
    dicom_image_name,
    flagged_scar_text,
    mvo_percent,
    report_warnings,
    series_name,
    slice_list_text,
)
from .text import visible

_STYLE = """
body { font-family: sans-serif; font-size: 12px; color: #111; max-width: 900px; margin: 16px auto; }
h1 { font-size: 18px; margin-bottom: 2px; } h2 { font-size: 14px; margin: 18px 0 6px; }
.identity { font-size: 14px; font-weight: bold; } .status { font-weight: bold; color: #8a4b00; }
table { border-collapse: collapse; margin: 4px 0; } th, td { border: 1px solid #bbb; padding: 2px 6px; }
th { background: #eee; } td.n { text-align: right; } .muted { color: #555; }
.warning { background: #fff3cd; border: 1px solid #e0c36a; padding: 4px 8px; margin: 4px 0; }
.disclaimer { font-weight: bold; } p, .warning { overflow-wrap: break-word; }  /* a long name stays on the page */
@media print { body { margin: 0; } h2 { page-break-after: avoid; } table { page-break-inside: auto; } }
"""


def escape(text: str) -> str:
    """``text`` for the page: controls and bidirectional overrides from a name made visible
    (:func:`scarnet.text.visible`: U+202E would turn the rest of its line around), then HTML-escaped."""
    return _html_escape(visible(text))


def _number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else escape(f"{value:.{digits}f}")


def _table(header: list[str], rows: list[list[str]], numeric: set[int]) -> str:
    """An HTML table; ``rows`` hold escaped cell text; ``numeric``: the columns aligned right."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="n">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def series_text(series: dict[str, Any] | None) -> str:
    """`` (DICOM series #7 'LGE PSIR SAX')`` for a report's ``input_series``; empty without one."""
    name = series_name(series)
    return f" (DICOM series {name})" if name else ""


#: How :meth:`scarnet.dicom.DicomStack.identity`'s fields read on the page, in order.
IDENTITY_LABELS = {"patient_name": "Patient", "patient_id": "ID", "birth_date": "born", "study_date": "Study",
                   "accession_number": "Accession"}


#: The AHA's standard assignment of the 17 segments to the coronary arteries (Cerqueira et al., Circulation 2002);
#: the dominance of the right or circumflex artery moves the inferior segments between them.
CORONARY_TERRITORIES = {"LAD": (1, 2, 7, 8, 13, 14, 17), "RCA": (3, 4, 9, 10, 15), "LCx": (5, 6, 11, 12, 16)}


def territory_text(segments: list[dict[str, Any]]) -> str:
    """Segments with scar (graded 1 or more) by coronary territory (:data:`CORONARY_TERRITORIES`), or "" when none
    has scar: where the scar lies, as a reader summarises it."""
    graded = {s["segment"]: s.get("scar_extent_score") for s in segments}
    if not any(grade is not None and grade >= 1 for grade in graded.values()):
        return ""
    counts = []
    for artery, numbers in CORONARY_TERRITORIES.items():
        known = [n for n in numbers if graded.get(n) is not None]
        with_scar = [n for n in known if graded[n] >= 1]
        counts.append(f"{artery} {len(with_scar)} of {len(known)}"
                      + (f" ({', '.join(str(n) for n in with_scar)})" if with_scar else ""))
    return ("Segments with scar by coronary territory (the AHA's standard assignment; the dominant artery may supply "
            f"the inferior segments): {'; '.join(counts)}.")


#: What a page says of whose segmentation it measures (:func:`scarnet.summary.made_from`), above the figures.
_REVIEW_STATUS = {
    "ScarNet model": "Automated segmentation (ScarNet model), not reviewed by a reader: check and correct the contours "
                     "before using the figures.",
    "segmentation": "Automated segmentation (ScarNet model) measured again in 3D Slicer, not edited by a reader.",
    "edited segmentation": "ScarNet segmentation corrected by a reader.",
    "reader's segmentation": "Segmentation drawn by a reader.",
    "labelmap": "Segmentation from a labelmap file (who drew it is not recorded).",
}


def review_status_text(report: dict[str, Any]) -> str:
    """Whose segmentation the figures measure, and whether a reader reviewed it: the page's status line."""
    from .summary import made_from

    return _REVIEW_STATUS.get(made_from(report), _REVIEW_STATUS["labelmap"])


#: The QC flags as a reader reads them on the page (the CSV and JSON keep the codes, shown beside them).
_FLAG_NAMES = {"low_confidence": "contours uncertain", "broken_ring": "ring open", "lv_missing": "LV missing",
               "scar_unstable": "scar inconsistent", "scar_uncertain": "scar border uncertain",
               "low_contrast": "low contrast", "near_image_edge": "near the image edge",
               "at_crop_edge": "at the edge of the model's view", "lv_removed": "LV removed"}
#: Explanations in a reader's words where the engine's speak of the model's workings.
_FLAG_READING = {"scar_unstable": "the model's scar differs on a mirrored copy of the slice: check it by eye"}


def _weights_text(weights: dict[str, Any]) -> str:
    """``weights w.safetensors (bundled), sha256 b541c9a4d329``: a report's weights record as the page names it."""
    sha = str(weights.get("sha256") or "")[:12]
    return (f"weights {weights.get('file') or '?'}{' (bundled)' if weights.get('bundled') else ''}"
            f"{f', sha256 {sha}' if sha else ''}")


def _flag_name(flag: str) -> str:
    """``contours uncertain (low_confidence)``: the reader's words, then the code the CSV and JSON use."""
    name = _FLAG_NAMES.get(flag)
    return f"{name} ({flag})" if name else flag


def _identity_text(identity: dict[str, str]) -> str:
    """``Patient Doe, Jane · ID 123 · born 1960-01-01 · Study 2026-01-01 · Accession A1`` (escaped)."""
    return " · ".join(f"{label} {escape(identity[key])}" for key, label in IDENTITY_LABELS.items()
                      if identity.get(key))


def report_html(report: Report | dict[str, Any], source: str, *, made_from: str = "ScarNet model",
                generated: datetime.datetime | None = None, identity: dict[str, str] | None = None) -> str:
    """The report as an HTML page. ``source``: the input it was made from (a file name); ``made_from``:
    whose segmentation it quantifies (the model's, or a labelmap's); ``generated``: when (default now, UTC);
    ``identity``: the patient and study the DICOM headers name (:meth:`scarnet.dicom.DicomStack.identity`), at
    the top of the page so that a printout is filed under the right patient (the page only: the JSON and CSV
    reports do not carry them). ``report``: a :class:`~scarnet.quantify.Report` or its
    :meth:`~scarnet.quantify.Report.to_dict` form."""
    data = report.to_dict() if isinstance(report, Report) else report
    generated = generated or datetime.datetime.now(datetime.timezone.utc)
    inference = data.get("inference") or {}
    total = data["total"]
    slices = data["slices"]
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ScarNet report: "
             f"{escape(source)}</title><style>{_STYLE}</style></head><body>",
             "<h1>LGE scar report</h1>",
             *([f'<p class="identity">{_identity_text(identity)}</p>'] if identity else []),
             f'<p class="muted">Input: {escape(source)}{escape(series_text(data.get("input_series")))} · '
             f'Segmentation: {escape(made_from)} · Made {generated.strftime("%Y-%m-%d %H:%M UTC")}']
    version = data.get("scarnet_version") or inference.get("scarnet_version")
    if inference:
        if "weights" not in inference:  # a report from before the weights were recorded
            weights_text = "weights not recorded"
        elif not isinstance(inference["weights"], dict):
            weights_text = "a model passed in (no weights file)"
        else:
            weights_text = _weights_text(inference["weights"])
        parts[-1] += (f" · model: {escape(weights_text)}, {escape(str(inference.get('device', '')))}"
                      f"{', flip test-time augmentation' if inference.get('tta') else ''}")
    elif isinstance(model_run := data.get("model_run"), dict) and isinstance(model_run.get("weights"), dict):
        # A labelmap quantified with the report of the model run it came from (scarnet quantify --model-report).
        parts[-1] += escape(f" · from a model run: {_weights_text(model_run['weights'])}, "
                            f"scarnet {model_run.get('scarnet_version') or '?'}")
    parts[-1] += f" · scarnet {escape(str(version or 'version not recorded'))}"
    parts[-1] += "</p>"
    parts.append(f'<p class="status">{escape(review_status_text(data))}</p>')
    parts.append(f'<p class="disclaimer">{escape(INTENDED_USE)}</p>')
    warnings = [*report_warnings(data), *(data.get("segments_left_out") or [])]
    parts += [f'<div class="warning">{escape(str(message))}</div>' for message in warnings]

    parts.append("<h2>Totals</h2>")
    rows = [["LV myocardium", f"{_number(total['myocardium_ml'])} mL", f"{_number(total['myocardium_g'], 1)} g"],
            ["Scar (MVO included)", f"{_number(total['scar_ml'])} mL", f"{_number(total['scar_g'], 1)} g"],
            ["Scar % of LV myocardium", f"{_number(total['scar_percent'], 1)} %", ""],
            ["MVO", f"{_number(total['mvo_ml'])} mL"
                    + ("" if (mvo := mvo_percent(total["mvo_ml"], total["myocardium_ml"])) is None
                       else f" ({_number(mvo, 1)} % of LV myocardium)"), ""],
            ["LV blood pool (on these slices; not an LV volume)", f"{_number(total['lv_blood_pool_ml'])} mL", ""],
            ["Slices with myocardium / with scar",
             escape(f"{total['slices_with_myocardium']} / {total['slices_with_scar']}"), ""]]
    if flagged := flagged_scar_text(data):  # a normal heart's false scar, all on flagged slices, reads as an infarct
        rows.append(["Scar on slices with QC flags", escape(flagged), ""])
    if total.get("scar_circumference_percent") is not None:
        rows.append(["LV circumference with scar / scar through more than half of the wall",
                     f"{_number(total['scar_circumference_percent'], 0)} % / "
                     f"{_number(total['transmural_over_50_percent'], 0)} %", ""])
    parts.append(_table(["", "Value", "Mass"], rows, {1, 2}))

    if data.get("segments") is not None:
        parts.append("<h2>AHA segments</h2>")
        parts.append(bullseye_svg(data, f"Scar per AHA segment ({made_from})"))
        order = data.get("base_apex") or {}
        summary = f"{summary_text(data['segment_summary'])}. " if data.get("segment_summary") else ""
        apex = f" {APEX_NOT_IMAGED[:1].upper()}{APEX_NOT_IMAGED[1:]}." if apex_not_imaged(data["segments"]) else ""
        parts.append(f'<p class="muted">{escape(summary)}'
                     f"{escape(septum_text(data.get('septal_span_deg')))}. Basal end: "
                     f"{escape(basal_end_text(order))}; angles from the {escape(str(data.get('segment_angles_from')))}."
                     f"{escape(apex)}</p>")
        # An apex without slices is not imaged: "–", not 0 mL measured.
        rows = [[escape(f"{s['segment']} {s['name']}"), escape(slice_list_text(s["slices"], dash="–") or "–"),
                 _number(s["myocardium_ml"] if s["slices"] else None), _number(s["scar_ml"] if s["slices"] else None),
                 escape(percent_text(s["scar_percent"])),
                 "–" if s["scar_extent_score"] is None else escape(str(s["scar_extent_score"])),
                 _number(s["transmural_over_50_percent"], 0), _number(s["mvo_ml"] if s["slices"] else None)]
                for s in data["segments"]]
        if territories := territory_text(data["segments"]):
            parts.append(f'<p class="muted">{escape(territories)}</p>')
        parts.append(_table(["Segment", "Slices", "Myocardium mL", "Scar mL", "Scar %",
                             "Extent grade (0: none, 1: 1–25, 2: 26–50, 3: 51–75, 4: 76–100 % of the segment)",
                             "Rays > 50 % transmural (%)", "MVO mL"], rows, {2, 3, 4, 5, 6, 7}))

    parts.append("<h2>Per slice</h2>")
    with_dicom = any(s.get("dicom") for s in slices)
    with_level = any(s.get("level") for s in slices)
    with_qc = bool(data.get("qc")) or any(s.get("qc_flags") for s in slices)
    header = (["Slice", "Position mm"] + (["DICOM image"] if with_dicom else []) + (["Level"] if with_level else [])
              + ["Myocardium mL", "Scar mL", "Scar %", "MVO mL", "Transmural > 50 % (%)"]
              + (["QC flags"] if with_qc else []))
    rows = []
    for s in slices:
        rows.append([escape(str(s["index"])), _number(s["position_mm"], 1),
                     *([escape(dicom_image_name(s.get("dicom")))] if with_dicom else []),
                     *([escape(s.get("level") or "–")] if with_level else []),
                     _number(s["myocardium_ml"]), _number(s["scar_ml"]), _number(s["scar_percent"], 1),
                     _number(s["mvo_ml"]), _number(s.get("transmural_over_50_percent"), 0),
                     *([escape(", ".join(_flag_name(flag) for flag in s.get("qc_flags") or []) or "–")]
                       if with_qc else [])])
    first_number = 2 + with_dicom + with_level
    parts.append(_table(header, rows, set(range(first_number, first_number + 5)) | {0, 1}))
    flags = (data.get("qc") or {}).get("flags") or {}
    used = sorted({flag for s in slices for flag in s.get("qc_flags") or []})
    if used:
        parts.append("<p>" + "<br>".join(f"<b>{escape(_flag_name(flag))}</b>: "
                                         f"{escape(_FLAG_READING.get(flag) or str(flags.get(flag, '')))}"
                                         for flag in used) + "</p>")

    # A printout is signed by whoever checked (and corrected) the contours.
    parts.append("<h2>Review</h2><p>Contours checked (and corrected) by: ______________________ &nbsp; Date: "
                 "______________ &nbsp; Signature: ______________________</p>")
    conventions = data.get("conventions") or {}
    parts.append("<h2>Conventions</h2><ul>")
    if made_from == "ScarNet model" or data.get("inference"):
        parts.append("<li><b>scar method</b>: enhanced myocardium as the model segments it (trained on expert "
                     "contours; then as a reader corrected it, where the status line says so), not an n-SD or FWHM "
                     "threshold: the figures are not interchangeable with threshold-based ones</li>")
    for key in ("scar", "myocardium", "position_mm", "transmurality", "level", "segments"):
        if key in conventions:
            parts.append(f"<li><b>{escape(key)}</b>: {escape(str(conventions[key]))}</li>")
    density = escape(str(conventions.get("myocardium_density_g_per_ml", 1.05)))
    parts.append(f"<li><b>mass</b>: volume × {density} g/mL</li>")
    parts.append("</ul></body></html>\n")
    return "\n".join(parts)


__all__ = ["report_html", "series_name", "series_text"]
