"""Many exams in one run (``scarnet batch``): the model loaded once, one summary row per exam.

For a cohort: each input (a NIfTI/NRRD/MHA file or a DICOM folder) is segmented and quantified as
``scarnet segment`` does, its outputs written into the output folder under the input's name
(``NAME.seg.nrrd``, ``NAME_report.json`` and, when asked, ``NAME_report.html``), and a line added
to ``summary.csv``: the totals, the warnings and the number of slices with QC flags, or why the
exam failed. An exam that fails (unreadable, no heart found) does not stop the others; the run
ends with a non-zero status when any failed. Every output is checked before the first exam runs,
so an existing file (without ``overwrite``) or two inputs of the same name stop the run before
the model loads, and each exam's files are written together or not at all.
"""

from __future__ import annotations

import csv
import io
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, ScarNetError
from .outputs import HTML_REPORT, REPORT, SEGMENTATION, OutputSet
from .quantify import csv_value

#: The summary's columns, in order (the totals are the report's, scarnet.quantify.TotalReport).
SUMMARY_COLUMNS = ("input", "status", "slices_with_myocardium", "myocardium_ml", "myocardium_g", "scar_ml", "scar_g",
                   "scar_percent", "mvo_ml", "transmural_over_50_percent", "slices_flagged", "warnings", "model_s",
                   "report")
SUMMARY_NAME = "summary.csv"
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


@dataclass
class ExamOutputs:
    """Where one exam's outputs go."""

    input: Path
    seg: Path
    report: Path
    html: Path | None


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

    def values(self) -> list[Any]:
        return [self.input, self.status, *(self.figures.get(c) for c in SUMMARY_COLUMNS[2:])]


def plan_outputs(inputs: Sequence[str | Path], out_dir: str | Path, html: bool) -> list[ExamOutputs]:
    """Each input's output paths in ``out_dir``; :class:`InputError` when two inputs would share them."""
    out_dir = Path(out_dir)
    plans, seen = [], {}
    if any(Path(path).resolve() == out_dir.resolve() for path in inputs):
        raise InputError(f"{out_dir} is both an input and the output folder")
    for path in inputs:
        name = exam_name(path)
        if name.lower() in seen:
            raise InputError(f"{seen[name.lower()]} and {path} would both write {name}_report.json in {out_dir}: "
                             "give the inputs different names, or run them apart")
        seen[name.lower()] = path
        plans.append(ExamOutputs(Path(path), out_dir / f"{name}.seg.nrrd", out_dir / f"{name}_report.json",
                                 out_dir / f"{name}_report.html" if html else None))
    outputs = {p.resolve() for plan in plans for p in (plan.seg, plan.report, plan.html) if p is not None}
    for plan in plans:  # e.g. `scarnet batch data/* --out data` after an earlier run there
        if plan.input.resolve() in outputs:
            raise InputError(f"{plan.input} is an input and also one of this run's outputs: keep the outputs "
                             "in another folder")
    return plans


def _output_set(plan: ExamOutputs, overwrite: bool, folder: Path) -> OutputSet:
    outputs = OutputSet(overwrite, folder=folder)
    outputs.add(plan.seg, SEGMENTATION, "--out")
    outputs.add(plan.report, REPORT, "--out")
    outputs.add(plan.html, HTML_REPORT, "--out")
    return outputs


def run_batch(inputs: Sequence[str | Path], out_dir: str | Path,
              make_segmenter: Callable[[], Callable[[Any, str], Any]], *, html: bool = False,
              overwrite: bool = False, series: str | None = None,
              on_exam: Callable[[int, int, BatchRow], None] | None = None) -> list[BatchRow]:
    """Segment every input and write its outputs and ``summary.csv`` in ``out_dir`` (created when
    needed); return the summary's rows.

    ``make_segmenter()`` is called once, after the outputs are checked, and returns ``segment(volume,
    name)`` (e.g. a :class:`~scarnet.inference.Segmenter` call); its errors (weights that cannot be
    loaded) stop the run, while an exam's own errors (unreadable input, no heart found) are that
    exam's row. Raises before any exam runs when an output exists (without ``overwrite``) or two
    inputs share a name. ``series`` picks the DICOM series of every DICOM folder (as ``scarnet segment
    --series``); files are read as they are. ``on_exam(number, count, row)`` is called after each
    exam. ``summary.csv`` is also written when the run is interrupted (the exams not reached are
    "not run").
    """
    from .errors import OutputError
    from .io import atomic_path

    out_dir = Path(out_dir)
    plans = plan_outputs(inputs, out_dir, html)
    summary_path = out_dir / SUMMARY_NAME
    # Every output checked now: a run does not stop at exam 30 on a file left from an earlier one.
    check = OutputSet(overwrite, folder=out_dir)
    check.add(summary_path, REPORT, "--out")
    for plan in plans:
        for path, kind in ((plan.seg, SEGMENTATION), (plan.report, REPORT), (plan.html, HTML_REPORT)):
            check.add(path, kind, "--out")
    check.prepare()
    segment = make_segmenter()
    rows = [BatchRow(str(plan.input)) for plan in plans]
    try:
        for number, (plan, row) in enumerate(zip(plans, rows), start=1):
            try:
                report = _run_exam(plan, segment, overwrite, out_dir, series, row)
            except ScarNetError as error:
                row.status = f"failed: {error}"
                row.figures = {"warnings": " | ".join(row.warnings)}
            except Exception as error:  # a bug on one exam: said, and the others still run
                row.status = f"failed: internal error: {type(error).__name__}: {' '.join(str(error).split())[:200]}"
                row.figures = {"warnings": " | ".join(row.warnings)}
                row.internal_error = True
            else:
                total = report.total
                inference = report.extra["inference"]
                row.status = "ok"
                row.warnings = report.warnings()
                row.figures = {
                    "slices_with_myocardium": total.slices_with_myocardium, "myocardium_ml": total.myocardium_ml,
                    "myocardium_g": total.myocardium_g, "scar_ml": total.scar_ml, "scar_g": total.scar_g,
                    "scar_percent": total.scar_percent, "mvo_ml": total.mvo_ml,
                    "transmural_over_50_percent": total.transmural_over_50_percent,
                    "slices_flagged": sum(bool(s.qc_flags) for s in report.slices),
                    "warnings": " | ".join(report.warnings()), "model_s": inference["timings_s"]["total_s"],
                    "report": plan.report.name,
                }
            if on_exam is not None:
                on_exam(number, len(plans), row)
    finally:
        # Also after an interrupt: the exams done are listed, the others "not run". Checked to be new up front:
        # one that appeared since (another run into this folder) is not replaced without ``overwrite``.
        try:
            out_dir.mkdir(parents=True, exist_ok=True)  # when no exam wrote anything
            with atomic_path(summary_path, overwrite=overwrite) as temp:
                temp.write_text(summary_csv(rows), encoding="utf-8")
        except ScarNetError:  # an OutputError already: one line
            raise
        except OSError as error:
            raise OutputError(f"{summary_path}: could not be written ({error.strerror or error})") from None
    return rows


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    """The messages of the warnings an exam raised (scarnet's and the libraries' user and runtime warnings; not
    deprecation notices), each once."""
    return list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, (UserWarning, RuntimeWarning))))


def _run_exam(plan: ExamOutputs, segment: Callable[[Any, str], Any], overwrite: bool, out_dir: Path,
              series: str | None, row: BatchRow):
    """Read, segment and write one exam (its files together or not at all); return its report. The
    exam's warnings are kept in ``row`` as they come, so those raised before a failure are not lost."""
    from .io import read_volume, write_report, write_seg_nrrd
    from .report_html import report_html

    started = time.perf_counter()
    with _output_set(plan, overwrite, out_dir) as outputs:
        outputs.prepare()
        # Every exam's warnings are caught ("always": the same warning again in the next exam is not a repeat).
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                volume = read_volume(plan.input, series=series if plan.input.is_dir() else None)
            finally:
                reading = row.warnings = _messages(caught)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = segment(volume, str(plan.input))
            finally:
                while_segmenting = _messages(caught)
                row.warnings = [*reading, *while_segmenting]
        report = result.report
        if reading:  # as scarnet segment keeps them
            report.extra["input_warnings"] = [*report.extra.get("input_warnings", []), *reading]
        known = set(report.warnings())
        row.other_warnings = [message for message in while_segmenting if message not in known]
        report.extra["input"] = str(plan.input)
        report.extra["inference"]["process_s"] = round(time.perf_counter() - started, 3)
        outputs.write(plan.seg, lambda temp: write_seg_nrrd(result.labelmap, temp, overwrite=True))
        outputs.write(plan.report, lambda temp: write_report(report, temp, overwrite=True))
        outputs.write(plan.html, lambda temp: Path(temp).write_text(report_html(report, plan.input.resolve().name),
                                                                     encoding="utf-8"))
        outputs.commit()
    return report


def summary_csv(rows: Sequence[BatchRow]) -> str:
    """The summary as CSV text: a header, then one line per exam in the order given."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for row in rows:
        writer.writerow([csv_value(value) for value in row.values()])
    return buffer.getvalue()


__all__ = ["SUMMARY_COLUMNS", "SUMMARY_NAME", "BatchRow", "ExamOutputs", "exam_name", "plan_outputs", "run_batch",
           "summary_csv"]
