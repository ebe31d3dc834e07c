"""A quantification report (``scarnet.quantify.Report.to_dict()``) → table, plot and node attributes.

The table has one row per slice (the engine's slice index, along k unless the image stores its
slices along i or j) with units on every column; the plot shows scar % per slice from that
table. Totals are stored on the table node as attributes (``ScarNetSlicer.Total.<key>``) and as
JSON (``ScarNetSlicer.ReportJSON``) so scripts and saved scenes keep them. Nothing here runs a
model: "Update report" rebuilds the same nodes from an edited segmentation.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vtk

from scarnet.aha import APEX_SEGMENT
from scarnet.errors import InputError, OutputExistsError
from scarnet.labels import SCAR, SEGMENT_BY_LABEL
from scarnet.quantify import dicom_image_name

from . import ATTRIBUTE_PREFIX


@dataclass(frozen=True)
class Column:
    """One table column: its header, the per-slice report key it shows, type and unit."""

    name: str
    key: str
    kind: str  # "int", "double" or "string"
    unit: str
    description: str


COLUMNS: tuple[Column, ...] = (
    Column("Slice", "index", "int", "", "Slice index along the image's slice axis: k, unless the file stores the "
           "slices along i or j (0 = first slice)"),
    Column("Position (mm)", "position_mm", "double", "mm",
           "Slice-centre position along the slice normal (LPS, toward the head)"),
    Column("Level", "level", "string", "", "Basal, mid or apical: thirds of the slices with myocardium and a cavity, "
           "from base to apex; apex: beyond the cavity (segment 17); empty where unknown"),
    Column("Myocardium (mL)", "myocardium_ml", "double", "mL", "LV myocardium volume (healthy + scar + MVO)"),
    Column("Scar (mL)", "scar_ml", "double", "mL", "Scar volume including MVO"),
    Column("Scar (%)", "scar_percent", "double", "%", "Scar as % of LV myocardium (empty where no myocardium)"),
    Column("Transmural > 50 % (%)", "transmural_over_50_percent", "double", "%",
           "Share of the LV circumference where scar fills more than half of the wall, along rays from the LV "
           "centre (empty where the slice has no myocardium, fewer than half of the rays cross its wall, or it lies "
           "beyond the cavity)"),
    Column("MVO (mL)", "mvo_ml", "double", "mL", "Microvascular obstruction volume"),
    Column("QC flags", "qc_flags", "string", "", "Quality flags: check these slices"),
)
COLUMN_BY_KEY = {c.key: c for c in COLUMNS}
#: Columns of the AHA segment table (a second table, written when the report has segments).
SEGMENT_COLUMNS: tuple[Column, ...] = (
    Column("Segment", "segment", "int", "", "AHA segment number (Cerqueira 2002; 17: the apex, beyond the cavity)"),
    Column("Name", "name", "string", "", "AHA segment name"),
    Column("Slices", "slices", "string", "", "Slices (index) of the segment"),
    Column("Myocardium (mL)", "myocardium_ml", "double", "mL", "LV myocardium in the segment"),
    Column("Scar (mL)", "scar_ml", "double", "mL", "Scar (MVO included) in the segment"),
    Column("Scar (%)", "scar_percent", "double", "%", "Scar as % of the segment's myocardium"),
    Column("Scar grade (0-4)", "scar_extent_score", "double", "", "0 none or under 1 %, 1: 1-25 %, 2: 26-50 %, "
           "3: 51-75 %, 4: 76-100 % of the segment's myocardium"),
    Column("Transmural > 50 % (%)", "transmural_over_50_percent", "double", "%",
           "Share of the segment's rays along which scar fills more than half of the wall (empty for the apex, 17)"),
    Column("Scar transmurality, mean (%)", "scar_transmurality_mean_percent", "double", "%",
           "How much of the wall's thickness the scar fills, averaged over the segment's rays with scar (Kim's bands: "
           "1-25, 26-50, 51-75, 76-100 %; empty without such rays and for the apex, 17)"),
    Column("MVO (mL)", "mvo_ml", "double", "mL", "Microvascular obstruction in the segment"),
    Column("Scar on slices", "scar_slices", "string", "", "Slices (index) where the segment has scar: with the "
           "per-slice table's QC flags, whether it rests on flagged slices only"),
)
#: After "Position (mm)", for an input loaded from DICOM: the image a PACS viewer shows for the slice.
DICOM_COLUMN = Column("DICOM image", "dicom", "string", "", "The slice's DICOM InstanceNumber as a PACS viewer "
                      "numbers it (SL and its SliceLocation for an image without one)")
#: The plot's axes (columns of the table).
PLOT_X_COLUMN = "Slice"
PLOT_Y_COLUMN = "Scar (%)"

REPORT_JSON_ATTRIBUTE = ATTRIBUTE_PREFIX + "ReportJSON"
#: The sha256 of the table's cells as ScarNet wrote them: a table the user unlocked and edited since (a column of
#: comments) is not rewritten.
CONTENTS_SHA256_ATTRIBUTE = ATTRIBUTE_PREFIX + "ContentsSHA256"
#: On the AHA segment table: the bullseye of its segments as SVG text (scarnet.bullseye), saved with the scene.
BULLSEYE_SVG_ATTRIBUTE = ATTRIBUTE_PREFIX + "BullseyeSVG"
#: Why a report no longer describes its segmentation (a later run replaced its contents); absent while it does.
OUTDATED_ATTRIBUTE = ATTRIBUTE_PREFIX + "OutdatedBecause"
#: Node reference from outputs to the input volume they were computed from.
INPUT_REFERENCE_ROLE = ATTRIBUTE_PREFIX + "inputVolume"
#: What marks such a report's name.
OUTDATED_SUFFIX = " (outdated)"
#: The segmentation's fingerprint (segmentation_nodes.fingerprint) on the input when the report was made.
REPORTED_FINGERPRINT_ATTRIBUTE = ATTRIBUTE_PREFIX + "ReportedFingerprint"
TOTAL_ATTRIBUTE_PREFIX = ATTRIBUTE_PREFIX + "Total."
CHART_REFERENCE_ROLE = ATTRIBUTE_PREFIX + "plotChart"
SERIES_REFERENCE_ROLE = ATTRIBUTE_PREFIX + "plotSeries"
SEGMENTATION_REFERENCE_ROLE = ATTRIBUTE_PREFIX + "segmentation"
TABLE_REFERENCE_ROLE = ATTRIBUTE_PREFIX + "reportTable"
#: From the report table to its AHA segment table.
SEGMENT_TABLE_REFERENCE_ROLE = ATTRIBUTE_PREFIX + "segmentTable"
#: Totals shown in the module panel, in this order: (report key, label, unit).
TOTALS: tuple[tuple[str, str, str], ...] = (
    ("myocardium_g", "Myocardium", "g"),
    ("scar_g", "Scar", "g"),
    ("scar_percent", "Scar", "% of LV myocardium"),
    ("transmural_over_50_percent", "Scar > 50 % transmural", "% of LV circumference"),
)
TOTAL_KEYS = tuple(key for key, _label, _unit in TOTALS)

_ARRAY_CLASSES = {"int": vtk.vtkIntArray, "double": vtk.vtkDoubleArray, "string": vtk.vtkStringArray}


def _cell(value: Any, kind: str) -> Any:
    if isinstance(value, dict):  # a slice's DICOM identifiers
        return dicom_image_name(value)
    if kind == "string":
        if isinstance(value, (list, tuple)):
            return ";".join(str(v) for v in value)
        return "" if value is None else str(value)
    if kind == "int":
        return int(value)
    return math.nan if value is None else float(value)


def _fill(table_node, columns: list[Column], rows: list[dict[str, Any]]) -> None:
    """Replace every column of ``table_node`` with ``columns`` of ``rows``, then lock it.

    The table is a view of the segmentation: edits belong in Segment Editor, then "Update report".
    """
    table_node.SetLocked(False)
    table_node.RemoveAllColumns()
    for column in columns:
        array = _ARRAY_CLASSES[column.kind]()
        array.SetName(column.name)
        for row in rows:
            value = _cell(row.get(column.key), column.kind)
            if column.kind == "string":
                array.InsertNextValue(value)
            else:
                array.InsertNextTuple1(value)
        table_node.AddColumn(array)
        if column.unit:
            table_node.SetColumnUnitLabel(column.name, column.unit)
        if hasattr(table_node, "SetColumnTitle"):  # Slicer >= 5.7 (SetColumnLongName is deprecated)
            table_node.SetColumnTitle(column.name, column.name)
        else:
            table_node.SetColumnLongName(column.name, column.name)
        table_node.SetColumnDescription(column.name, column.description)
    table_node.SetLocked(True)


def update_table(table_node, report: dict[str, Any]) -> None:
    """Fill ``table_node`` with one row per slice of ``report`` (every column replaced)."""
    was_modifying = table_node.StartModify()
    try:
        columns = list(COLUMNS)
        if any(slice_report.get("dicom") for slice_report in report["slices"]):
            columns.insert(columns.index(COLUMN_BY_KEY["position_mm"]) + 1, DICOM_COLUMN)
        _fill(table_node, columns, report["slices"])
        total = report.get("total", {})
        for key, value in total.items():
            table_node.SetAttribute(TOTAL_ATTRIBUTE_PREFIX + key, "" if value is None else repr(value))
        table_node.SetAttribute(REPORT_JSON_ATTRIBUTE, json.dumps(report, default=str))
        table_node.SetAttribute(CONTENTS_SHA256_ATTRIBUTE, _contents_sha256(table_node))
    finally:
        table_node.EndModify(was_modifying)


def _contents_sha256(table_node) -> str:
    """The sha256 of ``table_node``'s column names and cells, as text."""
    digest = hashlib.sha256()
    table = table_node.GetTable()
    for column in range(table.GetNumberOfColumns()):
        digest.update(f"{table.GetColumnName(column)}\x1f".encode())
        for row in range(table.GetNumberOfRows()):
            digest.update(f"{table_node.GetCellText(row, column)}\x1e".encode())
    return digest.hexdigest()


def _edited_since_written(table_node) -> bool:
    """The table's cells or columns changed since this module wrote them (never for a table of an older ScarNet,
    which recorded no hash)."""
    written = table_node.GetAttribute(CONTENTS_SHA256_ATTRIBUTE)
    return bool(written) and written != _contents_sha256(table_node)


def read_table(table_node) -> list[dict[str, Any]]:
    """The per-slice rows of a table written by :func:`update_table`, keyed like the report."""
    table = table_node.GetTable()
    rows: list[dict[str, Any]] = []
    for row in range(table.GetNumberOfRows()):
        entry: dict[str, Any] = {}
        for column in COLUMNS:
            array = table.GetColumnByName(column.name)
            if array is None and column.key == "level":  # a table written before levels were reported
                entry[column.key] = None
                continue
            if array is None:
                raise KeyError(f"{table_node.GetName()}: no column '{column.name}'")
            value = array.GetValue(row)
            if column.key == "qc_flags":
                entry[column.key] = [flag for flag in str(value).split(";") if flag]
            elif column.kind == "string":
                entry[column.key] = str(value) or None
            elif column.kind == "int":
                entry[column.key] = int(value)
            else:
                entry[column.key] = None if math.isnan(value) else float(value)
        rows.append(entry)
    return rows


def reason_not_to_reuse(table_node, segmentation_node, edits_count: bool = True) -> str:
    """Why writing ``segmentation_node``'s report into ``table_node`` would lose something ("" if it would not).

    A table may be (re)written when it is empty (a table the selector just created) or holds this
    module's report of the same segmentation, as written. Not when it holds the user's own data, the report
    of another segmentation still in the scene (e.g. the corrected report of a first run, when a
    second run goes into a new segmentation for comparison), or (``edits_count``) this module's report edited
    since it was written (unlocked, a column of comments added).
    """
    if stored_report(table_node) is None:
        if table_node.GetNumberOfColumns() or table_node.GetNumberOfRows():
            return f"table '{table_node.GetName()}' holds other data than a ScarNet report"
        return ""
    if because := table_node.GetAttribute(OUTDATED_ATTRIBUTE):  # kept: the only record of those contents' figures
        return f"table '{table_node.GetName()}' holds an outdated report ({because})"
    reported = table_node.GetNodeReference(SEGMENTATION_REFERENCE_ROLE)
    if reported is not None and reported is not segmentation_node and reported.GetScene() is not None:
        return f"table '{table_node.GetName()}' holds the report of segmentation '{reported.GetName()}'"
    if edits_count and _edited_since_written(table_node):
        return f"table '{table_node.GetName()}' was edited since ScarNet wrote it"
    return ""


def stored_report(table_node) -> dict[str, Any] | None:
    """The report last written into ``table_node`` (None when there is none)."""
    text = table_node.GetAttribute(REPORT_JSON_ATTRIBUTE) if table_node is not None else None
    return json.loads(text) if text else None


def _made_from(report: dict[str, Any]) -> str:
    """Whose segmentation a stored report quantifies, in words (as a cohort's summary says it)."""
    from scarnet.summary import made_from

    return made_from(report)


def write_report_page(table_node, path: str | Path, source: str) -> Path:
    """Write the report in ``table_node`` as a printable HTML page (:func:`scarnet.report_html.report_html`)
    to ``path``, and its data beside it as JSON (the same name ending in ".json": what ``scarnet summarize``
    reads into a cohort's table, with ``source``/``edited`` saying whose segmentation it measured); ``source``
    names the input (the report's ``input``). Returns the page's path.

    A ``path`` ending in ".html" is replaced if it exists (the caller's save dialog has asked), and so is the
    JSON beside it when an earlier *Save report* of this input wrote it; any other file of that name (another
    exam's, a batch run's model report) is not replaced. To
    another name ".html" is added, and neither file is replaced (:class:`~scarnet.errors.OutputExistsError`:
    nobody was asked about them). Both are written, or neither. Raises :class:`~scarnet.errors.InputError`
    when the table holds no report."""
    from scarnet.outputs import HTML_REPORT, REPORT, OutputSet
    from scarnet.report_html import report_html

    report = stored_report(table_node)
    if report is None:
        name = table_node.GetName() if table_node is not None else "no table"
        raise InputError(f"{name}: no ScarNet report in it: run 'Segment scar' or 'Update report' first")
    path = Path(path)
    asked = path.suffix.lower() == ".html"
    if not asked:
        path = path.with_name(path.name + ".html")
    data_path = path.with_suffix(".json")
    if asked and data_path.exists() and not _saved_report_of(data_path, source, report.get("input_sha256")):
        raise OutputExistsError(f"{data_path} exists and is not an earlier saved report of this exam ({source}): "
                                "choose another name (the report's data is saved beside the page, as NAME.json)")
    from .volume_nodes import dicom_identity

    input_node = table_node.GetNodeReference(INPUT_REFERENCE_ROLE)
    # The patient and study, on the page only (a printout must name whom it describes); not in the JSON.
    page = report_html(report, source, made_from=_made_from(report), identity=dicom_identity(input_node))
    data = {key: value for key, value in report.items() if key != "slicer"}  # node IDs mean nothing in a file
    data.setdefault("input", source)
    try:
        with OutputSet(overwrite=asked) as outputs:
            outputs.add(path, HTML_REPORT, "Save report")
            outputs.add(data_path, REPORT, "Save report")
            outputs.prepare()
            outputs.write(path, lambda temp: Path(temp).write_text(page, encoding="utf-8"))
            outputs.write(data_path, lambda temp: Path(temp).write_text(json.dumps(data, indent=2, allow_nan=False),
                                                                        encoding="utf-8"))
            outputs.commit()
    except OutputExistsError:
        raise OutputExistsError(f"{path} or {data_path.name} exists: choose another name, or give this one with its "
                                ".html to replace it") from None
    return path


def _saved_report_of(path: Path, source: str, input_sha256: str | None = None) -> bool:
    """Whether ``path`` holds what *Save report* wrote for the input ``source`` (a report with the module's
    ``source`` and that ``input``, and when both record it the same ``input_sha256``: not another exam of that
    name), which saving the same page again may replace."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    saved_sha256 = data.get("input_sha256") if isinstance(data, dict) else None
    return (isinstance(data, dict) and "scarnet_version" in data and isinstance(data.get("total"), dict)
            and data.get("source") in ("ScarNet model", "segmentation") and data.get("input") == source
            and (saved_sha256 is None or input_sha256 is None or saved_sha256 == input_sha256))


def stored_bullseye(table_node) -> str:
    """The bullseye (SVG text) of the AHA segments of the report in ``table_node``; "" when it has none."""
    segment_table = table_node.GetNodeReference(SEGMENT_TABLE_REFERENCE_ROLE) if table_node is not None else None
    return (segment_table.GetAttribute(BULLSEYE_SVG_ATTRIBUTE) or "") if segment_table is not None else ""


def _referenced_or_new(scene, owner, role: str, class_name: str, name: str):
    node = owner.GetNodeReference(role)
    if node is None or node.GetScene() is not scene:
        node = scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
        owner.SetNodeReferenceID(role, node.GetID())
    return node


def update_plot(scene, table_node, title: str = "Scar per slice"):
    """Create (once) and update the scar-%-per-slice plot of ``table_node``; return (chart, series).

    The chart and series are found again through node references on the table, so running
    "Segment scar" or "Update report" twice updates the same plot instead of adding another.
    """
    base = table_node.GetName()
    series = _referenced_or_new(scene, table_node, SERIES_REFERENCE_ROLE, "vtkMRMLPlotSeriesNode",
                                f"{base} scar %")
    chart = _referenced_or_new(scene, table_node, CHART_REFERENCE_ROLE, "vtkMRMLPlotChartNode", f"{base} plot")
    series.SetAndObserveTableNodeID(table_node.GetID())
    series.SetXColumnName(PLOT_X_COLUMN)
    series.SetYColumnName(PLOT_Y_COLUMN)
    series.SetPlotType(series.PlotTypeBar)
    series.SetColor(*SEGMENT_BY_LABEL[SCAR].color_rgb)
    if not chart.HasPlotSeriesNodeID(series.GetID()):
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle(title)
    chart.SetXAxisTitle("Slice")
    chart.SetYAxisTitle("Scar (% of LV myocardium)")
    chart.SetLegendVisibility(False)
    return chart, series


def update_segment_table(scene, table_node, report: dict[str, Any], notices: list[str] | None = None):
    """The AHA segment table of the report in ``table_node`` (found again through a reference on it).

    Created with the report's first segments and rewritten by each later report, with the bullseye
    picture of the segments (:data:`BULLSEYE_SVG_ATTRIBUTE`, :func:`stored_bullseye`). A report
    without segments (no RV insertion point given this time) empties both, so no table or picture
    shows segments of an earlier segmentation or point; returns the segment table, or None when
    there is none. A segment table the user edited since it was written (unlocked, a cell typed in) is left
    as it is and no longer referenced: the segments go into a new table, and ``notices`` gets a line saying so.
    """
    from scarnet.bullseye import bullseye_svg

    segments = report.get("segments")
    existing = table_node.GetNodeReference(SEGMENT_TABLE_REFERENCE_ROLE)
    if existing is not None and existing.GetScene() is scene and _edited_since_written(existing):
        table_node.SetNodeReferenceID(SEGMENT_TABLE_REFERENCE_ROLE, None)
        if notices is not None:
            notices.append(f"table '{existing.GetName()}' was edited since ScarNet wrote it, so it was left as it is"
                           + (": the AHA segments are in a new table" if segments is not None else ""))
        existing = None
    if segments is None and (existing is None or existing.GetScene() is not scene):
        return None
    node = _referenced_or_new(scene, table_node, SEGMENT_TABLE_REFERENCE_ROLE, "vtkMRMLTableNode",
                              f"{table_node.GetName()} AHA segments")
    # An apex without a slice is not imaged: empty cells, not 0 mL measured (as the page and the terminal show it).
    shown = [{**s, "name": f"{s.get('name')} (not imaged)", "myocardium_ml": None, "scar_ml": None, "mvo_ml": None}
             if s.get("segment") == APEX_SEGMENT and not s.get("slices") else s for s in segments or []]
    was_modifying = node.StartModify()
    try:
        _fill(node, list(SEGMENT_COLUMNS), shown)
        order = report.get("base_apex") or {}
        node.SetAttribute(ATTRIBUTE_PREFIX + "BasalEnd", order.get("basal_end", ""))
        node.SetAttribute(ATTRIBUTE_PREFIX + "BasalEndFrom", order.get("from", ""))
        # The septal arc between the two RV insertion points; empty when the septum was taken as 120°.
        span = report.get("septal_span_deg")
        node.SetAttribute(ATTRIBUTE_PREFIX + "SeptalSpanDeg", "" if span is None else f"{span:.1f}")
        node.SetAttribute(BULLSEYE_SVG_ATTRIBUTE, bullseye_svg(report, f"Scar per AHA segment ({_made_from(report)})")
                          if segments is not None else "")
        node.SetAttribute(CONTENTS_SHA256_ATTRIBUTE, _contents_sha256(node))
    finally:
        node.EndModify(was_modifying)
    return node


def format_totals(report: dict[str, Any]) -> dict[str, str]:
    """Human-readable totals for the module panel: ``{report key: "12.3 g"}`` ("–" when undefined)."""
    total = report.get("total", {})
    out = {}
    for key, _label, unit in TOTALS:
        value = total.get(key)
        out[key] = "–" if value is None else (f"{value:.1f} %" if unit.startswith("%") else f"{value:.1f} {unit}")
    return out


__all__ = [
    "BULLSEYE_SVG_ATTRIBUTE",
    "CHART_REFERENCE_ROLE",
    "COLUMNS",
    "PLOT_X_COLUMN",
    "PLOT_Y_COLUMN",
    "REPORT_JSON_ATTRIBUTE",
    "SEGMENTATION_REFERENCE_ROLE",
    "SEGMENT_COLUMNS",
    "SEGMENT_TABLE_REFERENCE_ROLE",
    "SERIES_REFERENCE_ROLE",
    "TABLE_REFERENCE_ROLE",
    "TOTALS",
    "TOTAL_ATTRIBUTE_PREFIX",
    "TOTAL_KEYS",
    "format_totals",
    "read_table",
    "reason_not_to_reuse",
    "stored_bullseye",
    "stored_report",
    "update_plot",
    "update_segment_table",
    "update_table",
    "write_report_page",
]
