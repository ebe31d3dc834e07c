"""Many exams in one run (``scarnet batch``): the model loaded once, one summary row per exam.

For a cohort: each input (a NIfTI/NRRD/MHA file or a DICOM folder) is segmented and quantified as
``scarnet segment`` does, its outputs written into the output folder under the input's name
(``NAME.seg.nrrd``, ``NAME_report.json`` and, when asked, ``NAME_report.html`` and the DICOM SEG
``NAME_seg.dcm``), and a line added
to ``summary.csv``: the totals, the warnings and the number of slices with QC flags, or why the
exam failed. An exam that fails (unreadable, no heart found) does not stop the others; the run
ends with a non-zero status when any failed. Every output is checked before the first exam runs,
so an existing file (without ``overwrite``) or two inputs of the same name stop the run before
the model loads, and each exam's files are written together or not at all.

A points file (``--rv-points``, :func:`read_rv_points`) gives exams their RV insertion points, as
``--rv-insertion`` and ``--rv-inferior-insertion`` do for ``scarnet segment``: those exams get the AHA
17-segment report, and their summary line the segment summary (segments with scar, segments with
scar through more than half, the scar score) and the septal arc. Its optional ``basal_end`` column
is ``--basal-end`` for the exams whose orientation and cavity size do not tell the base.
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, OutputExistsError, ScarNetError
from .io import name_key
from .outputs import DICOM_SEG, HTML_REPORT, REPORT, SEGMENTATION, OutputSet
from .quantify import report_warnings, series_name
from .summary import SUMMARY_COLUMNS, SUMMARY_NAME, summary_figures, without_input
from .summary import summary_csv as _summary_csv

_IMAGE_ENDINGS = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".nhdr")  # longest first


def exam_name(path: str | Path) -> str:
    """The name an exam's outputs get: the file's name without its image ending, or the DICOM folder's name."""
    path = Path(path)
    name = path.name if path.name not in ("", ".", "..") else path.resolve().name
    if not name:
        raise InputError(f"{path}: no name to give its outputs (the root folder)")
    lowered = name.lower()
    for ending in _IMAGE_ENDINGS:
        if lowered.endswith(ending) and len(name) > len(ending):
            return name[: -len(ending)]
    return name


def exam_names(paths: Sequence[str | Path]) -> list[str]:
    """Each input's exam name: :func:`exam_name`, except where inputs share one (``Case_P100/image.nii.gz``,
    ``Case_P101/image.nii.gz``, as data sets and nnU-Net-style folders lay exams out): those are named by their
    folders, the nearest ones that tell them apart (``Case_P100``; ``site1_Case_P100`` when the exam folders' names
    repeat too); DICOM folders of one name keep it after their parents' (``site1/P001``, ``site2/P001``:
    ``site1_P001``, ``site2_P001``). :class:`InputError` for an input given twice, or names nothing tells apart."""
    paths = [Path(path) for path in paths]
    names = [exam_name(path) for path in paths]
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        groups.setdefault(exam_key(name), []).append(index)
    for members in (members for members in list(groups.values()) if len(members) > 1):
        resolved = [paths[i].resolve() for i in members]
        if len(set(resolved)) < len(resolved):
            twice = paths[members[next(j for j, r in enumerate(resolved) if resolved.count(r) > 1)]]
            raise InputError(f"{twice} is given twice: give each exam once")
        # The folders as given (made absolute, not resolved): a link's target folder (a DataLad/git-annex store's
        # object folder, a deduplicating copy) names no exam. Without the root.
        parents = [Path(os.path.abspath(paths[i])).parent.parts[1:] for i in members]
        # A file's name (image.nii.gz) is dropped, the folder being the exam's; a DICOM folder's own name (a patient
        # or exam number) is kept after its parents' (site1_P001).
        # (The name of the folder as made absolute: "." given in a DICOM folder is that folder.)
        own = [(names[i],) if Path(os.path.abspath(paths[i])).name == names[i] else () for i in members]
        in_group = set(members)
        others = {exam_key(name) for i, name in enumerate(names) if i not in in_group}  # the same at every depth
        for depth in range(1, max(len(p) for p in parents) + 1):
            candidates = ["_".join(p[-depth:] + kept) for p, kept in zip(parents, own)]
            keys = [exam_key(c) for c in candidates]
            if all(candidates) and len(set(keys)) == len(keys) and not others & set(keys):
                for i, candidate in zip(members, candidates):
                    names[i] = candidate
                break
        else:
            raise InputError(f"{paths[members[0]]} and {paths[members[1]]} would both write {names[members[0]]}"
                             "_report.json, and their folders do not tell them apart: give the inputs different "
                             "names, or run them apart")
    return names


@dataclass
class ExamOutputs:
    """Where one exam's outputs go."""

    input: Path
    seg: Path
    report: Path
    html: Path | None
    #: The DICOM SEG (:mod:`scarnet.dicom_seg`) of a DICOM folder input, when asked.
    dicom_seg: Path | None = None
    #: The exam's name (:func:`exam_names`): its outputs' and its points-file row's.
    name: str = ""


@dataclass
class BatchRow:
    """One exam's line of the summary."""

    input: str
    status: str = "not run"
    figures: dict[str, Any] = field(default_factory=dict)
    #: What the exam warned of: its report's warnings, or (when it failed) those raised before it did;
    #: the summary joins them.
    warnings: list[str] = field(default_factory=list)
    #: Other warnings while the model ran (libraries): shown, not put in the report.
    other_warnings: list[str] = field(default_factory=list)
    internal_error: bool = False
    #: Done by an earlier run of the batch (``skip_done``): its files kept, its line read from its report.
    done_earlier: bool = False
    #: The exam's name (:func:`exam_names`): its outputs', its points-file row's, the summary's ``exam`` column.
    exam: str = ""

    def values(self) -> list[Any]:
        return [self.exam or None, self.input, self.figures.get("dicom_series"), self.status,
                *(self.figures.get(c) for c in SUMMARY_COLUMNS[4:])]


def plan_outputs(inputs: Sequence[str | Path], out_dir: str | Path, html: bool,
                 dicom_seg: bool = False) -> list[ExamOutputs]:
    """Each input's output paths in ``out_dir``, named by :func:`exam_names`; :class:`InputError` when two inputs
    would share them, or (with ``dicom_seg``) an input is a file, not a DICOM folder."""
    out_dir = Path(out_dir)
    plans = []
    if any(Path(path).resolve() == out_dir.resolve() for path in inputs):
        raise InputError(f"{out_dir} is both an input and the output folder")
    # Names compared in any case and one Unicode form (exam_key), as a points file's rows are matched and as macOS
    # and Windows file names clash.
    for path, name in zip(inputs, exam_names(inputs)):
        plans.append(ExamOutputs(Path(path), out_dir / f"{name}.seg.nrrd", out_dir / f"{name}_report.json",
                                 out_dir / f"{name}_report.html" if html else None,
                                 out_dir / f"{name}_seg.dcm" if dicom_seg else None, name))
        if dicom_seg and Path(path).exists() and not Path(path).is_dir():
            raise InputError(f"{path}: --dicom-seg needs DICOM folders as inputs (a DICOM SEG refers to the DICOM "
                             "images it was made from); run the other inputs without it")
    outputs = {p.resolve() for plan in plans for p in (plan.seg, plan.report, plan.html, plan.dicom_seg)
               if p is not None}
    for plan in plans:  # e.g. `scarnet batch data/* --out data` after an earlier run there
        if plan.input.resolve() in outputs:
            raise InputError(f"{plan.input} is an input and also one of this run's outputs: keep the outputs "
                             "in another folder")
    return plans


#: The columns of a points file: the exam's name (as :func:`exam_name` gives it), then the anterior and
#: (optional) inferior RV insertion point in RAS millimetres, as Slicer shows a point, and (optional) which
#: end of the slice index is basal ("first" or "last", as ``scarnet segment --basal-end``).
POINT_COLUMNS = ("exam", "anterior_r", "anterior_a", "anterior_s", "inferior_r", "inferior_a", "inferior_s",
                 "basal_end")
_REQUIRED_POINT_COLUMNS = POINT_COLUMNS[:4]


@dataclass(frozen=True)
class ExamAnatomy:
    """What a points file says of one exam, in the engine's terms (:func:`scarnet.quantify.quantify`)."""

    #: LPS mm: shape (3,) for the anterior RV insertion point alone, (2, 3) with the inferior one; None: no point.
    rv_insertion_lps: np.ndarray | None = None
    #: "first" or "last"; None: from the image's orientation, else from the cavity size.
    basal_end: str | None = None
    #: The line of the points file that gave it (for messages); None when not from a file.
    line: int | None = None


def read_rv_points(path: str | Path) -> dict[str, ExamAnatomy]:
    """The exams of a points file by name: their RV insertion points (LPS) and basal end.

    A CSV with a header of :data:`POINT_COLUMNS` (any case and order; the ``inferior_*`` and ``basal_end``
    columns may be left out or left empty). Commas, semicolons or tabs separate the cells, and with
    semicolons or tabs a decimal comma is read too (a spreadsheet's CSV in many European locales); empty
    cells past the last column (a spreadsheet's used range) are ignored. A line whose cells are all empty
    but the name says nothing of its exam, but the name must still be an input's (:func:`points_for_exams`).
    Raises :class:`InputError` (naming the line) for a file that
    cannot be read, an unknown or missing column, a number that is not finite, a point with a cell
    missing, an inferior point without an anterior one, a basal end other than first or last, an
    exam named twice, or a name over several lines (a quote left open swallows the lines after it).
    """
    from .io import check_text_file

    path = Path(path)
    check_text_file(path, "a CSV of RV insertion points")  # a FIFO or /dev/zero would never be read to its end
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel's "CSV UTF-8" starts with a byte-order mark
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file (save the points as CSV UTF-8)") from None
    except OSError as error:
        raise InputError(f"{path}: could not be read ({error.strerror or error})") from None
    first_line = next((line for line in text.splitlines() if line.strip()), None)
    if first_line is None:
        raise InputError(f"{path}: empty; expected a header line: {','.join(POINT_COLUMNS)}")
    delimiter = max(",;\t", key=first_line.count)
    # newline="": quoted cells may hold line breaks, and reader.line_num counts the file's lines.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    points: dict[str, ExamAnatomy] = {}
    line_of: dict[str, int] = {}
    header: list[str] | None = None
    record_end = 0
    try:
        for cells in reader:
            number, record_end = record_end + 1, reader.line_num  # the line the record starts on
            cells = [cell.strip() for cell in cells]
            while cells and not cells[-1]:  # a spreadsheet's empty cells past the last column
                cells.pop()
            if not cells:
                continue  # a blank line
            if header is None:
                header = _point_file_header(path, cells)
                continue
            if len(cells) > len(header):
                raise InputError(f"{path} line {number}: {len(cells)} cells under a header of {len(header)}")
            row = dict(zip(header, cells))
            name = row.get("exam", "")
            if not name:
                raise InputError(f"{path} line {number}: no exam name")
            if "\n" in name or "\r" in name:
                raise InputError(f"{path} line {number}: the exam name {name[:40]!r} runs over lines: a quote "
                                 "left open?")
            if exam_key(name) in line_of:
                raise InputError(f"{path} line {number}: {name} was given on line {line_of[exam_key(name)]} already")
            line_of[exam_key(name)] = number
            anterior = _point(path, number, row, "anterior", delimiter)
            inferior = _point(path, number, row, "inferior", delimiter)
            if inferior is not None and anterior is None:
                raise InputError(f"{path} line {number}: an inferior RV insertion point without the anterior one, "
                                 "where the segments start")
            basal_end = row.get("basal_end", "").lower() or None
            if basal_end not in (None, "first", "last"):
                raise InputError(f"{path} line {number}: basal_end {row['basal_end']!r}: first or last (the slice "
                                 "index of the base), or empty")
            lps = anterior if inferior is None else np.stack([anterior, inferior])
            points[name] = ExamAnatomy(lps, basal_end, number)  # a name alone too: it must be an input's
    except csv.Error as error:  # e.g. a cell over the csv module's size limit
        raise InputError(f"{path} line {record_end + 1}: not readable as CSV ({error})") from None
    return points


def _point_file_header(path: Path, cells: list[str]) -> list[str]:
    header = [cell.lower() for cell in cells]
    unknown = [cell for cell in header if cell not in POINT_COLUMNS]
    missing = [column for column in _REQUIRED_POINT_COLUMNS if column not in header]
    if unknown or missing or len(set(header)) != len(header):
        problem = (f"unknown column '{unknown[0]}'" if unknown else f"no column '{missing[0]}'" if missing
                   else "a column named twice")
        raise InputError(f"{path}: {problem}; the header must name {', '.join(_REQUIRED_POINT_COLUMNS)} and may add "
                         f"{', '.join(POINT_COLUMNS[4:])}")
    return header


def exam_key(name: str) -> str:
    """An exam name as compared: any case, and one Unicode form (macOS file names are decomposed, what a
    spreadsheet saves is usually composed), as the file systems that hold its outputs compare names
    (:func:`scarnet.io.name_key`)."""
    return name_key(name)


#: Characters a number of mm may hold (after a decimal comma became a point): digits, sign, point, exponent.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _point(path: Path, number: int, row: dict[str, str], which: str, delimiter: str) -> np.ndarray | None:
    """One point of a points file's line, RAS cells → LPS; None when its three cells are empty."""
    cells = [row.get(f"{which}_{axis}", "") for axis in "ras"]
    if not any(cells):
        return None
    values = []
    for axis, cell in zip("ras", cells):
        text = cell.replace("\u2212", "-")  # a typographic minus, as some spreadsheets export
        if delimiter != ",":
            text = text.replace(",", ".")
        value = float(text) if _NUMBER.fullmatch(text) else float("nan")
        if not np.isfinite(value):
            raise InputError(f"{path} line {number}: {which}_{axis} "
                             f"{'is empty' if not cell else repr(cell) + ' is not a number of mm'}")
        values.append(value)
    r, a, s = values
    return np.array([-r, -a, s])  # RAS (as Slicer shows a point) → the engine's LPS


def points_for_exams(points: Mapping[str, ExamAnatomy], plans: Sequence[ExamOutputs],
                     source: str | Path = "the points file") -> list[ExamAnatomy]:
    """Each planned exam's entry of ``points`` (an empty one without); :class:`InputError` when ``points`` names
    an exam that is not among the inputs (a misspelt name would otherwise leave an exam without its segments)."""
    by_name = {exam_key(plan.name): index for index, plan in enumerate(plans)}
    chosen = [ExamAnatomy()] * len(plans)
    for name, point in points.items():
        index = by_name.get(exam_key(name))
        if index is None:
            known = ", ".join(plan.name for plan in plans[:5]) + (", ..." if len(plans) > 5 else "")
            where = f"{source} line {point.line}" if point.line is not None else str(source)
            raise InputError(f"{where}: no input is named {name} (an exam's name is its file's name without the "
                             f"ending, or its DICOM folder's name; its folder's where inputs share a file name: "
                             f"{known})")
        chosen[index] = point
    return chosen


def _output_set(plan: ExamOutputs, overwrite: bool, folder: Path) -> OutputSet:
    outputs = OutputSet(overwrite, folder=folder)
    outputs.add(plan.seg, SEGMENTATION, "--out")
    outputs.add(plan.report, REPORT, "--out")
    outputs.add(plan.html, HTML_REPORT, "--out")
    outputs.add(plan.dicom_seg, DICOM_SEG, "--out")
    return outputs


def run_batch(inputs: Sequence[str | Path], out_dir: str | Path,
              make_segmenter: Callable[[], Callable[[Any, str, np.ndarray | None, str | None], Any]], *,
              html: bool = False, dicom_seg: bool = False, overwrite: bool = False, series: str | None = None,
              rv_points: Mapping[str, ExamAnatomy] | None = None, rv_points_source: str | Path = "the points file",
              on_exam: Callable[[int, int, BatchRow], None] | None = None,
              skip_done: bool = False, on_start: Callable[[], None] | None = None) -> list[BatchRow]:
    """Segment every input and write its outputs and ``summary.csv`` in ``out_dir`` (created when
    needed); return the summary's rows.

    ``make_segmenter()`` is called once, after the outputs are checked, and returns ``segment(volume,
    name, rv_insertion_lps, basal_end)`` (e.g. a :class:`~scarnet.inference.Segmenter` call); its
    errors (weights that cannot be loaded) stop the run, while an exam's own errors (unreadable input,
    no heart found) are that exam's row. Raises before any exam runs when an output exists (without
    ``overwrite``) or two inputs share a name. ``series`` picks the DICOM series of every DICOM folder
    (as ``scarnet segment --series``); files are read as they are. ``dicom_seg``: each input is a DICOM
    folder, and its result is also written as a DICOM SEG (``NAME_seg.dcm``, :mod:`scarnet.dicom_seg`).
    ``rv_points`` maps exam names (:func:`exam_name`, any case) to their RV insertion points and basal
    end (:func:`read_rv_points`, which ``rv_points_source`` names in messages); a name that is no
    input's stops the run before the model loads. ``on_start()`` is called when the exams' loop begins (the
    model loaded, or not needed): from then on ``summary.csv`` is written however the run ends, also when it is
    interrupted (the exams not reached are "not run"); an interrupt before it leaves nothing written.
    ``on_exam(number, count, row)`` is called after each exam. ``skip_done`` continues such a run: an exam whose
    files an earlier run wrote in ``out_dir`` (all of them, its report the model's report of that input:
    :func:`_done_earlier`) is not run again, and its line is read from its report; ``summary.csv`` is rewritten.
    """
    from .errors import OutputError
    from .io import write_text

    out_dir = Path(out_dir)
    if dicom_seg:
        from .dicom_seg import require_highdicom

        require_highdicom()
    plans = plan_outputs(inputs, out_dir, html, dicom_seg)
    missing = [plan.input for plan in plans if not plan.input.exists()]
    if missing:
        # A mistyped name is told now, not as a failed row after hours of other exams.
        more = f" (and {len(missing) - 1} more of the inputs)" if len(missing) > 1 else ""
        raise InputError(f"{missing[0]}: no such file or folder{more}; nothing was run")
    exam_points = points_for_exams(rv_points or {}, plans, rv_points_source)
    summary_path = out_dir / SUMMARY_NAME
    done = {id(plan): report for plan in plans if skip_done and (report := _done_earlier(plan)) is not None}
    # Every output checked now: a run does not stop at exam 30 on a file left from an earlier one.
    check = OutputSet(overwrite, folder=out_dir)
    if not skip_done:  # (continuing a run rewrites its summary)
        check.add(summary_path, REPORT, "--out")
    for plan in plans:
        if id(plan) in done:
            continue  # its files are kept
        for path, kind in ((plan.seg, SEGMENTATION), (plan.report, REPORT), (plan.html, HTML_REPORT),
                           (plan.dicom_seg, DICOM_SEG)):
            check.add(path, kind, "--out")
    check.prepare()
    # Not loaded when every exam was done by an earlier run (--skip-done again): nothing to segment.
    segment = make_segmenter() if len(done) < len(plans) else None
    rows = [BatchRow(str(plan.input), exam=plan.name) for plan in plans]
    try:
        # Inside the try: once the caller is told the loop began, the finally below writes the summary.
        if on_start is not None:
            on_start()
        for number, (plan, row, points) in enumerate(zip(plans, rows, exam_points), start=1):
            if id(plan) in done:
                # All at once, after both reads: an interrupt while they are read leaves the line "not run", empty.
                row.warnings, row.figures, row.status, row.done_earlier = (
                    report_warnings(done[id(plan)]), summary_figures(done[id(plan)], plan.report.name), "ok", True)
                if on_exam is not None:
                    on_exam(number, len(plans), row)
                continue
            try:
                report = _run_exam(plan, segment, points, overwrite, out_dir, series, row)
            except ScarNetError as error:
                row.status = f"failed: {without_input(str(error), str(plan.input))}"  # the line names the input
                _failed_exam_warnings(plan, row)
            except Exception as error:  # a bug on one exam: said, and the others still run
                row.status = f"failed: internal error: {type(error).__name__}: {' '.join(str(error).split())[:200]}"
                _failed_exam_warnings(plan, row)
                row.internal_error = True
            else:
                row.status = "ok"
                row.warnings = report.warnings()
                row.figures = summary_figures(report.to_dict(), plan.report.name)
            if on_exam is not None:
                on_exam(number, len(plans), row)
    finally:
        # Also after an interrupt: the exams done are listed, the others "not run". Checked to be new up front:
        # one that appeared since (another run into this folder) is not replaced without ``overwrite``.
        try:
            out_dir.mkdir(parents=True, exist_ok=True)  # when no exam wrote anything
            write_text(summary_csv(rows), summary_path, overwrite=overwrite or skip_done)  # (a BOM where needed)
        except OutputExistsError:
            # Not there when checked: another run (a second batch into this --out) wrote it meanwhile. Said as
            # that, with where this run's results are, rather than as a file the user left ("already exists").
            done_now = sum(row.status == "ok" for row in rows)
            raise OutputExistsError(f"{summary_path}: written by another run while this one worked (two batches "
                                    f"into one --out?), and not replaced: this run's summary is lost, though its "
                                    f"{done_now} of {len(rows)} exams done have their files in {out_dir} "
                                    "(scarnet summarize makes a summary of their reports); give each batch its own "
                                    "--out") from None
        except ScarNetError:  # an OutputError already: one line
            raise
        except OSError as error:
            raise OutputError(f"{summary_path}: could not be written ({error.strerror or error})") from None
    return rows


def _done_earlier(plan: ExamOutputs) -> dict[str, Any] | None:
    """The report an earlier run of the batch wrote for ``plan``'s exam, when it finished it: every file asked for
    is there (labelmap, report, and the page and SEG when asked for) and the report is the model's report of this
    input. None otherwise (the exam then runs, and files of it left there need ``--overwrite`` as usual)."""
    from .summary import read_report

    if not all(path.is_file() for path in (plan.seg, plan.report, plan.html, plan.dicom_seg) if path is not None):
        return None
    try:
        report = read_report(plan.report)
    except InputError:
        return None
    given = report.get("input")
    if report.get("source") != "ScarNet model" and not report.get("inference") or not isinstance(given, str) \
            or (given != str(plan.input) and Path(given).resolve() != plan.input.resolve()):
        return None  # a corrected report saved under that name, or another input's
    return report


def _failed_exam_warnings(plan: ExamOutputs, row: BatchRow) -> None:
    """A failed exam's summary warnings: those raised before it failed, and the outputs of an earlier run of it
    still in the folder (with ``--overwrite``; a failure writes none of its own). Said, not removed (they are the
    user's files now, maybe corrected), but they are not this run's result: a summary of the folder (``scarnet
    summarize``) would count the old report as if the exam had not failed."""
    left = [path.name for path in (plan.seg, plan.report, plan.html, plan.dicom_seg) if path is not None
            and path.exists()]
    said = [f"{', '.join(left)}: left from an earlier run, not this run's result (the exam failed); remove them, "
            "or a summary of this folder counts the old report"] if left else []
    row.other_warnings.extend(said)
    row.figures = {"dicom_series": row.figures.get("dicom_series"),
                   "warnings": " | ".join([*(without_input(w, str(plan.input)) for w in row.warnings), *said])}


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    """The messages of the warnings an exam raised (scarnet's and the libraries' user and runtime warnings; not
    deprecation notices), each once."""
    return list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, (UserWarning, RuntimeWarning))))


def _run_exam(plan: ExamOutputs, segment: Callable[[Any, str, np.ndarray | None, str | None], Any],
              anatomy: ExamAnatomy, overwrite: bool, out_dir: Path, series: str | None, row: BatchRow):
    """Read, segment and write one exam (its files together or not at all); return its report. The
    exam's warnings are kept in ``row`` as they come, so those raised before a failure are not lost."""
    from .io import read_input, write_report, write_seg_nrrd
    from .report_html import report_html

    started = time.perf_counter()
    with _output_set(plan, overwrite, out_dir) as outputs:
        outputs.prepare()
        # Every exam's warnings are caught ("always": the same warning again in the next exam is not a repeat).
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                # --series picks a DICOM folder's series; files are read as they are.
                volume, source = read_input(plan.input, series=series if plan.input.is_dir() else None)
                if source is not None:  # the series read, in the summary even if the exam fails later
                    row.figures["dicom_series"] = series_name(source.series.record())
                if plan.dicom_seg is not None:
                    from .dicom_seg import check_dicom_seg_sources

                    check_dicom_seg_sources(source)  # before the model runs
            finally:
                reading = row.warnings = _messages(caught)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = segment(volume, str(plan.input), anatomy.rv_insertion_lps, anatomy.basal_end)
            finally:
                while_segmenting = _messages(caught)
                row.warnings = [*reading, *while_segmenting]
        report = result.report
        if reading:  # as scarnet segment keeps them: all of reading's (read_volume's own record of a file's among them)
            report.extra["input_warnings"] = list(reading)
        known = set(report.warnings())
        row.other_warnings = [message for message in while_segmenting if message not in known]
        # A page or SEG an earlier run left (with --overwrite, the others are replaced) would disagree with the
        # new report beside it: said, not removed (it is the user's file now).
        name = plan.report.name[: -len("_report.json")]
        for kept, option in ((None if plan.html else out_dir / f"{name}_report.html", "--html"),
                             (None if plan.dicom_seg else out_dir / f"{name}_seg.dcm", "--dicom-seg")):
            if kept is not None and kept.exists():
                row.other_warnings.append(f"{kept}: left from an earlier run; it no longer matches the new report "
                                          f"(pass {option} to replace it, or remove it)")
        report.extra["input"] = str(plan.input)
        report.extra["exam"] = plan.name  # for the summary's exam column, also when scarnet summarize reads it
        if source is not None:
            report.extra["input_series"] = source.series.record()
        report.extra["inference"]["process_s"] = round(time.perf_counter() - started, 3)
        if plan.dicom_seg is not None:
            from .dicom_seg import add_dicom_seg

            # Before the report, which names it.
            add_dicom_seg(outputs, plan.dicom_seg, result.labelmap, report, source,
                          inference=report.extra.get("inference"))
        outputs.write(plan.seg, lambda temp: write_seg_nrrd(result.labelmap, temp, overwrite=True))
        outputs.write(plan.report, lambda temp: write_report(report, temp, overwrite=True))
        identity = source.identity() if source is not None else None  # the patient, on the page only
        outputs.write(plan.html, lambda temp: Path(temp).write_text(
            report_html(report, shown_input(plan), identity=identity), encoding="utf-8"))
        outputs.commit()
    return report


def shown_input(plan: ExamOutputs) -> str:
    """How an exam's page names its input: the file's (or DICOM folder's) name as given, with the folders that
    name the exam where the folders do (``Case_P100/image.nii.gz``, ``site1/P001``): every page of a cohort laid
    out as ``Case_*/image.nii.gz`` would otherwise say ``image.nii.gz``, and printed pages could not be told apart.
    Not resolved: a link (git-annex, DataLad) is named as given, not by its target's key."""
    path = Path(plan.input)
    own = path.name if path.name not in ("", ".", "..") else path.resolve().name
    if exam_key(exam_name(path)) == exam_key(plan.name):
        return own
    parts = (*Path(os.path.abspath(path)).parent.parts[1:], own)
    keeps_own = exam_name(path) == own  # a DICOM folder's (or an unknown file's) own name is in the exam's
    for depth in range(2, len(parts) + 1):
        tail = parts[-depth:]
        if exam_key("_".join(tail if keeps_own else tail[:-1])) == exam_key(plan.name):
            return "/".join(tail)
    return f"{plan.name} ({own})"


def summary_csv(rows: Sequence[BatchRow]) -> str:
    """The summary as CSV text: a header, then one line per exam in the order given."""
    return _summary_csv([row.values() for row in rows])


__all__ = ["POINT_COLUMNS", "SUMMARY_COLUMNS", "SUMMARY_NAME", "BatchRow", "ExamAnatomy", "ExamOutputs", "exam_key",
           "exam_name", "exam_names",
           "plan_outputs", "points_for_exams", "read_rv_points", "run_batch", "summary_csv"]
