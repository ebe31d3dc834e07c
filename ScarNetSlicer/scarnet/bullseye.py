"""The AHA bullseye of a report's segments as an SVG picture (plain text: no plotting library needed).

The usual polar map (Cerqueira et al., Circulation 2002;105:539-42): the apex in the middle, the
apical ring (13-16) inside, then mid (7-12), basal (1-6) outside; anterior at the top, septum on
the left, lateral wall on the right, inferior at the bottom, and the apex (17, the myocardium beyond the
cavity) as the disc in the middle. Each segment is coloured by its scar grade
(``scar_extent_score``: 0 none or under 1 %, 1 1-25 %, 2 26-50 %, 3 51-75 %, 4 76-100 % of its myocardium) and
labelled with its number and scar %; a segment without myocardium is grey and labelled "–" (the apex, where
no slice lies beyond the cavity). A report stored before the apex was reported has 16 segments: its disc is
drawn empty, dashed. A segment with scar (graded 1 or more) whose scar lies only on slices with QC flags
(:func:`qc_only_segments`) is outlined in dashed blue, and a caption names it: read those slices first. A caption
says how wide the septum was taken (:func:`septum_text`): the map's segments are drawn equal whatever it was. When
the report warns that the stack may stop short of the apex (:func:`scarnet.qc.apical_coverage_warning`), a caption
says that the apical segments may have scar beyond the last slice (:data:`STACK_SHORT_CAPTION`): their grades count
only the slices there are, and a white apical ring must not read as "no apical scar". A page
that prints some of the captions' facts itself (:mod:`scarnet.report_html`) leaves those captions out
(``leave_out``), so that each is said once.

Figures are rounded for a reader as :data:`ROUNDING` says (:func:`amount_text`, :func:`whole_percent_text`); the
JSON and CSV keep them whole.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Collection
from typing import Any, Callable
from xml.sax.saxutils import escape as _xml_escape

from .aha import (
    ANGLES_FROM_DISPLAY,
    ANGLES_FROM_PATIENT_AXES,
    APEX_SEGMENT,
    GIVEN_BASAL_END_WARNING_START,
    LEVELS,
    MIN_GRADED_SCAR_PERCENT,
    extent_score,
    missing_levels,
)
from .qc import APICAL_COVERAGE_WARNING_START
from .quantify import INTENDED_USE, MIRROR_WARNING, Report, report_warnings, scar_on_flagged_slices
from .text import visible

#: How the page and the picture round figures for a reader; the JSON and CSV keep every digit. The model's
#: repeatability does not support more (its card: scar volume moves by a median 1.6 % with the crop moved by half a
#: pixel, scar % agrees with the experts' within about ±13 points).
ROUNDING = ("masses to 0.1 g, volumes to 0.1 mL, percentages to whole numbers (with a decimal where a grade or band "
            "would otherwise read wrong)")
#: Outline of a segment whose scar lies only on slices with QC flags (:func:`qc_only_segments`).
QC_OUTLINE_COLOUR = "#1f4fbf"
#: Fill colour of each scar grade, 0 to 4 (white to dark red), and of a segment without myocardium.
GRADE_COLOURS = ("#ffffff", "#fde0c5", "#f59e72", "#d9452b", "#8c1010")
NO_MYOCARDIUM_COLOUR = "#c8c8c8"
GRADE_LABELS = ("0: none (<1 %)", "1: 1-25 %", "2: 26-50 %", "3: 51-75 %", "4: 76-100 %")
#: Ring radii (fraction of the outer radius): apex cap, apical, mid, basal.
_RADII = (0.25, 0.5, 0.75, 1.0)
#: Centre angle (degrees, counter-clockwise from the right, as drawn) of the first segment of each
#: ring, and the segments' width. Segment 1 and 7 are centred at the top (anterior), then the
#: numbers run counter-clockwise: septum on the left, inferior at the bottom, lateral on the right.
_RINGS = {"basal": (1, 90.0, 60.0, _RADII[2], _RADII[3]), "mid": (7, 90.0, 60.0, _RADII[1], _RADII[2]),
          "apical": (13, 90.0, 90.0, _RADII[0], _RADII[1])}
_WIDTH = 460  # picture width (px)
#: The longest title kept whole (at 9 px type it fills the width); a longer one loses its middle.
_TITLE_MAX_CHARACTERS = 85
_OUTER = 150.0  # the map's radius (px)
_CENTRE = (_WIDTH / 2, 200.0)  # below the title and the "anterior" label
_LEGEND_Y = _CENTRE[1] + _OUTER + 34
_CAPTION_Y = _LEGEND_Y + 22  # the septum, the summary, how the angles were found (without orientation), the use
_CAPTION_STEP = 14
#: The longest caption kept on one row (at 9 px type it fills the width); a longer one runs on to the next.
_CAPTION_MAX_CHARACTERS = 84


def escape(text: str) -> str:
    """``text`` for the SVG: control characters from a name (which XML cannot hold: the file would not open)
    and bidirectional overrides made visible (:func:`scarnet.text.visible`), then XML-escaped."""
    return _xml_escape(visible(text))


def _height(captions: int, minimum: int = 4) -> float:
    """The picture's height with room for ``captions`` rows of caption, at least ``minimum`` (four: the usual
    picture's, so that a standalone picture keeps its size from one report to the next)."""
    return _CAPTION_Y + (max(captions, minimum) - 1) * _CAPTION_STEP + 12


def _header(height: float) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height:.0f}" '
            f'viewBox="0 0 {_WIDTH} {height:.0f}" font-family="sans-serif">')


def segment_geometry(number: int) -> tuple[float, float, float, float]:
    """(start angle, end angle in degrees counter-clockwise from the right as drawn, inner and outer
    radius as a fraction of the map's) of AHA segment ``number`` (1-17) on the bullseye; the apex (17) is
    the whole disc in the middle: 0 to 360°, radii 0 to the apical ring's."""
    if number == APEX_SEGMENT:
        return 0.0, 360.0, 0.0, _RADII[0]
    for first, centre, width, inner, outer in _RINGS.values():
        count = round(360 / width)
        if first <= number < first + count:
            middle = centre + (number - first) * width
            return middle - width / 2, middle + width / 2, inner, outer
    raise ValueError(f"no AHA segment {number} on the bullseye (1-17)")


def amount_text(value: float | None) -> str:
    """A mass (g) or volume (mL) as the page shows it (:data:`ROUNDING`): "18.6"; "<0.1" for a speck that would read
    as none; "–" for None."""
    if value is None:
        return "–"
    return "<0.1" if 0 < value < 0.05 else f"{value:.1f}"


def whole_percent_text(value: float | None) -> str:
    """A percentage as the page shows it (:data:`ROUNDING`), without the "%": "13"; "<1" and ">99" for what is
    neither none nor all; "–" for None."""
    if value is None:
        return "–"
    shown = f"{value:.0f}"  # rounds half to even: 0.5 reads "0", 99.5 "100"
    if value > 0 and shown == "0":
        return "<1"
    if value < 100 and shown == "100":
        return ">99"
    return shown


def percent_text(scar_percent: float | None, grade: Callable[[float], int | None] = extent_score) -> str:
    """A segment's scar % with as few decimals as keep its grade, and keep a speck of scar from reading as none:
    "13 %", "25.3 %" (grade 2, not "25 %"), "0.3 %" (grade 0, under 1 %, but not "0 %"); "<0.01 %", "<1 %" or
    ">25 %" when even two decimals would not; "–" for None. ``grade``: the grading whose bands the text keeps
    (:func:`scarnet.aha.extent_score`; :func:`scarnet.aha.transmurality_band` for a transmurality)."""
    if scar_percent is None:
        return "–"
    grading = grade
    grade = grading(scar_percent)
    for decimals in (0, 1, 2):
        shown = round(scar_percent, decimals)
        if grading(shown) == grade and (shown > 0) == (scar_percent > 0):
            return f"{shown:.{decimals}f} %"
    if scar_percent < 0.01:
        return "<0.01 %"
    if scar_percent < MIN_GRADED_SCAR_PERCENT:
        return f"<{MIN_GRADED_SCAR_PERCENT:.0f} %"
    return f">{25 * math.floor(scar_percent / 25):.0f} %"


def septum_text(septal_span_deg: float | None) -> str:
    """How a report's septum was sized (its ``septal_span_deg``): between the two RV insertion points, or
    120° from the anterior one."""
    if septal_span_deg is None:
        return "Septum: 120° from the anterior RV insertion point (AHA equal segments)"
    return f"Septum: {septal_span_deg:.0f}° between the anterior and inferior RV insertion points"


def summary_text(summary: dict[str, int]) -> str:
    """A report's :meth:`~scarnet.quantify.Report.segment_summary` in words."""
    with_myocardium = summary["scar_score_max"] // 4
    return (f"Scar (≥1 %) in {summary['segments_with_scar']} of {with_myocardium} segments (in more than half of the "
            f"segment in {summary['segments_over_50_percent']}); scar score {summary['scar_score']} of "
            f"{summary['scar_score_max']} (sum of the 0-4 grades)")


def basal_end_text(order: dict[str, Any] | None) -> str:
    """Which end is basal and what said so, for a caption: "the last slice, as given", "the first slice (from the
    patient axes)"; "?" parts where a report does not say."""
    order = order or {}
    source = order.get("from")
    said = ", as given" if source == "given" else f" (from the {source})" if source else ""
    return f"the {order.get('basal_end', '?')} slice{said}"


def qc_only_segments(data: dict[str, Any]) -> list[int]:
    """The segments of a report (its dict form) with scar (graded 1 or more) all of which lies on slices with QC
    flags: read those slices before the segment's figures. Each segment's ``scar_slices`` say where its scar is; a
    report stored before they were recorded names a segment only where every one of its slices with scar (anywhere
    on the slice) is flagged, which may leave out one that has its own scar only there."""
    return [number for number, _ in qc_only_scar_slices(data)]


def qc_only_scar_slices(data: dict[str, Any]) -> list[tuple[int, list[int]]]:
    """:func:`qc_only_segments` with where each one's scar lies, as (segment number, its slices with scar, all
    flagged) in the report's order of segments: a page that names those slices need not find them again."""
    slices = data.get("slices") or []
    flagged = {s.get("index") for s in slices if s.get("qc_flags")}
    if not flagged:
        return []
    with_scar = {s.get("index") for s in slices if (s.get("scar_ml") or 0) > 0}
    out = []
    for segment in data.get("segments") or []:
        if (segment.get("scar_extent_score") or 0) < 1:
            continue
        where = segment.get("scar_slices")
        if where is None:  # an older report
            where = [k for k in segment.get("slices") or [] if k in with_scar]
        if where and all(k in flagged for k in where):
            out.append((int(segment["segment"]), where))
    return out


def apex_not_imaged(segments: list[dict[str, Any]] | None) -> bool:
    """True when segment 17 (the apex, the slices beyond the cavity) has no slice: not imaged, not "0 mL"."""
    return any(s.get("segment") == APEX_SEGMENT and not s.get("slices") for s in segments or [])


#: How tables and captions name an apex without slices (segment 17 of :func:`apex_not_imaged`).
APEX_NOT_IMAGED = "17 apex: not imaged (no slice beyond the LV cavity), so not assessed"


def _point(cx: float, cy: float, radius: float, angle_deg: float) -> tuple[float, float]:
    angle = math.radians(angle_deg)
    return cx + radius * math.cos(angle), cy - radius * math.sin(angle)  # SVG's y grows downwards


def _sector_path(cx: float, cy: float, start: float, end: float, inner: float, outer: float) -> str:
    x0, y0 = _point(cx, cy, outer, start)
    x1, y1 = _point(cx, cy, outer, end)
    x2, y2 = _point(cx, cy, inner, end)
    x3, y3 = _point(cx, cy, inner, start)
    large = 1 if end - start > 180 else 0
    # Outer arc counter-clockwise as drawn (SVG sweep 0), inner arc back clockwise (sweep 1).
    return (f"M {x0:.2f} {y0:.2f} A {outer:.2f} {outer:.2f} 0 {large} 0 {x1:.2f} {y1:.2f} "
            f"L {x2:.2f} {y2:.2f} A {inner:.2f} {inner:.2f} 0 {large} 1 {x3:.2f} {y3:.2f} Z")


#: scarnet.aha.rv_side_warning's message: an anterior RV insertion point across the LV from the RV's side; and
#: what the picture's caption and the page's warning headline (:mod:`scarnet.report_html`) say of it.
RV_SIDE_WARNING = re.compile(r"RV insertion point lies (?P<deg>\d+) degrees round the LV from the RV's side")
RV_SIDE_CAPTION = ("RV insertion point {deg}° round from the RV's side: RAS and LPS mixed up? The segments would be "
                   "turned")


#: The caption of a report warned that its stack may stop short of the apex
#: (:func:`scarnet.qc.apical_coverage_warning`): the apical segments (13-16) and the apex (17) count only the slices
#: there are, so one graded 0 is not scar-free.
STACK_SHORT_CAPTION = "Stack may stop short of the apex: segments 13-17 may have scar beyond the last slice"


#: The names (``data-caption``) of the captions :func:`bullseye_svg` may draw under the picture, in their order.
CAPTION_NAMES = ("septum", "summary", "angles", "mirror", "rv-side", "basal-end", "qc", "qc-segments", "stack-short",
                 "apex", "levels", "intended-use")


def bullseye_svg(report: Report | dict[str, Any], title: str = "Scar per AHA segment", *,
                 leave_out: Collection[str] = ()) -> str:
    """The bullseye of a report's segments as an SVG document; without segments, a picture that says why not.

    ``report``: a :class:`~scarnet.quantify.Report` or its :meth:`~scarnet.quantify.Report.to_dict` form
    (as Slicer keeps it). ``leave_out``: captions (of :data:`CAPTION_NAMES`) not to draw, because the page around
    the picture says them already; the picture is then only as tall as the captions it keeps.
    """
    if unknown := set(leave_out) - set(CAPTION_NAMES):
        raise ValueError(f"no bullseye caption named {', '.join(sorted(unknown))}")
    data = report.to_dict() if isinstance(report, Report) else report
    segments = data.get("segments")
    warnings = report_warnings(data)
    cx, cy = _CENTRE
    # A title naming a long file stays inside the picture: smaller type, then its middle left out.
    if len(title) > _TITLE_MAX_CHARACTERS:
        title = f"{title[:_TITLE_MAX_CHARACTERS // 2 - 1]}…{title[-(_TITLE_MAX_CHARACTERS // 2 - 1):]}"
    title_size = 14 if len(title) <= 55 else max(9.0, round(14 * 55 / len(title), 1))
    parts = [_header(_height(4)),  # set again below, once the captions are known
             f'<text x="{cx}" y="18" text-anchor="middle" font-size="{title_size:g}">{escape(title)}</text>']
    if segments is None:
        # Why not, in lines short enough to read: the engine's warning(s), else the usual reason.
        reasons = [m for m in warnings if m.startswith("no AHA segments")] or [
            "no AHA segments: no anterior RV insertion point was given"]
        lines = [line for reason in reasons for line in textwrap.wrap(reason, 60)]
        parts.append(f'<text x="{cx}" y="{cy - 8 * len(lines):.0f}" text-anchor="middle" font-size="11">'
                     + "".join(f'<tspan x="{cx}" dy="{0 if i == 0 else 16}">{escape(line)}</tspan>'
                               for i, line in enumerate(lines)) + "</text>")
        parts.append("</svg>")
        return "\n".join(parts) + "\n"
    qc_only = qc_only_segments(data)
    outlines = []
    for segment in segments:
        number = segment["segment"]
        start, end, inner, outer = segment_geometry(number)
        score = segment["scar_extent_score"]  # from the unrounded % (the stored one is rounded)
        colour = NO_MYOCARDIUM_COLOUR if score is None else GRADE_COLOURS[score]
        percent = escape(percent_text(segment["scar_percent"]))  # "<1 %": a bare "<" is not XML
        attributes = (f'fill="{colour}" stroke="#000000" stroke-width="1" data-segment="{number}" '
                      f'data-grade="{"" if score is None else score}"')
        title = f"<title>{number} {escape(segment['name'])}: {percent}" + (
            " (no slice beyond the cavity)" if number == APEX_SEGMENT and score is None else "") + (
            "; scar only on slices with QC flags: read them first" if number in qc_only else "") + "</title>"
        outline = (f'fill="none" stroke="{QC_OUTLINE_COLOUR}" stroke-width="3" stroke-dasharray="6,3" '
                   f'data-qc-segment="{number}"')
        if number == APEX_SEGMENT:
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="{outer * _OUTER:.2f}" {attributes}>{title}</circle>')
            if number in qc_only:
                outlines.append(f'<circle cx="{cx}" cy="{cy}" r="{outer * _OUTER - 1.5:.2f}" {outline}/>')
            x, y = cx, cy
        else:
            path = _sector_path(cx, cy, start, end, inner * _OUTER, outer * _OUTER)
            parts.append(f'<path d="{path}" {attributes}>{title}</path>')
            if number in qc_only:  # drawn after every fill, so that a neighbour's does not cover it
                inset = _sector_path(cx, cy, start, end, inner * _OUTER + 1.5, outer * _OUTER - 1.5)
                outlines.append(f'<path d="{inset}" {outline}/>')
            x, y = _point(cx, cy, (inner + outer) / 2 * _OUTER, (start + end) / 2)
        text_colour = "#ffffff" if score is not None and score >= 3 else "#000000"
        parts.append(f'<text x="{x:.1f}" y="{y - 2:.1f}" text-anchor="middle" font-size="11" '
                     f'fill="{text_colour}">{number}</text>')
        parts.append(f'<text x="{x:.1f}" y="{y + 10:.1f}" text-anchor="middle" font-size="9" '
                     f'fill="{text_colour}">{percent}</text>')
    parts += outlines
    if all(segment["segment"] != APEX_SEGMENT for segment in segments):  # a report stored before the apex was
        parts.append(f'<circle cx="{cx}" cy="{cy}" r="{_RADII[0] * _OUTER:.2f}" fill="none" stroke="#000000" '
                     'stroke-dasharray="3,3"><title>17 apex: not in this report</title></circle>')
    for label, angle, anchor in (("anterior", 90.0, "middle"), ("septal", 180.0, "end"),
                                 ("inferior", 270.0, "middle"), ("lateral", 0.0, "start")):
        x, y = _point(cx, cy, _OUTER + 6 if anchor != "middle" else _OUTER + 14, angle)
        parts.append(f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="{anchor}" font-size="10" '
                     f'fill="#555555">{label}</text>')
    step = _WIDTH / len(GRADE_LABELS)
    for grade, (colour, label) in enumerate(zip(GRADE_COLOURS, GRADE_LABELS)):
        x = grade * step + 6
        parts.append(f'<rect x="{x:.1f}" y="{_LEGEND_Y - 10:.1f}" width="12" height="12" fill="{colour}" '
                     'stroke="#000000"/>')
        parts.append(f'<text x="{x + 16:.1f}" y="{_LEGEND_Y:.1f}" font-size="9">{escape(label)}</text>')
    captions = [("septum", septum_text(data.get("septal_span_deg")), "#555555")]
    if data.get("segment_summary"):
        captions.append(("summary", summary_text(data["segment_summary"]), "#000000"))
    if data.get("segment_angles_from") == ANGLES_FROM_DISPLAY:
        # The picture cannot show a mirror: say how its sides were decided (the report's warning says more).
        captions.append(("angles", "No short-axis orientation: septum side taken as displayed, seen from the apex",
                         "#a00000"))
    if MIRROR_WARNING in warnings:  # the anterior point alone: nothing would catch a mirror
        captions.append(("mirror", "Mirrored? Septum and lateral wall would be swapped: mark the inferior RV point "
                                   "too", "#a00000"))
    turned = [match for message in warnings if (match := RV_SIDE_WARNING.search(message))]
    if turned:  # scarnet.aha.rv_side_warning: RAS and LPS mixed up turns every segment; the picture cannot show it
        captions.append(("rv-side", RV_SIDE_CAPTION.format(deg=turned[0]["deg"]), "#a00000"))
    if any(message.startswith(GIVEN_BASAL_END_WARNING_START) for message in warnings):
        # The levels follow a basal end the images contradict: the rings may be the other way round.
        mirrored = " and septum mirrored" if data.get("segment_angles_from") == ANGLES_FROM_PATIENT_AXES else ""
        captions.append(("basal-end", "Basal end as given, against the images': basal and apical rings may be "
                                      f"exchanged{mirrored}", "#a00000"))
    on_flagged, indices = scar_on_flagged_slices(data.get("slices") or [])
    if indices and (data.get("total") or {}).get("scar_ml"):  # (quantify.flagged_scar_text, shorter)
        shown = ", ".join(map(str, indices[:6])) + (", …" if len(indices) > 6 else "")
        captions.append(("qc", f"{amount_text(on_flagged)} of {amount_text(data['total']['scar_ml'])} mL of scar on "
                               f"slices with QC flags ({shown}): read them first", "#a00000"))
    if qc_only:
        named = f"segment{'s' if len(qc_only) > 1 else ''} {', '.join(map(str, qc_only))}"
        captions.append(("qc-segments", f"Dashed: scar only on QC-flagged slices ({named}): read them first",
                         QC_OUTLINE_COLOUR))
    if any(message.startswith(APICAL_COVERAGE_WARNING_START) for message in warnings):  # (as graded 0, not imaged)
        captions.append(("stack-short", STACK_SHORT_CAPTION, "#a00000"))
    if apex_not_imaged(segments):
        captions.append(("apex", APEX_NOT_IMAGED, "#555555"))
    missing = missing_levels([s.get("level") for s in data.get("slices") or []])
    # Too few slices for three levels (quantify's warning): an empty ring is not "no scar". A report stored without
    # levels at all says nothing of them.
    if missing and len(missing) < len(LEVELS):
        rings = "that ring is" if len(missing) == 1 else "those rings are"
        captions.append(("levels", f"No {' or '.join(missing)} slices: {rings} empty, not measured", "#a00000"))
    captions.append(("intended-use", INTENDED_USE.split(". ")[0], "#555555"))
    row = 0
    for name, text, colour in (caption for caption in captions if caption[0] not in leave_out):
        # A caption too long for the picture's width (the summary of many segments) runs on to a second row.
        lines = textwrap.wrap(text, _CAPTION_MAX_CHARACTERS) if len(text) > _CAPTION_MAX_CHARACTERS else [text]
        content = escape(text) if len(lines) == 1 else "".join(
            f'<tspan x="{cx}" dy="{0 if i == 0 else _CAPTION_STEP}">{escape(line)}</tspan>'
            for i, line in enumerate(lines))
        parts.append(f'<text x="{cx}" y="{_CAPTION_Y + row * _CAPTION_STEP:.1f}" text-anchor="middle" font-size="9" '
                     f'fill="{colour}" data-caption="{name}">{content}</text>')
        row += len(lines)
    parts[0] = _header(_height(row, minimum=0 if leave_out else 4))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


__all__ = ["APEX_NOT_IMAGED", "CAPTION_NAMES", "GRADE_COLOURS", "NO_MYOCARDIUM_COLOUR", "QC_OUTLINE_COLOUR", "ROUNDING",
           "RV_SIDE_CAPTION", "RV_SIDE_WARNING", "STACK_SHORT_CAPTION",
           "amount_text", "apex_not_imaged", "basal_end_text", "bullseye_svg", "percent_text", "qc_only_scar_slices",
           "qc_only_segments",
           "segment_geometry", "septum_text", "summary_text", "whole_percent_text"]
