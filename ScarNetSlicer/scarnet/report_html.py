"""A printable report of one exam: a self-contained HTML page (open it in a browser, print it to PDF).

What a reader files with the study: which input and which weights, the warnings (one short line each, the engine's
full text folded under it), the totals as an LGE report states them (scar mass in g and as % of the LV myocardial
mass first, volumes after; MVO, transmurality; under them, while no reader has reviewed the model's contours, a
caution for a small scar total and for the model's MVO: :func:`caution_lines`), the AHA bullseye and segment table
when the segments were reported (the segments with scar by coronary territory, hedged or left out while unreviewed:
:func:`territory_text`; each segment's extent grade, mean transmural extent of its scar with Kim's band, none for a
speck: :func:`segment_transmurality_text`, and whether its scar lies only on slices with QC flags; the bullseye
without the captions the text says: :data:`SAID_BESIDE_THE_BULLSEYE`), the per-slice table with its QC flags, a
short "About the model" box from the model card, and what the figures mean in a reader's words (the technical
definitions folded for analysts). Figures are rounded for reading (:data:`scarnet.bullseye.ROUNDING`); the JSON
and CSV keep every digit. Plain HTML and CSS with the bullseye's SVG inline: nothing is fetched, so the page reads
the same offline and in ten years; made to print on one or two A4 pages.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from html import escape as _html_escape
from typing import Any

from .aha import GIVEN_BASAL_END_WARNING_START, transmurality_band
from .bullseye import (
    APEX_NOT_IMAGED,
    ROUNDING,
    RV_SIDE_CAPTION,
    RV_SIDE_WARNING,
    amount_text,
    apex_not_imaged,
    basal_end_text,
    bullseye_svg,
    percent_text,
    qc_only_scar_slices,
    septum_text,
    summary_text,
    whole_percent_text,
)
from .labels import MYOCARDIUM_DENSITY_G_PER_ML
from .qc import UNLIKE_TRAINING_WARNING
from .quantify import (
    INTENDED_USE,
    MIRROR_WARNING,
    SMALL_SCAR_ML,
    Report,
    before_correction,
    dicom_image_name,
    model_run_record,
    mvo_percent,
    report_warnings,
    scar_on_flagged_slices,
    series_name,
    slice_list_text,
)
from .text import visible
from .threshold_check import N_SD, N_SD_KEY
from .transmurality import RAYS_PER_SLICE

_STYLE = """
body { font-family: sans-serif; font-size: 12px; color: #111; max-width: 900px; margin: 16px auto; }
h1 { font-size: 18px; margin-bottom: 2px; } h2 { font-size: 14px; margin: 14px 0 4px; }
.identity { font-size: 14px; font-weight: bold; } .status { font-weight: bold; color: #8a4b00; }
table { border-collapse: collapse; margin: 4px 0; } th, td { border: 1px solid #bbb; padding: 1px 5px; }
th { background: #eee; } td.n { text-align: right; white-space: nowrap; } .muted { color: #555; }
.lead { font-size: 14px; }
.warning { background: #fff3cd; border: 1px solid #e0c36a; padding: 2px 8px; margin: 3px 0; }
.warning summary { cursor: pointer; } .warning .full { margin: 2px 0 2px 14px; color: #333; }
.qc { color: #a00000; } .qcseg { color: #1f4fbf; font-weight: bold; }
.about { border: 1px solid #999; padding: 2px 10px; margin: 8px 0; } .about ul, ul.plain { margin: 2px 0; }
.disclaimer { font-weight: bold; } p, .warning { overflow-wrap: break-word; }  /* a long name stays on the page */
@page { size: A4; margin: 12mm; }
.aha { display: flex; align-items: flex-start; gap: 12px; } .aha p { margin: 4px 0; } td.name { white-space: nowrap; }
@media print { body { margin: 0; font-size: 10px; max-width: none; } h2 { page-break-after: avoid; }
  table { page-break-inside: auto; } tr, .about, .aha { page-break-inside: avoid; }
  svg { width: 400px; height: auto; flex: none; }
  /* a folded text stays folded on paper: the warnings' full text, the analysts' definitions */
  details:not([open]) > :not(summary) { display: none; } details.analysts:not([open]) { display: none; } }
"""


def escape(text: str) -> str:
    """``text`` for the page: controls and bidirectional overrides from a name made visible
    (:func:`scarnet.text.visible`: U+202E would turn the rest of its line around), then HTML-escaped."""
    return _html_escape(visible(text))


def _number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else escape(f"{value:.{digits}f}")


def _amount(value: float | None, unit: str = "") -> str:
    """A mass or volume as the page rounds it (:data:`~scarnet.bullseye.ROUNDING`), escaped: "18.6", "<0.1 mL"."""
    text = amount_text(value)
    return escape(text if value is None or not unit else f"{text} {unit}")


def _percent(value: float | None) -> str:
    """A percentage as the page rounds it, escaped: "13 %", "<1 %"; "–" for None."""
    return "–" if value is None else escape(f"{whole_percent_text(value)} %")


def _table(header: list[str], rows: list[list[str]], numeric: set[int], names: bool = False) -> str:
    """An HTML table; ``rows`` hold escaped cell text; ``numeric``: the columns aligned right; ``names``: the first
    column kept on one line (a segment's name)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="n">{cell}</td>' if i in numeric else
                                    f'<td class="name">{cell}</td>' if names and i == 0 else f"<td>{cell}</td>"
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


def territory_text(segments: list[dict[str, Any]], *, unreviewed: bool = False,
                   scar_total_ml: float | None = None) -> str:
    """Segments with scar (graded 1 or more) by coronary territory (:data:`CORONARY_TERRITORIES`), or "" when none
    has scar: where the scar lies, as a reader summarises it.

    ``unreviewed``: the figures measure the model's contours, which no reader has reviewed (:func:`unreviewed_model`);
    ``scar_total_ml``: the report's scar total. Naming arteries turns scar into an infarct in their territories, and
    steers a reader: on an unreviewed page a scar total under :data:`SMALL_SCAR_ML` may be no scar at all (the
    model's false scar in a normal heart, the page's caution line says so), so the line is left out there rather than
    read as "LAD 3 of 6 (1, 2, 13)" of a normal heart's 1 mL of specks; a larger unreviewed scar keeps it, saying that
    it is the model's unreviewed scar; a reviewed segmentation's is stated as it is."""
    graded = {s["segment"]: s.get("scar_extent_score") for s in segments}
    if not any(grade is not None and grade >= 1 for grade in graded.values()):
        return ""
    if unreviewed and scar_total_ml is not None and scar_total_ml < SMALL_SCAR_ML:
        return ""
    counts = []
    for artery, numbers in CORONARY_TERRITORIES.items():
        known = [n for n in numbers if graded.get(n) is not None]
        with_scar = [n for n in known if graded[n] >= 1]
        counts.append(f"{artery} {len(with_scar)} of {len(known)}"
                      + (f" ({', '.join(str(n) for n in with_scar)})" if with_scar else ""))
    whose = ", as the model draws it, not reviewed by a reader" if unreviewed else ""
    return (f"Segments with scar by coronary territory{whose} (the AHA's standard assignment; the dominant artery may "
            f"supply the inferior segments): {'; '.join(counts)}.")


#: What a page says of whose segmentation it measures (:func:`scarnet.summary.made_from`), above the figures.
_REVIEW_STATUS = {
    "ScarNet model": "Automated segmentation (ScarNet model), not reviewed by a reader: check and correct the contours "
                     "before using the figures.",
    "segmentation": "Automated segmentation (ScarNet model) measured again in 3D Slicer, not edited by a reader.",
    "edited segmentation": "ScarNet segmentation corrected by a reader.",
    "reader's segmentation": "Segmentation drawn by a reader.",
    "labelmap": "Segmentation from a labelmap file (who drew it is not recorded).",
}


def rv_points_text(points: dict[str, Any] | None) -> str:
    """" RV insertion points (RAS mm, as Slicer shows them): anterior (R, A, S), inferior (R, A, S)." — what the
    segments were placed from, so that a printout can be checked against the images; "" when the report lacks them
    (made before they were recorded, or without segments)."""
    if not isinstance(points, dict) or not points.get("anterior"):
        return ""
    given = [f"{which} ({', '.join(f'{float(v):.1f}' for v in point)})" for which, point in points.items()
             if isinstance(point, list) and len(point) == 3 and all(isinstance(v, (int, float)) for v in point)]
    return f" RV insertion points (RAS mm, as Slicer shows them): {', '.join(given)}." if given else ""


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


#: Short lines for the engine's longer warnings, as (pattern, line): the first pattern found in a warning (its file
#: name taken off) gives its line on the page, with the pattern's named groups filled in; the warning's full text is
#: folded under it. A warning none of them matches is cut to its first clause (:func:`warning_headline`).
_HEADLINES: tuple[tuple[str, str], ...] = (
    (r"its sform makes voxels of (?P<sform>\S+) mm, its pixdim (?P<pixdim>\S+) mm",
     "Voxel size uncertain: read as {pixdim} mm (pixdim), the sform says {sform} mm; every volume and mass depends "
     "on it"),
    (r"its sform and qform place the image up to (?P<mm>\S+) mm apart",
     "Image position uncertain: the header's sform and qform differ by up to {mm} mm"),
    (r"has a negative spacing", "Header with a negative voxel spacing: check left and right"),
    (r"its voxels are 1×1×1 mm", "Voxel size 1×1×1 mm, often a placeholder: volumes and masses are right only if true"),
    (r"voxel axes are not perpendicular.*volumes come out (?P<excess>\S+) % too", "Sheared voxel grid: volumes "
     "{excess} % too large"),
    (rf"^{re.escape(MIRROR_WARNING[:60])}",
     "No short-axis orientation: septum and lateral wall may be exchanged in the segments (mark the inferior RV "
     "insertion too)"),
    (rf"^{re.escape(GIVEN_BASAL_END_WARNING_START)}", "The basal end as given disagrees with the image: basal and "
     "apical segments may be exchanged"),
    (r"^AHA segments: .*too few for basal, mid and apical thirds: the (?P<levels>.+?) segments",
     "Too few slices for three levels: the {levels} segments are empty, not measured"),
    (RV_SIDE_WARNING.pattern, RV_SIDE_CAPTION),
    (rf"unsure of the heart in (?P<n>\d+) of the (?P<of>\d+) slices.*{re.escape(UNLIKE_TRAINING_WARNING)}",
     "Model unsure in {n} of {of} slices: the exam may differ from the training data; read every slice"),
    (r"unsure of the LV it draws in (?P<n>\d+) of the (?P<of>\d+) slices.*not refused",
     "Model unsure of the LV in {n} of {of} slices: check that the heart is in the field of view"),
    (r"carries no QC calibration", "Weights without their own QC calibration: the QC flags may mark too many slices "
     "or too few"),
    (r"^(?P<slices>slices? [\d, ]+) (?:has|have) no myocardium between slices",
     "{slices}: no myocardium between slices with it (not drawn, or LV missed), left out of the totals"),
    (r"^(?P<slices>slices? [\d, ]+) (?:has|have) scar but no healthy myocardium",
     "{slices}: scar but no healthy myocardium (scar 100 %): check the contours"),
    (r"^(?P<slices>slices? [\d, ]+) (?:has|have) background enclosed beside the myocardium \((?P<ml>[^)]+)\)",
     "{slices}: {ml} of background enclosed in the wall, counted as neither myocardium nor scar: check the contours"),
    (r"^(?P<slices>slices? [\d, ]+) (?:has|have) the blood pool open to the background",
     "{slices}: myocardial ring broken (blood pool open to the outside): check the contours"),
    (r"^the labelmap has no myocardium", "No myocardium in the labelmap: every figure is 0"),
    (r"^the scar is no brighter than the healthy myocardium",
     "Scar no brighter than healthy myocardium on the image: labels swapped, or another image?"),
)
#: A warning's short line keeps at most this many words (its first clause; the full text is folded under it).
HEADLINE_WORDS = 16
#: What ends a warning's first clause (:func:`warning_headline`), once it has a few words.
_CLAUSE_END = re.compile(r"; |: | \(|, which |\. ")
#: A file or folder name at the start of a warning (``/data/lge.nii.gz: ...``).
_LEADING_PATH = re.compile(r"^(?:\S*[/\\]\S*|\S+\.(?:nii|nii\.gz|nrrd|nhdr|mha|mhd|dcm|png)): ")


def _first_clause(text: str) -> str:
    """``text`` up to the end of its first clause with three words or more, at most :data:`HEADLINE_WORDS` words."""
    for end in _CLAUSE_END.finditer(text):
        if len(text[:end.start()].split()) >= 3:
            text = text[:end.start()]
            break
    words = text.split()
    return text if len(words) <= HEADLINE_WORDS else " ".join(words[:HEADLINE_WORDS]) + " …"


def warning_headline(message: str, names: tuple[str, ...] = ()) -> str:
    """One short line for a warning on the page: the file name it starts with taken off (``names``: the input's and
    the labelmap's, which the page shows above; else anything that looks like a path), then the line of the first of
    :data:`_HEADLINES` it matches, else its first clause; the first letter capitalised."""
    text = str(message)
    for name in names:
        if name and text.startswith(f"{name}: "):
            text = text[len(name) + 2:]
            break
    else:
        text = _LEADING_PATH.sub("", text, count=1)
    line = None
    for pattern, headline in _HEADLINES:
        if match := re.search(pattern, text):
            line = headline.format(**match.groupdict())
            break
    if line is None:
        why = re.match(r"no AHA segments: (.*)", text, re.DOTALL)
        line = f"no AHA segments: {_first_clause(why.group(1))}" if why else _first_clause(text)
    return line[:1].upper() + line[1:]


def _warning_html(headline: str, messages: list[str]) -> str:
    """A warning on the page: its short line (``headline``, :func:`warning_headline`), the full text(s) folded under
    it where they say more. ``messages``: the engine's warnings with this same short line (the image's and the
    labelmap's header read alike), shown once."""
    if len(messages) == 1 and headline == messages[0][:1].upper() + messages[0][1:]:  # short enough as it is
        return f'<div class="warning">{escape(headline)}</div>'
    return (f'<details class="warning"><summary>{escape(headline)}</summary>'
            + "".join(f'<div class="full">{escape(str(message))}</div>' for message in messages) + "</details>")


def _warnings_html(messages: list[str], names: tuple[str, ...]) -> list[str]:
    """The page's warnings, one line per short line: warnings that read the same there (the image's and the
    labelmap's identical headers) are shown once, their full texts folded under it."""
    grouped: dict[str, list[str]] = {}
    for message in messages:
        grouped.setdefault(warning_headline(message, names), []).append(message)
    return [_warning_html(headline, group) for headline, group in grouped.items()]


#: The figures the "About the model" box gives for the bundled weights, as their model card states them
#: (scarnet/weights/MODEL_CARD.md: "Training", "Evaluation" and its ScarNet row, "Known limits"). A test reads each
#: back from the card and the sha256 from the weights' sidecar: a new release of the weights must update both.
BUNDLED_MODEL_CARD = {
    "sha256": "b541c9a4d3294cc0ac5cb26d5d6d258a28335b19656ac218d2a2c432350fd621",
    "train_exams": "80",
    "centre": "University Hospital of Dijon, France",
    "val_exams": "20",
    "val_infarct": "13",
    "val_normal": "7",
    "myocardium_dice": "0.850",
    "scar_dice": "0.571",
    "mvo_dice": "0.470",
    # MVO drawn where the expert drew none, per exam (the card's "Known limits"): in this many of the val infarcts
    # without MVO ("of"), and 0.5 mL or more of it in how many of them.
    "mvo_in_infarcts_without": "5",
    "infarcts_without_mvo": "6",
    "mvo_in_infarcts_without_min": "1",
    # Over the 13 infarct exams: the limits over all 20 include the normal hearts, whose errors are near 0 and narrow
    # them; a page with scar on it needs the infarct exams' (the card's "How to read two columns").
    "scar_percent_bias": "+1.47",
    "scar_percent_loa": ("−14.9", "+17.8"),
    "normal_with_scar": "6/7",
    "normal_scar_ml": "0.76",
    "myocardium_larger_percent": "11",  # the model's myocardium against the experts' (val infarct exams)
}


def about_model_html(data: dict[str, Any]) -> str:
    """The page's "About the model" box: what the bundled weights were trained on, their measured accuracy and
    limits (:data:`BUNDLED_MODEL_CARD`), their use; for other weights, that their accuracy is not known here. "" for a
    report without a model run (a reader's labelmap)."""
    run = model_run_record(data)
    if not run:
        return ""
    weights = run.get("weights")
    sha = str(weights.get("sha256") or "") if isinstance(weights, dict) else ""
    use = ("Use", "research only, non-commercial (the weights were trained on EMIDEC, CC BY-NC-SA 4.0); not a "
                  "medical device, not for clinical diagnosis.")
    if sha != BUNDLED_MODEL_CARD["sha256"]:
        if isinstance(weights, dict) and sha:
            which = f"these weights ({_weights_text(weights)}), not the bundled ones"
        elif "weights" in run and not isinstance(weights, dict):
            which = "a model passed in (no weights file)"
        else:
            which = "weights this report does not record"
        items = [("Weights", f"this segmentation was made with {which}: their training and accuracy are not stated "
                             "here; see their own model card."), use]
    else:
        card = BUNDLED_MODEL_CARD
        low, high = card["scar_percent_loa"]
        items = [
            ("Trained on", f"{card['train_exams']} exams of the EMIDEC data set, all from one centre "
                           f"({card['centre']}), and synthetic images. Not tested on other centres, scanners or "
                           "sequences: expect lower accuracy there."),
            ("Measured accuracy", f"on the {card['val_exams']} EMIDEC validation exams ({card['val_infarct']} "
                                  f"infarct, {card['val_normal']} normal; not trained on, but the saved checkpoint was "
                                  "chosen on them, so the figures may be a little optimistic) against expert "
                                  "contours: myocardium Dice "
                                  f"{card['myocardium_dice']}, scar Dice {card['scar_dice']} (1 = the same contours); "
                                  f"scar % of the LV within {low} to {high} points of the experts' on the "
                                  f"{card['val_infarct']} infarct exams (95 % limits of agreement, mean "
                                  f"{card['scar_percent_bias']}); MVO Dice {card['mvo_dice']}, "
                                  "indicative only. Below the project's accuracy targets."),
            ("Limits", f"false scar in {card['normal_with_scar']} normal hearts (mean {card['normal_scar_ml']} "
                       "mL): read a few mL of scar as possibly none; small infarcts are the least reliable; the "
                       f"myocardium was drawn {card['myocardium_larger_percent']} % larger than the experts' on "
                       "average, so LV mass reads high and scar % a little low."),
            use,
        ]
    body = "".join(f"<li><b>{escape(label)}</b>: {escape(text)}</li>" for label, text in items)
    return ('<div class="about"><b>About the model</b> (ScarNet; figures from its model card, '
            f"scarnet/weights/MODEL_CARD.md)<ul>{body}</ul></div>")


#: The bullseye's captions (:data:`scarnet.bullseye.CAPTION_NAMES`) whose facts the page prints itself, left out of
#: its picture so that each is said once: the septum, the segment summary, how the angles were found and an apex not
#: imaged in the text beside it; the scar on QC-flagged slices under the totals; the intended use at the top. The
#: picture keeps its key (the dashed outline of scar only on QC-flagged slices) and its cautions that the picture
#: itself may read wrong (mirrored, turned, rings exchanged or empty, apical segments of a stack that may stop short of
#: the apex), as the warnings at the top of the page also say: a reader looking at the bullseye should not have to look
#: back to the top for them.
SAID_BESIDE_THE_BULLSEYE = ("septum", "summary", "angles", "apex", "qc", "intended-use")


#: The column of the segment and slice tables with the share of the circumference (of the rays from the LV centre,
#: :data:`~scarnet.transmurality.RAYS_PER_SLICE` a slice) with scar through more than half of the wall.
_OVER_50_HEADER = "Circumference > 50 % transmural"


#: A segment's mean transmurality band (:func:`scarnet.aha.transmurality_band`) as the table names it.
TRANSMURALITY_BAND_LABELS = ("0", "1–25", "26–50", "51–75", "76–100")


#: The segment table's transmurality of a segment whose scar is a speck (graded 0), explained under the table.
SPECK_TRANSMURALITY = "–*"


def transmurality_measured_slices(slices: Sequence[dict[str, Any]]) -> set[int]:
    """The indices of the report's slices whose transmurality was measured: at least half of their rays cross the wall
    (:func:`scarnet.transmurality.is_measured`) and they are not beyond the cavity. Their
    ``transmural_over_50_percent`` is a number; it is None on the others, as on a slice without myocardium."""
    return {s["index"] for s in slices if s.get("transmural_over_50_percent") is not None}


def scar_not_measured(segment: dict[str, Any], slices: Sequence[dict[str, Any]]) -> bool:
    """Whether a segment has scar but none of it lies on a slice whose transmurality was measured (its scar only on
    slices where fewer than half of the rays cross the wall, a ring broken or mostly missing): the segment's rays on its
    other slices meet no scar, so its mean transmurality is None, which is not "no ray meets scar where it was looked
    for". ``scar_slices`` names the segment's slices with scar; a report stored before it was recorded: the segment's
    slices that have scar (an upper bound, so a segment is called not measured only where none of those was)."""
    if not segment.get("scar_ml"):
        return False
    with_scar = {s["index"] for s in slices if (s.get("scar_ml") or 0) > 0}
    where = segment.get("scar_slices") or [k for k in segment.get("slices") or [] if k in with_scar]
    return not set(where) & transmurality_measured_slices(slices)


def scar_depth_not_measured(segment: dict[str, Any], slices: Sequence[dict[str, Any]]) -> bool:
    """Whether the segment table shows "–" in both of its columns of how deep the scar reaches (Transmurality and
    :data:`_OVER_50_HEADER`) for a segment graded 1 or more: its scar lies only on slices where transmurality is not
    measured (:func:`scar_not_measured`), so no ray met it and its mean transmurality is None. Its rays on its other
    slices give a share with scar through more than half of the wall, 0 %, which is true of those rays but reads as
    "no transmural scar" beside a graded scar that was not measured. A speck graded 0 is left out (the transmurality
    column's :data:`SPECK_TRANSMURALITY`); a segment whose scar was measured keeps its figures, "0 %" included. The
    CSV and JSON keep the raw figures."""
    if segment.get("scar_ml") and segment.get("scar_extent_score") == 0:
        return False
    return segment.get("scar_transmurality_mean_percent") is None and scar_not_measured(segment, slices)


def segment_transmurality_text(segment: dict[str, Any], slices: Sequence[dict[str, Any]]) -> str:
    """A segment's mean transmural extent of scar and its band, "62 % (51–75)"; "0 %" where its rays were measured
    and none meets scar, or it has no scar (a ray at its edge may graze a neighbour's); "–" where they were not (the
    apex, a segment without slices, a segment whose scar lies only on slices where transmurality is not measured:
    :func:`scar_depth_not_measured`, ``slices`` being the report's) or a report stored before the figure was recorded.

    :data:`SPECK_TRANSMURALITY` for a segment with scar graded 0 (under :data:`~scarnet.aha.MIN_GRADED_SCAR_PERCENT`
    of it: a few voxels, which the grade does not call an enhanced segment): a speck one ray wide that crosses the
    wall averages 100 % over its rays with scar, and "85 % (76–100)" beside it reads as a transmural, non-viable
    segment. The page leaves it out; the CSV and JSON keep the figure (``scar_transmurality_mean_percent``) for
    analysts."""
    if "scar_transmurality_mean_percent" not in segment or segment.get("transmural_over_50_percent") is None:
        return "–"
    if segment.get("scar_ml") and segment.get("scar_extent_score") == 0:
        return SPECK_TRANSMURALITY
    if scar_depth_not_measured(segment, slices):
        return "–"
    mean = segment["scar_transmurality_mean_percent"]
    if mean is None or not segment.get("scar_ml"):
        return "0 %"
    return f"{percent_text(mean, transmurality_band)} ({TRANSMURALITY_BAND_LABELS[transmurality_band(mean)]})"


def _flagged_scar_line(data: dict[str, Any]) -> str | None:
    """How much of the scar lies on slices with QC flags, rounded as the page rounds (the terminal's
    :func:`scarnet.quantify.flagged_scar_text` keeps two decimals); None when none does."""
    on_flagged, indices = scar_on_flagged_slices(data.get("slices") or [])
    total = (data.get("total") or {}).get("scar_ml") or 0.0
    if not indices or total <= 0:
        return None
    percent = 100.0 * on_flagged / total
    share = "all of it" if on_flagged >= total - 1e-6 else f"{whole_percent_text(percent)} %"
    return (f"{amount_text(on_flagged)} of the {amount_text(total)} mL of scar ({share}) is on slices with QC flags "
            f"({'slice' if len(indices) == 1 else 'slices'} {', '.join(map(str, indices))}): read them before "
            "reporting it")




def unreviewed_model(data: dict[str, Any]) -> bool:
    """Whether a report measures the model's contours as it drew them, which no reader has corrected: the model's
    own report, or the Slicer module's re-measure of its segmentation without edits (:func:`scarnet.summary.made_from`
    "ScarNet model" or "segmentation"); False for a segmentation a reader drew or edited, or a labelmap's."""
    from .summary import made_from

    return made_from(data) in ("ScarNet model", "segmentation")


def caution_lines(data: dict[str, Any]) -> list[str]:
    """What a reader must not take from an unreviewed model segmentation's totals at face value, one line each, under
    the page's lead: a small scar total (under :data:`SMALL_SCAR_ML`), which a normal heart's false scar can make, and
    any MVO (the model's MVO is the least accurate of its labels). None for a segmentation a reader drew or edited."""
    if not unreviewed_model(data):
        return []
    total = data.get("total") or {}
    card = BUNDLED_MODEL_CARD
    lines = []
    if 0 < (total.get("scar_ml") or 0) < SMALL_SCAR_ML:
        lines.append(f"Small scar total (under {SMALL_SCAR_ML:g} mL): the model also finds some scar in most normal "
                     f"hearts (the bundled weights: {card['normal_with_scar']} on validation, mean "
                     f"{card['normal_scar_ml']} mL). It may be no scar, or a small infarct: confirm it on the images "
                     "before reporting it.")
    if (total.get("mvo_ml") or 0) > 0:
        lines.append(f"MVO as the model draws it is indicative only (the bundled weights: MVO Dice {card['mvo_dice']} "
                     f"on validation, and MVO drawn in {card['mvo_in_infarcts_without']} of the "
                     f"{card['infarcts_without_mvo']} validation infarcts without any, 0.5 mL or more in "
                     f"{card['mvo_in_infarcts_without_min']}): confirm it on the images before reporting it.")
    return lines


def _change_text(change: float, digits: int) -> str:
    """A change as the page rounds it, signed: "+3.0", "−1.2"; "0.0" for none that shows."""
    text = f"{change:+.{digits}f}"
    return f"{0:.{digits}f}" if float(text) == 0 else text.replace("-", "\u2212")


def _points_text(change: float | None) -> str:
    """A change of a percentage in percentage points: whole numbers as the page's percentages, with a decimal where
    a change would read as none ("−0.4")."""
    if change is None:
        return "–"
    if (whole := _change_text(change, 0)) != "0":
        return whole
    return "0" if (tenths := _change_text(change, 1)) == "0.0" else tenths


def before_correction_text(data: dict[str, Any]) -> str | None:
    """The line under the headline of a corrected report that recorded the model's totals
    (:func:`scarnet.quantify.before_correction`): the model's figures before correction, and the change; None for
    any other report (the model's own, a reader's, an older corrected one)."""
    from .summary import made_from

    before = before_correction(data)
    total = data.get("total") or {}
    if before is None or made_from(data) != "edited segmentation":
        return None
    percent = before.get("scar_percent")
    line = (f"Before correction (the model's segmentation): scar {amount_text(before['scar_g'])} g, "
            f"{whole_percent_text(percent)} % of the LV myocardial mass; LV myocardium "
            f"{amount_text(before['myocardium_g'])} g.")
    if not all(isinstance(total.get(key), (int, float)) for key in ("scar_g", "myocardium_g")):
        return line
    now = total.get("scar_percent")
    points = now - percent if isinstance(now, (int, float)) and percent is not None else None
    return (f"{line} Change with the correction: scar {_change_text(total['scar_g'] - before['scar_g'], 1)} g "
            f"({_points_text(points)} percentage points), LV myocardium "
            f"{_change_text(total['myocardium_g'] - before['myocardium_g'], 1)} g.")


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
        augmentation = (", test-time augmentation over turns and mirrors" if inference.get("tta_mode") == "dihedral"
                        else ", flip test-time augmentation" if inference.get("tta") else "")
        parts[-1] += f" · model: {escape(weights_text)}, {escape(str(inference.get('device', '')))}{augmentation}"
    elif isinstance(model_run := data.get("model_run"), dict) and isinstance(model_run.get("weights"), dict):
        # A labelmap quantified with the report of the model run it came from (scarnet quantify --model-report).
        parts[-1] += escape(f" · from a model run: {_weights_text(model_run['weights'])}, "
                            f"scarnet {model_run.get('scarnet_version') or '?'}")
    parts[-1] += f" · scarnet {escape(str(version or 'version not recorded'))}"
    parts[-1] += "</p>"
    parts.append(f'<p class="status">{escape(review_status_text(data))}</p>')
    parts.append(f'<p class="disclaimer">{escape(INTENDED_USE)}</p>')
    warnings = [*report_warnings(data), *(data.get("segments_left_out") or [])]
    names = tuple(str(name) for name in (data.get("input"), data.get("labelmap"), source) if name)
    parts += _warnings_html([str(message) for message in warnings], names)

    # Totals as an LGE report gives them: the scar's mass and its share of the LV myocardial mass first.
    parts.append("<h2>Totals</h2>")
    mvo = mvo_percent(total["mvo_ml"], total["myocardium_ml"])
    density = (conventions := data.get("conventions") or {}).get("myocardium_density_g_per_ml",
                                                                  MYOCARDIUM_DENSITY_G_PER_ML)
    mvo_g = total["mvo_ml"] * density if isinstance(density, (int, float)) and total["mvo_ml"] is not None else None
    parts.append(f'<p class="lead"><b>Scar (LGE): {_amount(total["scar_g"], "g")}, '
                 f'{_percent(total["scar_percent"])} of the LV myocardial mass</b> '
                 f'({_amount(total["myocardium_g"], "g")})'
                 + ("" if mvo is None else "; no MVO" if not total["mvo_ml"] else
                    f"; MVO {_percent(mvo)} of the LV myocardial mass") + ".</p>")
    if line := before_correction_text(data):
        parts.append(f"<p>{escape(line)}</p>")
    parts += [f'<p class="qc">{escape(line)}</p>' for line in caution_lines(data)]
    rows = [["Scar (LGE, MVO included)", _amount(total["scar_g"]), _percent(total["scar_percent"]),
             _amount(total["scar_ml"])],
            ["MVO (microvascular obstruction)", _amount(mvo_g), _percent(mvo), _amount(total["mvo_ml"])],
            ["LV myocardium", _amount(total["myocardium_g"]), "", _amount(total["myocardium_ml"])],
            ["LV blood pool on these slices (not an LV volume)", "", "", _amount(total["lv_blood_pool_ml"])]]
    parts.append(_table(["", "Mass g", "% of LV myocardial mass", "Volume mL"], rows, {1, 2, 3}))
    facts = [escape(f"Slices with myocardium / with scar: {total['slices_with_myocardium']} / "
                    f"{total['slices_with_scar']}")]
    if total.get("scar_circumference_percent") is not None:
        facts.append(f"LV circumference with scar {_percent(total['scar_circumference_percent'])}, with scar through "
                     f"more than half of the wall {_percent(total['transmural_over_50_percent'])}")
    if flagged := _flagged_scar_line(data):  # a normal heart's false scar, all on flagged slices, reads as an infarct
        facts.append(f'<span class="qc">Scar on slices with QC flags: {escape(flagged)}</span>')
    parts.append('<ul class="plain">' + "".join(f"<li>{fact}</li>" for fact in facts) + "</ul>")
    parts += threshold_check_html(data)

    if data.get("segments") is not None:
        parts.append("<h2>AHA segments</h2>")
        parts.append('<div class="aha">' + bullseye_svg(data, f"Scar per AHA segment ({made_from})",
                                                        leave_out=SAID_BESIDE_THE_BULLSEYE) + "<div>")
        order = data.get("base_apex") or {}
        summary = f"{summary_text(data['segment_summary'])}. " if data.get("segment_summary") else ""
        apex = f" {APEX_NOT_IMAGED[:1].upper()}{APEX_NOT_IMAGED[1:]}." if apex_not_imaged(data["segments"]) else ""
        parts.append(f'<p class="muted">{escape(summary)}'
                     f"{escape(septum_text(data.get('septal_span_deg')))}. Basal end: "
                     f"{escape(basal_end_text(order))}; angles from the {escape(str(data.get('segment_angles_from')))}."
                     f"{escape(apex)}{escape(rv_points_text(data.get('rv_insertion_ras_mm')))}</p>")
        if territories := territory_text(data["segments"], unreviewed=unreviewed_model(data),
                                         scar_total_ml=total.get("scar_ml")):
            parts.append(f'<p class="muted">{escape(territories)}</p>')
        parts.append("</div></div>")
        qc_only = dict(qc_only_scar_slices(data))  # segment number: its slices with scar, all flagged
        rows = []
        # Each segment's once: the notes under the table ask again which show a speck or "–" beside scar.
        transmurality_texts: list[str] = []
        depth_not_measured: list[bool] = []
        # An apex without slices is not imaged: "–", not 0 mL measured.
        for s in data["segments"]:
            imaged = bool(s["slices"])
            transmurality_texts.append(segment_transmurality_text(s, slices))
            depth_not_measured.append(scar_depth_not_measured(s, slices))
            row = [escape(f"{s['segment']} {s['name']}"), escape(slice_list_text(s["slices"], dash="–") or "–"),
                   _amount(s["myocardium_ml"] if imaged else None), _amount(s["scar_ml"] if imaged else None),
                   escape(percent_text(s["scar_percent"])),
                   "–" if s["scar_extent_score"] is None else escape(str(s["scar_extent_score"])),
                   escape(transmurality_texts[-1]),
                   "–" if depth_not_measured[-1] else _percent(s["transmural_over_50_percent"]),
                   _amount(s["mvo_ml"] if imaged else None)]
            if qc_only:
                where = qc_only.get(s["segment"])
                row.append("" if where is None else f'<span class="qcseg">slice{"s" if len(where) > 1 else ""} '
                           f'{escape(slice_list_text(where, dash="–"))}</span>')
            rows.append(row)
        parts.append(_table(["Segment", "Slices", "Myocardium mL", "Scar mL", "Scar %", "Grade 0–4",
                             "Transmurality, mean (band)", _OVER_50_HEADER,
                             "MVO mL"] + (["Scar only on QC-flagged"] if qc_only else []),
                            rows, {2, 3, 4, 5, 6, 7, 8}, names=True))
        specks = SPECK_TRANSMURALITY in transmurality_texts
        # "–" beside scar, in both depth columns, in a segment whose rays were measured on other slices
        # (scar_depth_not_measured); the apex's "–" needs no word (none of its slices is measured: a slice beyond the
        # cavity cuts the wall across).
        unmeasured = any(s.get("transmural_over_50_percent") is not None and not_measured
                         for s, not_measured in zip(data["segments"], depth_not_measured))
        parts.append('<p class="muted">Scar %: of the segment\'s myocardium. Grade: that share on Kim\'s 0–4 scale '
                     "(0: none or under 1 %, 1: 1–25, 2: 26–50, 3: 51–75, 4: 76–100 %). Transmurality: how much of "
                     "the wall's thickness the scar fills where there is scar, averaged over the segment's rays with "
                     "scar, with its band (0, 1–25, 26–50, 51–75, 76–100 %): how deep the scar reaches, not how much "
                     "of the segment it takes (Scar % and Grade say that: a small scar through the whole wall reads "
                     "76–100 % in a segment graded 1); \"0 %\": no ray meets scar"
                     + (f"; {escape(SPECK_TRANSMURALITY)}: a speck of scar, under 1 % of the segment (grade 0), too "
                        "little to say how deep scar reaches in it (the CSV and JSON keep the figure)" if specks
                        else "") + ". "
                     f"{_OVER_50_HEADER}: the share of the segment's circumference (of its rays from the LV centre) "
                     "with scar through more than half of the wall."
                     + (" In both columns, \"–\" beside scar: the segment's scar lies only on slices where "
                        "transmurality is not measured (fewer than half of the rays from the LV centre cross the wall "
                        "there, as where the ring is broken), not \"no transmural scar\"." if unmeasured else "")
                     + (" <span class=\"qcseg\">Scar only on QC-flagged slices</span> (dashed blue on the bullseye): "
                        "read those slices before the segment's figures." if qc_only else "") + "</p>")

    parts.append("<h2>Per slice</h2>")
    with_dicom = any(s.get("dicom") for s in slices)
    with_level = any(s.get("level") for s in slices)
    with_qc = bool(data.get("qc")) or any(s.get("qc_flags") for s in slices)
    header = (["Slice", "Position mm"] + (["DICOM image"] if with_dicom else []) + (["Level"] if with_level else [])
              + ["Myocardium mL", "Scar mL", "Scar %", "MVO mL", _OVER_50_HEADER]
              + (["QC flags"] if with_qc else []))
    rows = []
    # From the base to the apex, as readers go through a short-axis stack, when the report knows which end is basal
    # (the slice index still says the image's order); in the image's order otherwise.
    basal_last = (data.get("base_apex") or {}).get("basal_end") == "last"
    for s in reversed(slices) if basal_last else slices:
        rows.append([escape(str(s["index"])), _number(s["position_mm"], 1),
                     *([escape(dicom_image_name(s.get("dicom")))] if with_dicom else []),
                     *([escape(s.get("level") or "–")] if with_level else []),
                     _amount(s["myocardium_ml"]), _amount(s["scar_ml"]), _percent(s["scar_percent"]),
                     _amount(s["mvo_ml"]), _percent(s.get("transmural_over_50_percent")),
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

    parts.append(about_model_html(data))
    # A printout is signed by whoever checked (and corrected) the contours.
    parts.append("<h2>Review</h2><p>Contours checked (and corrected) by: ______________________ &nbsp; Date: "
                 "______________ &nbsp; Signature: ______________________</p>")
    parts.append("<h2>What the figures mean</h2><ul>")
    parts += [f"<li><b>{escape(term)}</b>: {escape(meaning)}</li>"
              for term, meaning in plain_conventions(data, made_from)]
    parts.append("</ul>")
    # The definitions an analyst needs to reproduce the figures: folded on screen, left out of the printout.
    parts.append('<details class="analysts"><summary>Technical definitions (for analysts)</summary><ul>')
    for key in ("scar", "myocardium", "position_mm", "transmurality", "level", "segments"):
        if key in conventions:
            parts.append(f"<li><b>{escape(key)}</b>: {escape(str(conventions[key]))}</li>")
    parts.append(f"<li><b>mass</b>: volume × {escape(str(density))} g/mL</li>")
    parts.append("</ul></details></body></html>\n")
    return "\n".join(parts)


#: The methods of a report's ``threshold_check`` (:mod:`scarnet.threshold_check`) as the page names them, in order:
#: key, short name, what the threshold is.
THRESHOLD_METHODS = ((N_SD_KEY, f"{N_SD}-SD", f"remote mean + {N_SD} SD"),
                     ("fwhm", "FWHM", "half-way from the remote mean to the scar's maximum"))

#: The columns of the page's table of the threshold methods (:func:`threshold_check_html`).
THRESHOLD_TABLE_HEADER = ["", "Threshold (grey level)", "Scar mL", "Scar % of LV myocardium",
                          "Of the segmented scar, above the threshold", "Of the threshold's scar, segmented as scar"]


def _grey_level(value: Any) -> str:
    """A threshold or remote level in the image's grey levels, four significant digits: "123.4"; "–" for none."""
    return escape(f"{value:.4g}") if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def _figure(method: dict[str, Any], key: str) -> float | None:
    """A number of a threshold method's figures, None where the report lacks it (or holds something else)."""
    value = method.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def threshold_check_html(data: dict[str, Any]) -> list[str]:
    """The page's comparison with the signal-threshold methods (a report's ``threshold_check``,
    :mod:`scarnet.threshold_check`): a heading, a small table of the scar that 5-SD and FWHM find in the same
    myocardium beside the segmentation's own, and a line saying what the remote is and that the labels are not
    changed. Nothing for a report without the block (no image given, or a report of an older version)."""
    block = data.get("threshold_check")
    if not isinstance(block, dict):
        return []
    total = data.get("total") or {}
    parts = ["<h2>Scar by signal threshold in the same myocardium (for comparison)</h2>"]
    rows = [["This segmentation (the totals above)", "", _amount(total.get("scar_ml")),
             _percent(total.get("scar_percent")), "", ""]]
    not_measured: dict[str, list[str]] = {}  # reason: the methods not measured for it
    for key, name, definition in THRESHOLD_METHODS:
        method = block.get(key)
        if not isinstance(method, dict):
            continue
        if "not_measured" in method:
            not_measured.setdefault(str(method["not_measured"]), []).append(name)
            continue
        rows.append([escape(f"{name} ({definition})"), _grey_level(method.get("threshold")),
                     _amount(_figure(method, "scar_ml")), _percent(_figure(method, "scar_percent")),
                     _percent(_figure(method, "labelled_scar_above_threshold_percent")),
                     _percent(_figure(method, "threshold_scar_labelled_percent"))])
    if len(rows) > 1:
        parts.append(_table(THRESHOLD_TABLE_HEADER, rows, {1, 2, 3, 4, 5}))
    remote = block.get("remote") if isinstance(block.get("remote"), dict) else {}
    about = [f"{escape(str(remote['voxels']))} voxels"] if remote.get("voxels") is not None else []
    if remote.get("mean") is not None:
        about.append(f"mean {_grey_level(remote.get('mean'))}, SD {_grey_level(remote.get('sd'))}")
    parts.append('<p class="muted">'
                 + "".join(f"{escape(line)} " for line in [
                     *(f"{' and '.join(names)} not measured: {reason}." for reason, names in not_measured.items())])
                 + "Remote (the reference of both thresholds): the healthy myocardium of this segmentation, all slices"
                 + (f" ({', '.join(about)})" if about else "")
                 + ". A threshold's scar is the myocardium brighter than it, plus the segmented MVO (its dark core is "
                   "below any threshold). The labels are not changed: these figures are for comparison with a "
                   "threshold-based report, not the result; scar the segmentation missed stays in the remote, where "
                   "it widens the SD and 5-SD then finds less.</p>")
    return parts


def plain_conventions(data: dict[str, Any], made_from: str = "ScarNet model") -> list[tuple[str, str]]:
    """What the page's terms mean, one sentence each in a reader's words (the technical definitions are folded
    under them): scar %, mass, transmural, level, segments and grade, the scar method of a model's segmentation,
    and the rounding (:data:`~scarnet.bullseye.ROUNDING`)."""
    density = (data.get("conventions") or {}).get("myocardium_density_g_per_ml", MYOCARDIUM_DENSITY_G_PER_ML)
    out = [("Scar %", "the share of the LV myocardium that is scar (late gadolinium enhancement, MVO included); by "
                      "mass or by volume it is the same share."),
           ("Mass", f"volume × {density} g/mL, the density of myocardium."),
           ("Transmural", f"how much of the wall's thickness the scar fills, measured along {RAYS_PER_SLICE} lines "
                          "from the LV centre on each slice; where scar fills more than half of the wall, "
                          "dysfunctional myocardium is unlikely to recover after revascularisation (Kim et al. 2000; "
                          "ischaemic scar)."),
           ("Level", "basal, mid and apical are thirds of the short-axis slices from the base to the last slice with "
                     "an LV cavity; apex: the slices beyond the cavity."),
           ("Segments", "the AHA 17-segment model (6 basal, 6 mid, 4 apical, 17 the apex), placed from the RV "
                        "insertion point(s) marked on the images; each is graded 0–4 by the share of it that is "
                        "scar.")]
    if made_from == "ScarNet model" or data.get("inference"):
        out.append(("Scar method", "enhanced myocardium as the model segments it (trained on expert contours; then "
                                   "as a reader corrected it, where the status line says so), not an n-SD or FWHM "
                                   "threshold: the figures are not interchangeable with threshold-based ones."))
    out.append(("Rounding", f"{ROUNDING}; the JSON and CSV reports keep every digit. The contours' own uncertainty "
                            "(the model's, or a reader's) is larger than the last digit shown."))
    return out


__all__ = ["BUNDLED_MODEL_CARD", "SAID_BESIDE_THE_BULLSEYE", "SMALL_SCAR_ML", "SPECK_TRANSMURALITY",
           "about_model_html", "caution_lines", "plain_conventions", "report_html", "series_name", "series_text",
           "scar_depth_not_measured", "scar_not_measured", "segment_transmurality_text", "territory_text",
           "threshold_check_html", "transmurality_measured_slices", "unreviewed_model", "warning_headline"]
