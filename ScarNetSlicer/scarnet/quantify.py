"""Scar quantification from any labelmap on a known grid (the model's or one edited by hand).

Per slice and in total: LV myocardium volume and mass, scar volume and mass (scar includes
MVO, the SCMR convention), MVO volume and scar % of LV myocardium. Volumes are voxel counts
times the voxel volume, so they are exact for the labelmap given.

The JSON report is a contract other code builds on::

    {"slices": [{"index", "position_mm", "myocardium_ml", "scar_ml", "mvo_ml", "scar_percent", "level", ...}],
     "total": {"myocardium_ml", "myocardium_g", "scar_ml", "scar_g", "mvo_ml", "scar_percent", ...},
     "base_apex": {"basal_end", "from"} | null,
     "segments": [{"segment", "name", "level", "scar_percent", "scar_extent_score", ...}] | null,
     "segment_summary": {"segments_with_scar", "segments_over_50_percent", "scar_score", "scar_score_max"} | null,
     "segment_angles_from": str | null, "septal_span_deg": float | null,
     "rv_insertion_ras_mm": {"anterior", "inferior"} | null, "scarnet_version": str}

Levels (basal / mid / apical, and apex beyond the cavity) and, given the anterior RV insertion point, the
17 AHA segments come from :mod:`scarnet.aha`.
"""

from __future__ import annotations

import copy
import csv
import inspect
import io
import json
import math
import sys
import types
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .aha import (
    ANGLES_FROM_DISPLAY,
    APEX,
    LEVELS,
    MIN_CAVITY_AREA_MM2,
    SEGMENT_NAMES,
    BaseApexOrder,
    SegmentReport,
    aha_segments,
    base_apex_order,
    given_basal_end_warning,
    missing_levels,
    rv_insertion_points,
    rv_side_warning,
    slice_levels,
)
from .errors import InputError
from .labels import (
    BACKGROUND,
    HEALTHY_MYOCARDIUM,
    LV_BLOOD_POOL,
    MVO,
    MYOCARDIUM_DENSITY_G_PER_ML,
    MYOCARDIUM_LABELS,
    NUM_CLASSES,
    SCAR,
    SCAR_LABELS,
)
from .orientation import MAX_THIN_SLICES, StackAxis, field_too_wide, find_stack_axis, stack_along_k_problem
from .qc import apical_coverage_warning
from .text import visible
from .transmurality import TransmuralitySummary, stack_rays, summarise_stack
from .volume import Volume, check_geometry


@dataclass
class SliceReport:
    """Figures for one slice of the stack (``index`` along its slice axis, k unless stored slice-first)."""

    index: int
    position_mm: float
    myocardium_ml: float
    scar_ml: float
    mvo_ml: float
    scar_percent: float | None  # None where the slice has no myocardium
    lv_blood_pool_ml: float
    healthy_myocardium_ml: float
    # Scar transmurality along rays from the LV centre (scarnet.transmurality); None without myocardium,
    # where fewer than half of the rays cross the wall, or beyond the cavity (level "apex").
    scar_circumference_percent: float | None
    transmural_over_50_percent: float | None
    scar_transmurality_mean_percent: float | None  # None also where the slice has no scar
    #: "basal", "mid" or "apical" (thirds of the slices with myocardium and a cavity), "apex" (beyond the cavity:
    #: AHA segment 17; scarnet.aha); None without myocardium or where the base-apex order is unknown.
    level: str | None = None
    qc_flags: list[str] = field(default_factory=list)
    #: Where a PACS viewer shows this slice, for a DICOM input: ``instance_number``, ``frame_number``
    #: (enhanced multi-frame files) and ``slice_location_mm``; None for other inputs.
    dicom: dict[str, Any] | None = None


@dataclass
class TotalReport:
    """Whole-stack figures."""

    myocardium_ml: float
    myocardium_g: float
    scar_ml: float
    scar_g: float
    mvo_ml: float
    scar_percent: float | None
    lv_blood_pool_ml: float
    healthy_myocardium_ml: float
    slices_with_myocardium: int
    slices_with_scar: int
    scar_circumference_percent: float | None  # over every ray of the measured slices
    transmural_over_50_percent: float | None
    scar_transmurality_mean_percent: float | None


@dataclass
class Report:
    """A complete quantification report; ``extra`` carries QC, device, timings and intensity figures."""

    slices: list[SliceReport]
    total: TotalReport
    spacing_mm: tuple[float, float, float]  # of the labelmap as stored, (i, j, k)
    voxel_volume_ml: float
    extra: dict[str, Any] = field(default_factory=dict)
    slice_axis: str = "k"  # the image axis ``index`` counts along: "k", or "i"/"j" for a stack stored slice-first
    #: Which end of ``index`` is basal and what said so (scarnet.aha.BaseApexOrder); None when unknown.
    base_apex: BaseApexOrder | None = None
    #: The 17 AHA segments, when an anterior RV insertion point was given (scarnet.aha); None otherwise.
    segments: list[SegmentReport] | None = None
    #: What turned the segments' angles towards the septum (scarnet.aha.ANGLES_FROM_*); None without segments.
    segment_angles_from: str | None = None
    #: The septal arc between the anterior and the inferior RV insertion points (degrees, mean over the
    #: slices); None with the anterior point alone (the septum is then taken to span 120°).
    septal_span_deg: float | None = None
    #: The RV insertion points the segments were placed from, in RAS mm as Slicer shows a point (``anterior``;
    #: ``inferior`` None when not given): a report says what its segments rest on. None without segments.
    rv_insertion_ras_mm: dict[str, list[float] | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-serialisable data (the contract shape plus extras)."""
        out: dict[str, Any] = {
            "slices": [asdict(s) for s in self.slices],
            "total": asdict(self.total),
            "spacing_mm": list(self.spacing_mm),
            "voxel_volume_ml": self.voxel_volume_ml,
            "slice_axis": self.slice_axis,
            "base_apex": self.base_apex.to_dict() if self.base_apex is not None else None,
            "segments": [_rounded(asdict(s)) for s in self.segments] if self.segments is not None else None,
            "segment_summary": self.segment_summary(),
            "segment_angles_from": self.segment_angles_from,
            "septal_span_deg": round(self.septal_span_deg, 1) if self.septal_span_deg is not None else None,
            "rv_insertion_ras_mm": copy.deepcopy(self.rv_insertion_ras_mm),
            "scarnet_version": __version__,
            "intended_use": INTENDED_USE,
            "conventions": {
                "labels": {"0": "background", "1": "LV blood pool", "2": "healthy myocardium",
                           "3": "scar (without MVO)", "4": "MVO"},
                "scar": "labels 3|4 (MVO included, SCMR)",
                "myocardium": "labels 2|3|4",
                "myocardium_density_g_per_ml": MYOCARDIUM_DENSITY_G_PER_ML,
                "index": "slice index along the image's slice axis (k unless the slices are stored along i or j)",
                "position_mm": "signed slice-centre position along the slice normal (LPS), the normal pointing to "
                               "the head (superior; without a head-foot tilt, posterior, then left)",
                "transmurality": "along 180 rays per slice from the LV centre, the share of the wall's thickness "
                                 "that is scar (3|4, anywhere in the wall); scar_circumference_percent: rays with "
                                 "scar, transmural_over_50_percent: rays with more than half, both as % of the rays "
                                 "that cross the wall; scar_transmurality_mean_percent: mean over the rays with scar; "
                                 "null without myocardium, where fewer than half of the rays cross the wall, "
                                 "or on a slice beyond the cavity (level apex: it cuts the wall across); "
                                 "the total is over the measured slices (scarnet.transmurality)",
                "level": "basal, mid or apical: thirds of the slices with myocardium from the base to the most "
                         "apical one with a cavity (blood pool, or background the myocardium encloses, of "
                         f"{MIN_CAVITY_AREA_MM2:g} mm² or more); apex: the slices beyond it (AHA segment 17); "
                         "base_apex says which end is basal and whether the user, the patient axes or the cavity "
                         "size said so (scarnet.aha)",
                "segment_summary": "segments_with_scar: AHA segments graded 1 or more (scar in at least 1 % of the "
                                   "segment); segments_over_50_percent: with "
                                   "scar in more than half of the segment's myocardium by area (grade 3-4; not "
                                   "transmural_over_50_percent, which counts rays); scar_score: the sum of the "
                                   "grades, out of scar_score_max (4 per segment with myocardium)",
                "segments": "AHA 17-segment model (Cerqueira 2002; 17 the apex, the slices beyond the cavity: "
                            "0 mL and null %, grade and transmurality where there are none, and null transmurality "
                            "always) from the anterior RV insertion point the user "
                            "marked; the septum spans 120° from it, or the arc to the inferior RV insertion point "
                            "when that was marked too (septal_span_deg; both points in rv_insertion_ras_mm, RAS mm "
                            "as Slicer shows a point); scar_percent: scar % of the segment's "
                            "myocardium; scar_extent_score: 0 none or under 1 %, 1 1-25 %, 2 26-50 %, 3 51-75 %, "
                            "4 76-100 %; transmural_over_50_percent: share of the "
                            "segment's rays with scar through more than half of the wall; "
                            "scar_transmurality_mean_percent: the mean transmurality of the segment's rays with scar, "
                            "from the same rays (null without such rays); scar_slices: the slices where the segment "
                            "has scar (scarnet.aha)",
                "dicom": "for a DICOM input, the slice's InstanceNumber, frame number (enhanced multi-frame) and "
                         "SliceLocation as a PACS viewer shows them; null otherwise",
            },
        }
        out.update(self.extra)
        return out

    def segment_summary(self) -> dict[str, int] | None:
        """The AHA segments in three numbers, as an LGE report states them; None without segments.

        ``segments_with_scar``: segments graded 1 or more (scar in at least 1 % of the segment: a speck is not an
        enhanced segment); ``segments_over_50_percent``: with scar in more
        than half of the segment (grade 3-4; dysfunctional myocardium there is unlikely to recover after
        revascularisation, Kim et al. 2000); ``scar_score``: the sum of the 0-4 grades, out of
        ``scar_score_max`` (4 per segment with myocardium).
        """
        if self.segments is None:
            return None
        grades = [s.scar_extent_score for s in self.segments if s.scar_extent_score is not None]
        return {"segments_with_scar": sum(g >= 1 for g in grades),
                "segments_over_50_percent": sum(g >= 3 for g in grades),
                "scar_score": sum(grades), "scar_score_max": 4 * len(grades)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def warnings(self) -> list[str]:
        """What the user was warned of while this report was made: reading the input (approximate slice
        positions, ...) and the model (an exam unlike the training data, a CPU fall-back)."""
        return report_warnings(self.extra)

    def to_csv(self) -> str:
        """One row per slice, then a ``total`` row; QC flags joined with ';'. For a DICOM input, the
        ``dicom_*`` columns after ``position_mm`` name each slice as a PACS viewer does. Below the rows
        the masses, the ``input`` and its ``dicom_series``, the ``labelmap`` and who it was ``segmented_by``
        (``scarnet quantify``) where the report names them, the ``weights`` (file, sha256) of a model run, the
        ``scarnet_version`` that measured it, and a ``warning`` row per warning (:meth:`warnings`), so that a CSV
        read alone still says which exam, which model, and carries them."""
        buffer = io.StringIO()
        dicom_columns = list(DICOM_CSV_COLUMNS) if any(s.dicom for s in self.slices) else []
        columns = ["index", "position_mm", *dicom_columns, "myocardium_ml", "scar_ml", "mvo_ml", "scar_percent",
                   "lv_blood_pool_ml", "healthy_myocardium_ml", *TRANSMURALITY_KEYS, "level", "qc_flags"]
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for s in self.slices:
            row = asdict(s)
            row["qc_flags"] = ";".join(s.qc_flags)
            row.update({column: (s.dicom or {}).get(key) for column, key in DICOM_CSV_COLUMNS.items()})
            writer.writerow([csv_value(row[c]) for c in columns])
        t = asdict(self.total)
        first = 2 + len(dicom_columns)
        writer.writerow(["total", *[""] * (first - 1)] + [csv_value(t[c]) for c in columns[first:-2]] + ["", ""])
        writer.writerow([])
        writer.writerow(["myocardium_g", csv_value(self.total.myocardium_g)])
        writer.writerow(["scar_g", csv_value(self.total.scar_g)])
        # Which exam, so that a CSV read alone (mailed, filed) still says: as the JSON's input and input_series.
        if self.extra.get("input") is not None:
            writer.writerow(["input", csv_value(str(self.extra["input"]))])
        if series_name(self.extra.get("input_series")):
            writer.writerow(["dicom_series", csv_value(series_name(self.extra["input_series"]))])
        # Which labelmap and who drew it (scarnet quantify), as the JSON's labelmap and segmented_by.
        for key in ("labelmap", "segmented_by", "reader"):
            if self.extra.get(key) is not None:
                writer.writerow([key, csv_value(str(self.extra[key]))])
        # And which model segmented it (a model run's report, or the run a quantified labelmap came from), as the
        # JSON's inference.weights (model_run.weights); the version that measured it always, as the JSON's
        # scarnet_version (a model run's own is in the JSON's inference).
        inference = model_run_record(self.extra)
        weights = inference.get("weights") if isinstance(inference.get("weights"), dict) else {}
        if weights:
            writer.writerow(["weights", csv_value(weights.get("file") or "bundled"),
                             csv_value(weights.get("sha256") or "")])
        writer.writerow(["scarnet_version", csv_value(__version__)])
        for message in self.warnings():
            writer.writerow(["warning", csv_value(message)])
        if self.base_apex is not None:
            writer.writerow(["basal_end", *map(csv_value, self.base_apex.to_dict().values())])
        if self.segments is not None:
            writer.writerow(["segment_angles_from", csv_value(self.segment_angles_from)])
            for key, value in self.segment_summary().items():
                writer.writerow([key, value])
            if self.septal_span_deg is not None:
                writer.writerow(["septal_span_deg", csv_value(round(self.septal_span_deg, 1))])
            for which, point in (self.rv_insertion_ras_mm or {}).items():
                if point is not None:
                    writer.writerow([f"rv_insertion_{which}_ras_mm", *map(csv_value, point)])
            writer.writerow([])
            writer.writerow(SEGMENT_CSV_COLUMNS)
            for segment in self.segments:
                row = asdict(segment)
                row["slices"] = ";".join(str(k) for k in segment.slices)
                row["scar_slices"] = ";".join(str(k) for k in segment.scar_slices)
                if not segment.slices:  # the apex beyond the cavity not imaged: empty cells, not 0 mL measured
                    row.update(myocardium_ml=None, scar_ml=None, mvo_ml=None)
                writer.writerow([csv_value(row[c]) for c in SEGMENT_CSV_COLUMNS])
        return buffer.getvalue()

    def format_for(self, path: str | Path) -> str:
        """Serialise for ``path``: CSV for ``.csv``, JSON for ``.json``."""
        suffix = Path(path).suffix.lower()
        if suffix == ".csv":
            return self.to_csv()
        if suffix == ".json":
            return self.to_json()
        raise InputError(f"report {path}: unknown format '{suffix}' (use .json or .csv)")


#: The transmurality figures of every slice and of the total (see :mod:`scarnet.transmurality`).
TRANSMURALITY_KEYS = tuple(f.name for f in fields(TransmuralitySummary))
#: Columns of the AHA segment rows at the end of the CSV (:attr:`Report.segments`).
SEGMENT_CSV_COLUMNS = ("segment", "name", "level", "slices", "myocardium_ml", "scar_ml", "mvo_ml", "scar_percent",
                       "scar_extent_score", "transmural_over_50_percent", "scar_transmurality_mean_percent",
                       "scar_slices")
#: CSV column → key of :attr:`SliceReport.dicom`.
DICOM_CSV_COLUMNS = {"dicom_instance_number": "instance_number", "dicom_frame_number": "frame_number",
                     "dicom_slice_location_mm": "slice_location_mm"}


def dicom_image_name(identifiers: dict[str, Any] | None) -> str:
    """A slice's DICOM image as a viewer numbers it: "7" (InstanceNumber), "3, frame 5" for a frame of an
    enhanced multi-frame file, "SL -12.5" (SliceLocation) for an image without InstanceNumber; "-" when unknown."""
    identifiers = identifiers or {}
    instance, frame = identifiers.get("instance_number"), identifiers.get("frame_number")
    location = identifiers.get("slice_location_mm")
    parts = ([] if instance is None else [str(instance)]) + ([] if frame is None else [f"frame {frame}"])
    if not parts and location is not None:
        parts = [f"SL {location:g}"]
    return ", ".join(parts) or "-"


#: The lists of warnings in a report's dict form, in the order they are read out: the input's, the labelmap's
#: (slices left out, wall erased, a stack that may stop short of the apex), the AHA levels' and segments'; the model's
#: are ``inference``'s ``warnings``.
REPORT_WARNING_KEYS = ("input_warnings", "labelmap_warnings", "segment_warnings")


def report_warnings(data: dict[str, Any]) -> list[str]:
    """The warnings of a report in its dict form (:meth:`Report.to_dict`, or :attr:`Report.extra`): those of
    :data:`REPORT_WARNING_KEYS`, then the model's; missing or null entries (a report stored by an older version)
    are none."""
    return [*(warning for key in REPORT_WARNING_KEYS for warning in data.get(key) or []),
            *((data.get("inference") or {}).get("warnings") or [])]


#: First characters that make a spreadsheet read a cell as a formula (OWASP's list for CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def series_name(series: dict[str, Any] | None) -> str:
    """``#7 'LGE PSIR SAX'`` (the UID when the series has no number) for a report's ``input_series``; empty
    without one."""
    if not isinstance(series, dict):
        return ""
    number = series.get("series_number")
    name = f"#{number}" if number is not None else f"UID {series.get('series_instance_uid') or '?'}"
    return f"{name} '{series.get('description') or ''}'"


def model_run_record(report: dict[str, Any]) -> dict[str, Any]:
    """The record (``weights``, ``scarnet_version``) of the model run that made a report's segmentation: its own
    ``inference``, or for ``scarnet quantify --model-report`` the run the labelmap came from (``model_run``)."""
    for key in ("inference", "model_run"):
        if isinstance(record := report.get(key), dict):
            return record
    return {}


#: The model's totals a corrected report keeps (``model_run["total"]``): what the page shows as before correction.
MODEL_TOTAL_KEYS = ("myocardium_g", "scar_g", "scar_percent", "mvo_ml", "scar_ml", "myocardium_ml")


def model_totals(total: Any) -> dict[str, float] | None:
    """The figures of :data:`MODEL_TOTAL_KEYS` in a report's ``total`` (those that are finite numbers), to keep in
    the report of its segmentation corrected (``model_run["total"]``); None unless it has the scar's and the
    myocardium's mass."""
    if not isinstance(total, dict):
        return None
    kept = {key: float(value) for key in MODEL_TOTAL_KEYS if isinstance(value := total.get(key), (int, float))
            and not isinstance(value, bool) and math.isfinite(value)}
    return kept if "scar_g" in kept and "myocardium_g" in kept else None


def before_correction(report: dict[str, Any]) -> dict[str, float] | None:
    """The model's totals recorded in a report of its segmentation as a reader corrected it (``model_run["total"]``:
    ``scarnet quantify --model-report``, the Slicer module's *Update report*), or None (an older report, another
    series' model report, a reader's own segmentation)."""
    model_run = report.get("model_run")
    return model_totals(model_run.get("total")) if isinstance(model_run, dict) else None


def csv_value(value: Any) -> str:
    """A report figure as CSV text: empty for None, 6 significant digits for a float.

    Text that a spreadsheet would run as a formula (a file name such as ``-2_patient.nii.gz`` or
    ``=HYPERLINK(...)``, a warning that quotes one) gets a leading ``'``, as OWASP advises for CSV
    export: Excel and LibreOffice then show it as text. Control and bidirectional characters in text are
    written as their escapes (:func:`scarnet.text.visible`): a carriage return in a name would otherwise end the
    row in a spreadsheet and start the next cell with a formula. Numbers are left as they are."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        value = visible(value)
        return f"'{value}" if value.startswith(_FORMULA_STARTS) else value
    return str(value)


#: A scar total under this (mL) is read with care: on the EMIDEC val split the bundled model's false scar in the normal
#: hearts reached 1.6 mL (mean 0.76, its card's "a few mL should be read as possibly none"), while the smallest infarct
#: there held 2.6 mL by the experts' contours: both fit below it. The page puts a caution beside a model's scar total
#: under it (:func:`scarnet.report_html.caution_lines`), and FWHM takes no maximum from less labelled scar
#: (:mod:`scarnet.threshold_check`).
SMALL_SCAR_ML = 3.0


def _round(x: float) -> float:
    # Enough digits that count × voxel volume survives the JSON round trip to far below 0.1 %.
    return float(f"{x:.9g}")


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {key: _round(value) if isinstance(value, float) else value for key, value in values.items()}


def _percent(part_ml: float, whole_ml: float) -> float | None:
    return _round(100.0 * part_ml / whole_ml) if whole_ml > 0 else None


def _transmurality_fields(summary: TransmuralitySummary) -> dict[str, float | None]:
    return {key: None if (value := getattr(summary, key)) is None else _round(value) for key in TRANSMURALITY_KEYS}


def validate_labelmap(labelmap: Volume) -> None:
    """Raise :class:`InputError` unless ``labelmap`` holds integer labels 0–4 only, on a usable grid.

    The grid matters here because every figure is a voxel count times the voxel's volume: a zero,
    negative or NaN spacing would give 0 mL, negative mL or a report that cannot be written.
    """
    array = labelmap.array
    if array.size == 0:
        raise InputError("labelmap is empty")
    check_geometry(labelmap, "labelmap")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise InputError("labelmap contains NaN or infinite values")
        if np.any(array != np.round(array)):
            raise InputError("labelmap has non-integer values; expected labels 0-4")
    values = np.unique(array)
    bad = [v for v in values.tolist() if v < 0 or v >= NUM_CLASSES]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:5])
        raise InputError(f"labelmap has values outside 0-4 ({shown}); expected 0 bg, 1 LV blood pool, "
                         "2 myocardium, 3 scar, 4 MVO")


def quantify(labelmap: Volume, image: Volume | None = None, stack: StackAxis | None = None, *,
             basal_end: str | None = None, rv_insertion_lps: np.ndarray | None = None) -> Report:
    """Quantify ``labelmap`` per slice and in total.

    Slices lie along k, or along i or j for a stack stored slice-first: ``stack``, or as
    :func:`scarnet.orientation.find_stack_axis` finds it from the grid (as segmentation does);
    slice ``index`` is the position along that axis, recorded as ``slice_axis``. ``image``, when
    given, must be on the same grid; it adds mean/SD intensity per tissue and the scar-to-remote
    intensity ratio under ``report.extra["intensity"]``, and the scar that FWHM and 5-SD thresholds find in the
    same myocardium, for comparison (the labels unchanged), under ``report.extra["threshold_check"]``
    (:mod:`scarnet.threshold_check`). Each slice's ``dicom`` identifiers come from ``image`` (else ``labelmap``)
    when it was read from DICOM (:attr:`Volume.source_slices`).

    Each slice's ``level`` (basal / mid / apical, apex beyond the cavity) needs the base-apex order:
    ``basal_end`` ("first" or "last" slice index) when given, else as :func:`scarnet.aha.base_apex_order` finds it.
    ``rv_insertion_lps``, the anterior RV insertion point (LPS mm, shape (3,)), adds the 17 AHA segments
    (``report.segments``); with the inferior one after it (shape (2, 3)) the septum is the arc between
    them. It needs that order, and raises :class:`InputError` without one.

    For volumes read by :func:`scarnet.read_volume` and :func:`scarnet.read_labelmap`, ``report.extra`` names
    them: ``input`` (the image, else the labelmap), ``labelmap``, and the image's DICOM series and read warnings.
    """
    for given, what in ((labelmap, "labelmap"), (image, "image")):
        if given is not None and not isinstance(given, Volume):
            raise InputError(f"quantify takes the {what} as a scarnet.Volume (scarnet.read_labelmap(path) and "
                             f"scarnet.read_volume(path) read them), not {type(given).__name__}")
    validate_labelmap(labelmap)
    if image is not None and not labelmap.same_grid(image):
        raise InputError(f"labelmap and image are on different grids ({labelmap.grid_difference(image)})")
    if image is not None and not np.all(np.isfinite(image.array)):
        # Its tissue intensities would be NaN, and the report could not be written as JSON.
        raise InputError("image contains NaN or infinite values")
    source_slices = next((v.source_slices for v in (image, labelmap) if v is not None and v.source_slices), None)
    provenance = {**(labelmap.provenance or {}), **(image.provenance if image is not None and image.provenance else {})}
    stored_spacing_mm = tuple(labelmap.spacing_mm)
    stack = stack if stack is not None else find_stack_axis(labelmap)  # the image's grid is the same
    labelmap = stack.apply(labelmap)
    problem = stack_along_k_problem(labelmap.shape_ijk, labelmap.spacing_mm)
    if problem == "3D":
        # Levels, transmurality and AHA segments read short-axis slices: along a 3D volume's axis (or across a thin-
        # slice stack stored slice-first) they are cuts of anything, reported as if they were slices. Segmentation
        # refuses such a grid too (scarnet.inference.check_short_axis).
        raise InputError(f"{labelmap.num_slices} slices {labelmap.spacing_mm[2]:.2g} mm apart looks like a 3D volume "
                         "(or a stack stored with its slices along another axis), not a short-axis LGE stack "
                         "(expected 4–30 slices 5–15 mm apart): its per-slice figures cannot be told")
    if too_wide := field_too_wide(labelmap.shape_ijk, labelmap.spacing_mm):
        # Spacing given in (k, j, i) order, as the array is, on a whole field (not a small crop): totals stay right
        # (the product is the same), but positions, transmurality and AHA angles are measured on a stretched grid.
        # Segmentation refuses it too.
        raise InputError(too_wide)
    if problem == "in-plane" and labelmap.num_slices > MAX_THIN_SLICES:
        # A (slice, row, column) array saved with isotropic voxels: along k, its "slices" are cuts across the real
        # ones (segmentation refuses it too). A small labelmap (cropped, or drawn by hand) with few slices is not.
        columns, rows = labelmap.shape_ijk[:2]
        raise InputError(f"{labelmap.num_slices} slices of {columns}×{rows} voxels: more slices than a short-axis "
                         "stack has, each too narrow for one; are the slices along another axis? (save it with "
                         "the slices along the third axis, or give each axis its spacing)")
    image = stack.apply(image) if image is not None else None
    labels = labelmap.array.astype(np.uint8, copy=False)
    voxel_ml = labelmap.voxel_volume_ml
    # One pass of bincount per slice gives every class count at once.
    counts = np.stack([np.bincount(labels[k].ravel(), minlength=NUM_CLASSES) for k in range(labels.shape[0])])
    positions = labelmap.slice_positions_mm()
    centres, rays = stack_rays(labels, (labelmap.spacing_mm[1], labelmap.spacing_mm[0]))
    order = base_apex_order(labelmap, labels, basal_end)
    pixel_area_mm2 = labelmap.spacing_mm[0] * labelmap.spacing_mm[1]
    levels = slice_levels(labels, order, pixel_area_mm2=pixel_area_mm2)
    # A slice beyond the cavity cuts the apex's wall across, not through: rays in it would measure the disc.
    rays = [np.zeros(0) if level == APEX else slice_rays for slice_rays, level in zip(rays, levels)]
    transmurality, total_transmurality = summarise_stack(rays)
    segments = angles_from = septal_span = None
    if rv_insertion_lps is not None:
        if order is None:
            raise InputError("AHA segments need to know which end of the stack is basal, and neither the image's "
                             "orientation nor the cavity size says: give it (first or last slice)")
        segments, angles_from, septal_span = aha_segments(labelmap, labels, levels, order, centres, rays,
                                                          rv_insertion_lps)

    slices = []
    for k in range(labels.shape[0]):
        c = counts[k]
        myo_ml = float(c[list(MYOCARDIUM_LABELS)].sum()) * voxel_ml
        scar_ml = float(c[list(SCAR_LABELS)].sum()) * voxel_ml
        slices.append(SliceReport(
            index=k,
            position_mm=_round(float(positions[k])),
            myocardium_ml=_round(myo_ml),
            scar_ml=_round(scar_ml),
            mvo_ml=_round(float(c[MVO]) * voxel_ml),
            scar_percent=_percent(scar_ml, myo_ml),
            lv_blood_pool_ml=_round(float(c[LV_BLOOD_POOL]) * voxel_ml),
            healthy_myocardium_ml=_round(float(c[HEALTHY_MYOCARDIUM]) * voxel_ml),
            **_transmurality_fields(transmurality[k]),
            level=levels[k],
        ))

    c = counts.sum(axis=0)
    with_myocardium = counts[:, list(MYOCARDIUM_LABELS)].sum(axis=1) > 0  # per slice
    myo_ml = float(c[list(MYOCARDIUM_LABELS)].sum()) * voxel_ml
    scar_ml = float(c[list(SCAR_LABELS)].sum()) * voxel_ml
    total = TotalReport(
        myocardium_ml=_round(myo_ml),
        myocardium_g=_round(myo_ml * MYOCARDIUM_DENSITY_G_PER_ML),
        scar_ml=_round(scar_ml),
        scar_g=_round(scar_ml * MYOCARDIUM_DENSITY_G_PER_ML),
        mvo_ml=_round(float(c[MVO]) * voxel_ml),
        scar_percent=_percent(scar_ml, myo_ml),
        lv_blood_pool_ml=_round(float(c[LV_BLOOD_POOL]) * voxel_ml),
        healthy_myocardium_ml=_round(float(c[HEALTHY_MYOCARDIUM]) * voxel_ml),
        slices_with_myocardium=int(with_myocardium.sum()),
        slices_with_scar=int((counts[:, list(SCAR_LABELS)].sum(axis=1) > 0).sum()),
        **_transmurality_fields(total_transmurality),
    )
    if stack.is_identity and source_slices is not None and len(source_slices) == len(slices):
        # A stack stored slice-first has no DICOM slice order to name (DICOM images are the k planes).
        for slice_report, identifiers in zip(slices, source_slices):
            slice_report.dicom = dict(identifiers)
    report = Report(slices, total, stored_spacing_mm, _round(voxel_ml), slice_axis=stack.name, base_apex=order,
                    segments=segments, segment_angles_from=angles_from, septal_span_deg=septal_span,
                    rv_insertion_ras_mm=_ras_points(rv_insertion_lps) if segments is not None else None)
    # What was quantified, as read (scarnet.read_volume, read_labelmap): the exam is the image when given.
    report.extra.update(copy.deepcopy(provenance))  # the report's own lists: editing one leaves the volume's
    segment_warnings = [message] if (message := given_basal_end_warning(labelmap, labels, order)) else []
    if angles_from == ANGLES_FROM_DISPLAY and rv_insertion_points(rv_insertion_lps)[1] is None:
        # Nothing can tell a mirrored stack here: the segments would put a lateral scar in the septum, in every
        # output, without a word. The inferior point would catch it (its arc is refused), so say to mark it.
        segment_warnings.append(MIRROR_WARNING)
    if segments is not None and (missing := missing_levels_warning(levels)):
        segment_warnings.append(missing)
    if segments is not None and (across := rv_side_warning(labelmap, labels, centres,
                                                           rv_insertion_points(rv_insertion_lps)[0])):
        segment_warnings.append(across)
    for message in segment_warnings:
        warnings.warn(message, stacklevel=2)
    if segment_warnings:
        report.extra["segment_warnings"] = segment_warnings
    # The command line and Slicer refuse such a labelmap; from Python, a report of zeros must not pass unremarked.
    empty = None if with_myocardium.any() else EMPTY_LABELMAP_WARNING
    base_first = None if order is None else order.base_first
    labelmap_warnings = [message for message in (
        empty,
        gap_slices_warning(with_myocardium),
        all_scar_slices_warning(counts[:, HEALTHY_MYOCARDIUM], counts[:, list(SCAR_LABELS)].sum(axis=1)),
        enclosed_background_warning(labels, pixel_area_mm2, voxel_ml),
        open_ring_warning(labels, np.flatnonzero(with_myocardium).tolist(), base_first, math.sqrt(pixel_area_mm2)),
        # A stack cut short of the apex, read from the labels whoever drew them (the model's, a reader's corrected
        # ones, another tool's): this is the one place every report gets it, the model's run included.
        apical_coverage_warning(labels, base_first, pixel_area_mm2)) if message]
    for message in labelmap_warnings:
        warnings.warn(message, stacklevel=2)
    if labelmap_warnings:
        report.extra["labelmap_warnings"] = labelmap_warnings
    if image is not None:
        intensities = np.asarray(image.array, dtype=np.float64)
        report.extra["intensity"] = intensity_figures(labels, intensities)
        from .threshold_check import threshold_check  # (it imports this module's rounding)

        # FWHM and 5-SD in this labelmap's myocardium, beside its scar for comparison; the labels are not changed.
        report.extra["threshold_check"] = threshold_check(labels, intensities, voxel_ml)
        if message := dark_scar_warning(labels, intensities):
            warnings.warn(message, stacklevel=2)
            report.extra["labelmap_warnings"] = [*report.extra.get("labelmap_warnings", []), message]
    return report


#: Voxels of scar and of healthy myocardium below which their levels are not compared (a speck says nothing).
MIN_VOXELS_TO_COMPARE = 20


def dark_scar_warning(labels: np.ndarray, image: np.ndarray) -> str | None:
    """A warning when the scar (label 3, MVO aside: its core is dark) is no brighter than the healthy myocardium
    (label 2) on the image, by their medians; None otherwise. Scar enhances in LGE (on the 67 EMIDEC exams with
    scar, the experts' scar median is above their healthy myocardium's in every one): darker scar says the two were
    swapped (Slicer segments renamed, a labelmap of other values), or the image is not the LGE the labels were
    drawn on, and every scar figure is then the healthy myocardium's."""
    scar, healthy = image[labels == SCAR], image[labels == HEALTHY_MYOCARDIUM]
    if min(scar.size, healthy.size) < MIN_VOXELS_TO_COMPARE:
        return None
    scar_median, healthy_median = float(np.median(scar)), float(np.median(healthy))
    if scar_median > healthy_median or not math.isfinite(scar_median - healthy_median):
        return None
    return (f"the scar is no brighter than the healthy myocardium on the image (medians {scar_median:.4g} and "
            f"{healthy_median:.4g}), and scar enhances in LGE: are scar and myocardium swapped (segment names, label "
            "values), or is this not the image they were drawn on?")


def mvo_percent(mvo_ml: float | None, myocardium_ml: float | None) -> float | None:
    """MVO as a % of the LV myocardium (MVO is part of it), as infarct size is given; None without myocardium."""
    if not myocardium_ml or mvo_ml is None:
        return None
    return 100.0 * mvo_ml / myocardium_ml


def scar_on_flagged_slices(slices: list[dict[str, Any]]) -> tuple[float, list[int]]:
    """The scar (mL) on slices with QC flags and those slices' indices, from a report's slices (its dict form): a
    total made mostly there (a normal heart's false scar on a basal slice) needs those slices read first."""
    flagged = [s for s in slices if s.get("qc_flags") and (s.get("scar_ml") or 0) > 0]
    return float(sum(s["scar_ml"] for s in flagged)), [int(s["index"]) for s in flagged]


def flagged_scar_text(data: dict[str, Any]) -> str | None:
    """How much of a report's scar (its dict form) lies on slices with QC flags, in words ("1.13 of the 1.13 mL of
    scar (all of it) is on slices with QC flags (slices 0, 1, 8): read them before reporting it"); None when none is."""
    on_flagged, indices = scar_on_flagged_slices(data.get("slices") or [])
    total = (data.get("total") or {}).get("scar_ml") or 0.0
    if not indices or total <= 0:
        return None
    percent = 100.0 * on_flagged / total
    # Not "100 %" nor "0 %" for what is neither all nor none of it.
    share = "all of it" if on_flagged >= total - 1e-6 else ">99 %" if percent > 99 else "<1 %" if percent < 1 \
        else f"{percent:.0f} %"
    where = ", ".join(map(str, indices))
    return (f"{on_flagged:.2f} of the {total:.2f} mL of scar ({share}) is on slices with QC flags "
            f"({'slice' if len(indices) == 1 else 'slices'} {where}): read them before reporting it")


#: A labelmap without myocardium (an empty export, a blank segmentation, or not a ScarNet labelmap).
EMPTY_LABELMAP_WARNING = ("the labelmap has no myocardium (labels 2, 3 or 4): every volume is 0 and scar % is not "
                          "defined (an empty segmentation, or a labelmap with other label values?)")
#: What every output of a report says of its use (the page, the terminal, the JSON, the bullseye).
INTENDED_USE = ("Research use only: not for clinical diagnosis. Every slice needs a reader's review; the slices "
                "with QC flags first.")
#: The AHA segments of an image without orientation, from the anterior RV insertion point alone.
MIRROR_WARNING = ("AHA segments: the image has no usable short-axis orientation (none in the file, or slices along "
                  "a patient axis), so it was taken as displayed and seen from the apex; "
                  "if the stack is mirrored (seen from the base), septum and lateral wall are exchanged in the "
                  "segments. Mark the inferior RV insertion point too: a mirrored stack is then refused")


def slice_list_text(slices: list[int], dash: str = "-") -> str:
    """Slice indices as a reader writes them, runs of consecutive slices as ranges: [0, 1, 2, 3, 5, 7, 8] →
    "0-3, 5, 7-8" (``dash`` between a run's ends; an en dash on a page); "" for none."""
    runs: list[list[int]] = []
    for k in sorted(set(int(k) for k in slices)):
        if runs and k == runs[-1][1] + 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    return ", ".join(str(first) if first == last else f"{first}{dash}{last}" for first, last in runs)


def _slices_have(slices: list[int]) -> str:
    """"slice 3 has" or "slices 3, 4 have": a warning's subject."""
    return f"slice {slices[0]} has" if len(slices) == 1 else f"slices {', '.join(map(str, slices))} have"


def gap_slices_warning(with_myocardium: np.ndarray) -> str | None:
    """What the report must say of slices without myocardium between slices with it (``with_myocardium``: per
    slice, base to apex or apex to base): a slice a reader did not draw, or an LV the model missed there, leaves
    that slice's myocardium and scar out of every total. None without such slices."""
    drawn = np.flatnonzero(with_myocardium)
    gaps = [int(k) for k in range(drawn[0], drawn[-1] + 1) if not with_myocardium[k]] if drawn.size else []
    if not gaps:
        return None
    named = _slices_have(gaps)
    return (f"{named} no myocardium between slices that have it: a slice not drawn (or an LV missed there) leaves "
            "its myocardium and scar out of the totals; check it")


def _ras_points(rv_insertion_lps: np.ndarray) -> dict[str, list[float] | None]:
    """The RV insertion points (LPS, as :func:`scarnet.aha.rv_insertion_points` reads them) in RAS mm, rounded to
    0.01 mm, as :attr:`Report.rv_insertion_ras_mm` keeps them."""
    def ras(point: np.ndarray | None) -> list[float] | None:
        # + 0.0: a coordinate of 0 in LPS is 0, not -0.0, in RAS.
        return None if point is None else [round(-float(point[0]), 2) + 0.0, round(-float(point[1]), 2) + 0.0,
                                           round(float(point[2]), 2) + 0.0]

    anterior, inferior = rv_insertion_points(rv_insertion_lps)
    return {"anterior": ras(anterior), "inferior": ras(inferior)}


def all_scar_slices_warning(healthy_voxels: np.ndarray, scar_voxels: np.ndarray) -> str | None:
    """What the report must say of slices with scar (or MVO) and no healthy myocardium (per slice voxel counts):
    their scar is 100 % of the myocardium, which is rarely so; more often the myocardium was not drawn there (a
    Myocardium segment painted on other slices only) and the slice's scar % means nothing. None without such
    slices."""
    slices = [int(k) for k in np.flatnonzero((scar_voxels > 0) & (healthy_voxels == 0))]
    if not slices:
        return None
    named = _slices_have(slices)
    return (f"{named} scar but no healthy myocardium, so scar is 100 % of the myocardium there: a wholly "
            "transmural scar, or myocardium not drawn on that slice; check it")


#: Background that a slice's labels enclose beside its myocardium is said from this area (mm²) on: a stray pixel
#: or two of a brush is not worth a warning, an erased stretch of wall is.
MIN_ENCLOSED_BACKGROUND_MM2 = 10.0


def enclosed_background_warning(labels: np.ndarray, pixel_area_mm2: float, voxel_ml: float) -> str | None:
    """What the report must say of background that a slice's labels (``labels``, (slice, row, column)) enclose
    beside its myocardium: what erasing scar (or myocardium) in Segment Editor leaves, where painting it
    Myocardium was meant. It counts as neither muscle nor scar, so the myocardium is smaller and scar % higher
    than the reader drew. The model's labelmaps have no such holes (:func:`scarnet.inference.postprocess` fills
    them). Not said: the cavity of a ring drawn without blood pool (the largest hole of a slice without blood
    pool), or a hole inside the blood pool that does not touch the wall. None without any of
    :data:`MIN_ENCLOSED_BACKGROUND_MM2` or more on a slice."""
    from scipy import ndimage

    named, voxels = [], 0
    for k, plane in enumerate(labels):
        holes = (plane == BACKGROUND) & ~_outside_the_heart(plane)[1:-1, 1:-1]
        if not holes.any():
            continue
        components, count = ndimage.label(holes)
        if not (plane == LV_BLOOD_POOL).any():
            sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
            holes &= components != int(np.argmax(sizes)) + 1  # the cavity of a ring drawn without blood pool
        beside_wall = ndimage.binary_dilation(np.isin(plane, list(MYOCARDIUM_LABELS)))
        touching = np.unique(components[holes & beside_wall])
        enclosed = int(np.isin(components, touching[touching > 0]).sum())
        if enclosed * pixel_area_mm2 >= MIN_ENCLOSED_BACKGROUND_MM2:
            named.append(k)
            voxels += enclosed
    if not named:
        return None
    where = _slices_have(named)
    # Said of the model's labelmaps too (a gap it left in the wall): the remedy in Segment Editor is the same.
    return (f"{where} background enclosed beside the myocardium ({voxels * voxel_ml:.3g} mL): erased rather than "
            "painted over, or left out by the model? It counts as neither myocardium nor scar, so the myocardium is "
            "smaller and scar % higher than drawn; paint it Myocardium (or Scar) if it is wall, or leave it if it is a "
            "papillary muscle left out")


#: A ring is said to be open where the blood pool meets the background outside the heart along this length (mm) or
#: more: a gap erased across the wall, not a pixel or two of a brush.
MIN_OPEN_RING_MM = 3.0


def _outside_the_heart(plane: np.ndarray) -> np.ndarray:
    """The background of a slice's labels connected to the image's edge (4-connected, as
    ``ndimage.binary_fill_holes`` sees it), padded by one pixel of outside all round: the rest of the background is
    enclosed by the labels."""
    from scipy import ndimage

    components, _ = ndimage.label(np.pad(plane == BACKGROUND, 1, constant_values=True))
    return components == components[0, 0]


def open_ring_warning(labels: np.ndarray, with_myocardium: list[int], base_first: bool | None,
                      pixel_side_mm: float) -> str | None:
    """What the report must say of slices whose blood pool meets the background outside the heart (the image's
    background connected to its edge) along :data:`MIN_OPEN_RING_MM` or more: the wall there was erased rather
    than painted over (scar erased across the wall in Segment Editor leaves a gap, not muscle), or never drawn, and
    counts as neither myocardium nor scar. Background the labels enclose is
    :func:`enclosed_background_warning`'s. The most basal slice's ring may be open through the outflow tract:
    every other slice of ``with_myocardium`` (their indices) is checked (``base_first`` None: the base-apex order
    unknown, neither end of the stack). ``pixel_side_mm``: the side of a pixel (the square root of its area)."""
    from scipy import ndimage

    checked = {None: with_myocardium[1:-1], True: with_myocardium[1:], False: with_myocardium[:-1]}[base_first]
    named = []
    for k in checked:
        contact = np.pad(labels[k] == LV_BLOOD_POOL, 1) & ndimage.binary_dilation(_outside_the_heart(labels[k]))
        if np.count_nonzero(contact) * pixel_side_mm >= MIN_OPEN_RING_MM:
            named.append(k)
    if not named:
        return None
    return (f"{_slices_have(named)} the blood pool open to the background outside the heart (the myocardial ring "
            "broken; the most basal slice, where the outflow tract may open it, is not checked): wall erased rather "
            "than painted over, or not drawn there (by hand or by the model)? It counts as neither myocardium nor "
            "scar; paint it Myocardium (or Scar)")


def missing_levels_warning(levels: list[str | None]) -> str | None:
    """What the report must say when its slices with a cavity are too few for the three AHA levels
    (:func:`scarnet.aha.slice_levels`): the segments of a missing level are left empty, which must not read as
    "no scar there"; None when every level has slices."""
    missing = missing_levels(levels)
    if not missing:
        return None
    numbers = [[n for n, name in SEGMENT_NAMES.items() if name.startswith(f"{level} ")] for level in missing]
    thirds = sum(level in LEVELS for level in levels)
    return (f"AHA segments: {thirds} slice{'s' if thirds != 1 else ''} with myocardium before the apex, too few for "
            f"basal, mid and apical thirds: the {' and '.join(missing)} segments "
            f"({', '.join(f'{n[0]}-{n[-1]}' for n in numbers)}) are left empty, not measured; does the stack cover "
            "the LV from base to apex?")


def intensity_figures(labels: np.ndarray, image: np.ndarray) -> dict[str, Any]:
    """Mean and SD of image intensity per tissue, and scar/remote-myocardium contrast."""
    out: dict[str, Any] = {}
    names = {LV_BLOOD_POOL: "lv_blood_pool", HEALTHY_MYOCARDIUM: "healthy_myocardium", SCAR: "scar", MVO: "mvo"}
    for value, name in names.items():
        voxels = image[labels == value]
        out[name] = {"mean": _round(float(voxels.mean())), "sd": _round(float(voxels.std()))} if voxels.size else None
    scar = image[np.isin(labels, SCAR_LABELS)]
    remote = image[labels == HEALTHY_MYOCARDIUM]
    if scar.size and remote.size and remote.mean() > 0:
        ratio = float(scar.mean() / remote.mean())
        out["scar_to_remote_ratio"] = _round(ratio) if math.isfinite(ratio) else None
    return out


class _CallableModule(types.ModuleType):
    """This module, callable as its :func:`quantify`.

    ``scarnet.quantify`` is the function in the package's API (``scarnet.__all__``), loaded on first use. But once
    this submodule has been imported (segmenting imports it), Python binds the package's attribute of that name to
    the module, and ``scarnet.quantify(labelmap)`` or ``from scarnet import quantify`` gave the module: "'module'
    object is not callable". Calling the module calls the function, so both spellings work in any order.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Report:
        return quantify(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
# What an editor or inspect.signature shows for scarnet.quantify, whichever of the two it is.
__signature__ = inspect.signature(quantify)
_CallableModule.__call__.__doc__ = quantify.__doc__
