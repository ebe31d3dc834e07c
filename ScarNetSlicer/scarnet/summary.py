"""A cohort's summary table (``summary.csv``): one line per exam, its totals, AHA summary and warnings.

``scarnet batch`` writes it for the exams it segments. ``scarnet summarize`` makes the same table from JSON
reports already written (``scarnet segment``/``batch``/``quantify``, Slicer's *Save report*), typically after a
reader has corrected the segmentations: the figures of the corrected reports, in one file, with a column that
says what each report measured (the model's segmentation, an edited one, a labelmap).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import InputError
from .quantify import (
    REPORT_WARNING_KEYS,
    csv_value,
    model_run_record,
    report_warnings,
    scar_on_flagged_slices,
    series_name,
)

#: The summary's columns, in order (the totals are the report's, scarnet.quantify.TotalReport).
#: ``exam``: the exam's name, as ``scarnet batch`` names its outputs (:func:`scarnet.batch.exam_names`: the file's name
#: without its ending, or the folder's where files share a name, ``Case_P100/image.nii.gz``: ``Case_P100``), the
#: key to join the table on; a report that does not record it (not made by a batch) gets it from its input.
#: ``made_from``: what the report measured (:func:`made_from`). ``aha_segments``: how many AHA segments the
#: report has, 17 (16 in a report made before segment 17, the apex, was reported), so that a scar score out of 64
#: can be told apart: 16 segments with myocardium of 17 (no apex slice), or a 16-segment report.
#: ``aha_segments_over_50_percent`` counts segments with scar in more than half of their myocardium by area (grade
#: 3-4), ``transmural_over_50_percent`` is the share of the LV's rays with scar through more than half of the wall:
#: two different figures side by side. The aha_* columns and septal_span_deg are empty for an exam without RV
#: insertion points (scarnet.quantify.Report.segment_summary and Report.septal_span_deg).
SUMMARY_COLUMNS = ("exam", "input", "dicom_series", "status", "made_from", "slices_with_myocardium", "myocardium_ml",
                   "myocardium_g", "scar_ml", "scar_g", "scar_percent", "mvo_ml", "transmural_over_50_percent",
                   "aha_segments", "aha_segments_with_scar", "aha_segments_over_50_percent", "aha_scar_score",
                   "aha_scar_score_max", "septal_span_deg", "slices_flagged", "scar_on_flagged_slices_ml",
                   "warnings", "model_s", "weights_sha256", "scarnet_version", "report")
SUMMARY_NAME = "summary.csv"
_TOTAL_COLUMNS = ("slices_with_myocardium", "myocardium_ml", "myocardium_g", "scar_ml", "scar_g", "scar_percent",
                  "mvo_ml", "transmural_over_50_percent")
#: The columns that hold a number (or nothing).
_NUMBER_COLUMNS = tuple(column for column in SUMMARY_COLUMNS if column in _TOTAL_COLUMNS
                        or column.startswith("aha_")
                        or column in ("septal_span_deg", "scar_on_flagged_slices_ml", "model_s"))


#: ``scarnet quantify --segmented-by`` (who made the labelmap) as ``made_from`` says it.
_SEGMENTED_BY_MADE_FROM = {"model": "ScarNet model", "model-and-reader": "edited segmentation",
                           "reader": "reader's segmentation"}


def made_from(report: dict[str, Any]) -> str:
    """What a report (:meth:`scarnet.quantify.Report.to_dict`) measured: "ScarNet model" (segment, batch, the
    Slicer module's run), "edited segmentation" / "segmentation" (the Slicer module's *Update report*, after
    edits or not), or for ``scarnet quantify`` what its ``--segmented-by`` said ("ScarNet model", "edited
    segmentation", "reader's segmentation"), else "labelmap"."""
    source = report.get("source")
    if source == "segmentation":
        return "edited segmentation" if report.get("edited") else "segmentation"
    if source == "ScarNet model" or report.get("inference"):
        return "ScarNet model"
    return _SEGMENTED_BY_MADE_FROM.get(report.get("segmented_by"), "labelmap")


def summary_figures(report: dict[str, Any], report_name: str) -> dict[str, Any]:
    """One summary line's figures (every column but ``input`` and ``status``) from a report in its dict form."""
    total = report.get("total") or {}
    segments = report.get("segment_summary") or {}
    aha = report.get("segments")
    if aha is not None and not isinstance(aha, list):
        raise TypeError("segments must be a list")
    timings = (report.get("inference") or {}).get("timings_s") or {}
    weights = model_run_record(report).get("weights") or {}
    slices = report.get("slices") or []
    return {
        "dicom_series": series_name(report.get("input_series")) or None,
        "made_from": made_from(report),
        **{column: total.get(column) for column in _TOTAL_COLUMNS},
        "aha_segments": len(aha) if aha is not None else None,
        "aha_segments_with_scar": segments.get("segments_with_scar"),
        "aha_segments_over_50_percent": segments.get("segments_over_50_percent"),
        "aha_scar_score": segments.get("scar_score"), "aha_scar_score_max": segments.get("scar_score_max"),
        "septal_span_deg": report.get("septal_span_deg"),
        "slices_flagged": sum(bool(s.get("qc_flags")) for s in slices),
        # A normal heart's false scar often lies on flagged slices only: the cohort's table says how much (as the
        # page does), so that it is not read as scar measured. Empty for a report without QC flags (no model run).
        "scar_on_flagged_slices_ml": round(scar_on_flagged_slices(slices)[0], 4) if "qc" in report else None,
        # Slicer's notices of segments it did not count belong with the warnings: a corrected report that
        # dropped a segment must not look clean in the cohort's table. The input, which its own column names, is
        # not repeated in front of each (a 100-character path in every line of a cohort's warnings).
        "warnings": " | ".join(without_input(text, report.get("input")) for text in
                               _texts([*report_warnings(report), *(report.get("segments_left_out") or [])])),
        "model_s": timings.get("total_s"),
        # Which model made the segmentation (an edited one's: the run it was corrected from), which version measured.
        "weights_sha256": weights.get("sha256") if isinstance(weights, dict) else None,
        "scarnet_version": report.get("scarnet_version"),
        "report": report_name,
    }


def without_input(message: str, given: Any) -> str:
    """``message`` without the input's name in front (``INPUT: its sform makes ...``): in the summary, the line's
    ``input`` column names it."""
    if isinstance(given, str) and given and message.startswith(f"{given}: ") and len(message) > len(given) + 2:
        return message[len(given) + 2:]
    return message


def _texts(values: Any) -> list[str]:
    """The warnings as text; anything else (a report edited by hand) raises TypeError."""
    if not all(isinstance(value, str) for value in values):
        raise TypeError("warnings must be text")
    return list(values)


def summary_csv(lines: Sequence[Sequence[Any]]) -> str:
    """The summary as CSV text: the header, then ``lines`` (values in :data:`SUMMARY_COLUMNS` order)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for line in lines:
        writer.writerow([csv_value(value) for value in line])
    return buffer.getvalue()


def report_files(inputs: Sequence[str | Path]) -> list[tuple[Path, bool]]:
    """The JSON reports named, each with whether it was named itself (True) or found in a folder (False): files
    as given, and for a folder its ``*.json`` files (sorted by name) but Slicer's markups (``*.mrk.json``) and
    hidden files. Raises :class:`InputError` for a missing path, a file that is not ``.json``, a folder without
    any, or a report named twice."""
    files: list[tuple[Path, bool]] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            try:
                found = sorted((p for p in path.iterdir() if p.suffix.lower() == ".json" and p.is_file()
                                and not p.name.startswith(".") and not p.name.lower().endswith(".mrk.json")),
                               key=lambda p: p.name)
            except OSError as error:
                raise InputError(f"{path}: cannot be read ({error.strerror or error})") from None
            if not found:
                raise InputError(f"{path}: no JSON report in this folder")
            files.extend((p, False) for p in found)
        elif not path.exists():
            raise InputError(f"{path}: no such file")
        elif path.suffix.lower() != ".json":
            raise InputError(f"{path}: not a JSON report (summarize reads the .json reports; a CSV report "
                             "lacks the warnings' sources and the AHA summary)")
        else:
            files.append((path, True))
    seen: dict[Path, Path] = {}
    for path, _ in files:
        key = path.resolve()
        if key in seen:
            raise InputError(f"{path}: named twice (also as {seen[key]}); each exam once")
        seen[key] = path
    return files


def read_report(path: str | Path) -> dict[str, Any]:
    """A JSON report of scarnet (:meth:`scarnet.quantify.Report.to_dict`), or :class:`InputError` in one line."""
    path = Path(path)
    from .io import check_text_file

    not_a_report = f"{path}: not a JSON report of scarnet"
    check_text_file(path, "a JSON report")  # a FIFO or /dev/zero would never be read to its end
    try:
        # utf-8-sig: a report re-saved by a Windows editor starts with a byte-order mark.
        report = json.loads(path.read_text(encoding="utf-8-sig"), parse_constant=_no_constant)
        json.dumps(report, ensure_ascii=False).encode("utf-8")  # text the summary can hold (no lone surrogates)
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror or error})") from None
    except (UnicodeError, ValueError, RecursionError) as error:
        raise InputError(f"{not_a_report} ({type(error).__name__})") from None
    if not (isinstance(report, dict) and isinstance(report.get("total"), dict)
            and isinstance(report.get("slices"), list) and all(isinstance(s, dict) for s in report["slices"])):
        raise InputError(f"{not_a_report} (no 'total' and 'slices')")
    missing = [key for key in _REQUIRED_TOTALS if key not in report["total"]]
    if missing:  # a line of blanks in the cohort's table would read as an exam without scar
        raise InputError(f"{not_a_report} (its 'total' has no {' and '.join(missing)})")
    return report


#: The totals every report of scarnet holds (a labelmap without myocardium is refused, not reported).
_REQUIRED_TOTALS = ("myocardium_ml", "scar_ml")


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON, and never in scarnet's reports (written with ``allow_nan=False``)."""
    raise ValueError(f"{name} is not a number a report holds")


def _report_path(path: Path, relative_to: str | Path | None) -> str:
    """Where the summary's ``report`` column finds ``path``: relative to ``relative_to`` (the summary's folder),
    absolute where it cannot be (another drive), as found without one. Reports of several folders often share a
    name (each patient's ``lge_report.json``): the name alone would not say which."""
    if relative_to is None:
        return str(path)
    # abspath, not resolve: a report reached through a link is named by the link, as given. Forward slashes, as
    # the docs show them, on every system (Windows reads them too).
    try:
        return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(relative_to))).as_posix()
    except ValueError:  # Windows: another drive
        return Path(os.path.abspath(path)).as_posix()


def _figures(report: dict[str, Any], path: Path, report_name: str) -> dict[str, Any]:
    """:func:`summary_figures`, with values of the wrong kind (a report edited by hand, or not scarnet's) refused
    with the file's name."""
    try:
        inference = report.get("inference") or {}
        if not isinstance(inference, dict):
            raise TypeError("inference must be a record")
        for lists, key in [*((report, key) for key in (*REPORT_WARNING_KEYS, "segments_left_out")),
                           (inference, "warnings")]:
            if lists.get(key) is not None and not isinstance(lists[key], list):
                raise TypeError(f"{key} must be a list")  # a text would be taken letter by letter
        if report.get("input") is not None and not isinstance(report["input"], str):
            raise TypeError("input must be text")
        figures = summary_figures(report, report_name)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise InputError(f"{path}: not a JSON report of scarnet ({type(error).__name__}: an entry of the wrong "
                         "kind)") from None
    for column in _NUMBER_COLUMNS:
        value = figures[column]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):  # 1e999 reads as infinity
            raise InputError(f"{path}: not a JSON report of scarnet ({column} is not a number)")
    return figures


def summarize(inputs: Sequence[str | Path], skipped: list[str] | None = None,
              repeated: list[str] | None = None, relative_to: str | Path | None = None) -> list[list[Any]]:
    """The summary lines of the reports ``inputs`` name (:func:`report_files`), in that order. Every report is
    read before any line is made. A file named itself that is not a report stops it with its name; one found in
    a folder (an evaluation's JSON, a settings file) is left out, and said in ``skipped``. An exam that several
    reports of one folder name is said in ``repeated`` (its lines are all kept). The ``report`` column is each
    report's path relative to ``relative_to`` (the summary's folder: a batch's own reports are their bare names,
    as in its summary.csv), or as found when None."""
    from .io import itk_file_name

    reports: list[tuple[Path, dict[str, Any], dict[str, Any]]] = []
    for path, named in report_files(inputs):
        try:
            itk_file_name(path, InputError)  # a name the UTF-8 CSV could not hold (names given were checked)
            report = read_report(path)
            figures = _figures(report, path, _report_path(path, relative_to))
        except InputError as error:
            if named:
                raise
            if skipped is not None:
                skipped.append(str(error))
            continue
        reports.append((path, report, figures))
    if not reports:
        raise InputError("no scarnet JSON report among the files given" + (f" ({skipped[0]})" if skipped else ""))
    # Each report's input, recorded exam and input's parts once: both the repeated exams and the exam names use them.
    keys = _ExamKeys(reports)
    messages, counted_twice = _repeated_exams(reports, keys)
    if repeated is not None:
        repeated.extend(messages)
    lines = []
    for (path, report, figures), exam in zip(reports, _exams(keys)):
        if path in counted_twice:  # in the table too: a CSV read alone must not hide that an exam counts twice
            figures["warnings"] = " | ".join(part for part in (counted_twice[path], figures["warnings"]) if part)
        lines.append([exam, report.get("input") or str(path), figures["dicom_series"], "ok",
                      *(figures[column] for column in SUMMARY_COLUMNS[4:])])
    return lines


class _ExamKeys:
    """What names each report's exam, found once per report: ``given``, its input (None where it names none, an
    older report), ``recorded``, the exam a batch recorded in it (None where none), in the reports' order, and
    ``parts``, each input's :func:`_input_parts`."""

    def __init__(self, reports: Sequence[tuple[Path, dict[str, Any], dict[str, Any]]]) -> None:
        self.given: list[str | None] = [
            report.get("input") if isinstance(report.get("input"), str) and report.get("input") else None
            for _, report, _ in reports]
        self.recorded: list[str | None] = [
            report["exam"] if isinstance(report.get("exam"), str) and report["exam"] else None
            for _, report, _ in reports]
        self.parts: dict[str, tuple[str, ...]] = {g: _input_parts(g) for g in self.given if g is not None}


def _exams(keys: _ExamKeys) -> list[str | None]:
    """Each report's exam name: the one a batch recorded (``exam``; a report without one gets that of a report of
    the same input, :func:`_same_parts`), else its input's as a batch of these inputs would name it
    (:func:`scarnet.batch.exam_names`: ``Case_P100/image.nii.gz`` beside ``Case_P101/image.nii.gz`` is
    ``Case_P100``), else the input's own (:func:`scarnet.batch.exam_name`); None without an input."""
    from .batch import exam_name, exam_names

    given, recorded, parts = keys.given, keys.recorded, keys.parts
    # One input named relative in one report and absolute in another is one exam: named once, by its first form
    # (given both, exam_names would refuse it as given twice, or name every exam by the folders above).
    first_form: dict[str, str] = {}
    distinct: list[str] = []
    for g in parts:
        first_form[g] = next((kept for kept in distinct if _same_parts(parts[g], parts[kept])), g)
        if first_form[g] == g:
            distinct.append(g)
    try:
        named = dict(zip(distinct, exam_names(distinct)))
        named = {g: named[first_form[g]] for g in first_form}
    except (InputError, OSError):  # one file under two names, or names nothing tells apart: each its own
        named = {}
    exams: list[str | None] = []
    for g, exam in zip(given, recorded):
        if exam is not None or g is None:
            exams.append(exam)
            continue
        same = {other_exam for other, other_exam in zip(given, recorded)
                if other_exam is not None and other is not None and _same_parts(parts[g], parts[other])}
        try:
            exams.append(next(iter(same)) if len(same) == 1 else named.get(g) or exam_name(g))
        except InputError:  # the root folder
            exams.append(None)
    return exams


def _input_parts(given: str) -> tuple[str, ...]:
    from .batch import exam_key

    return tuple(exam_key(part) for part in re.split(r"[\\/]", given) if part not in ("", ".", ".."))


def _same_parts(given: tuple[str, ...], other: tuple[str, ...]) -> bool:
    """Whether two reports' inputs (their :func:`_input_parts`) are one file or DICOM folder: the same path, or one
    that ends the other (one command named it relative, the other absolute), in any case."""
    shorter, longer = sorted((given, other), key=len)
    return bool(shorter) and longer[len(longer) - len(shorter):] == shorter


def _repeated_exams(reports: Sequence[tuple[Path, dict[str, Any], dict[str, Any]]], keys: _ExamKeys
                    ) -> tuple[list[str], dict[Path, str]]:
    """One message per exam that more than one report in one folder names: the model's report and a corrected one
    saved beside it would count that exam twice in a cohort's figures. Reports of one folder name one exam when
    they name one DICOM series and the exam a batch recorded in both, or else one input file or DICOM folder: the
    same path, or one that ends the other (one command may have named it relative, the other absolute), compared
    in any case. Not by the file's name alone: a batch of ``Case_*/image.nii.gz`` writes its reports into one
    folder, each of another exam (QA helper-126: 100 exams were each said to be "counted 100 times"). Reports in
    different folders are never taken for one exam: each patient's folder may name its image alike
    (``lge.nii.gz``). Also, for each such report, what its line's warnings say (by the report's path)."""
    from .batch import exam_key

    compared = []  # (index, folder, series, recorded exam, the input's parts (_input_parts), the input's name)
    for index, ((path, _, figures), given, exam) in enumerate(zip(reports, keys.given, keys.recorded)):
        if given is None:
            continue  # an older report without its input: nothing to compare
        compared.append((index, path.parent.absolute(), figures["dicom_series"], exam, keys.parts[given],
                         Path(given).name))
    group = list(range(len(reports)))  # union-find over the reports' indices

    def root(index: int) -> int:
        while group[index] != index:
            group[index] = group[group[index]]
            index = group[index]
        return index

    for n, (i, folder, series, exam, parts, _) in enumerate(compared):
        for j, other_folder, other_series, other_exam, other_parts, _ in compared[n + 1:]:
            if folder != other_folder or series != other_series:
                continue
            if exam is not None and other_exam is not None:
                same = exam_key(exam) == exam_key(other_exam)
            else:
                same = _same_parts(parts, other_parts)
            if same:
                group[root(j)] = root(i)
    members: dict[int, list[tuple[int, Path, Any, str]]] = {}
    for i, folder, series, exam, _, name in compared:
        members.setdefault(root(i), []).append((i, folder, series, exam or name))
    messages: list[str] = []
    by_path: dict[Path, str] = {}
    for same in members.values():
        if len(same) < 2:
            continue
        named = [(reports[i][0], f"{reports[i][0]} ({reports[i][2]['made_from']})") for i, *_ in same]
        folder, series = same[0][1], same[0][2]
        name = next((exam for i, _, _, exam in same if isinstance(reports[i][1].get("exam"), str)), same[0][3])
        # Worded as what was compared: the reports of one folder (others, elsewhere, may be of the same exam too).
        messages.append(f"{len(named)} reports in the summary from {folder} are of {name}"
                        f"{f' series {series}' if series else ''} ({', '.join(text for _, text in named)}): the "
                        f"cohort's figures count that exam {len(named)} times (reports in other folders are not "
                        "compared); name the one to keep")
        for path, _ in named:
            others = ", ".join(text for other, text in named if other != path)
            by_path[path] = f"counted {len(named)} times: this summary also has {others} of this exam; keep one"
    return messages, by_path


__all__ = ["SUMMARY_COLUMNS", "SUMMARY_NAME", "made_from", "read_report", "report_files", "summarize",
           "summary_csv", "summary_figures", "without_input"]
