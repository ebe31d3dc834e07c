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

#: The summary's columns, in order (the totals are the report's, scarnet.quantify.TotalReport).
SUMMARY_COLUMNS = ("input", "status", "slices_with_myocardium", "myocardium_ml", "myocardium_g", "scar_ml", "scar_g",
                   "scar_percent", "mvo_ml", "transmural_over_50_percent", "slices_flagged", "warnings", "model_s",
                   "report")
SUMMARY_NAME = "summary.csv"
_IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".nhdr")


def exam_name(path: str | Path) -> str:
    """The name an exam's outputs get: the file's name without its image ending, or the DICOM folder's name."""
    path = Path(path)
    name = path.name or path.resolve().name
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
    warnings: list[str] = field(default_factory=list)  # the exam's report's (the summary joins them)

    def values(self) -> list[Any]:
        return [self.input, self.status, *(self.figures.get(c) for c in SUMMARY_COLUMNS[2:])]


def plan_outputs(inputs: Sequence[str | Path], out_dir: str | Path, html: bool) -> list[ExamOutputs]:
    """Each input's output paths in ``out_dir``; :class:`InputError` when two inputs would share them."""
    out_dir = Path(out_dir)
    plans, seen = [], {}
    for path in inputs:
        name = exam_name(path)
        if name.lower() in seen:
            raise InputError(f"{seen[name.lower()]} and {path} would both write {name}_report.json in {out_dir}: "
                             "give the inputs different names, or run them apart")
        seen[name.lower()] = path
        plans.append(ExamOutputs(Path(path), out_dir / f"{name}.seg.nrrd", out_dir / f"{name}_report.json",
                                 out_dir / f"{name}_report.html" if html else None))
    return plans


def _output_set(plan: ExamOutputs, overwrite: bool, folder: Path) -> OutputSet:
    outputs = OutputSet(overwrite, folder=folder)
    outputs.add(plan.seg, SEGMENTATION, "--out")
    outputs.add(plan.report, REPORT, "--out")
    outputs.add(plan.html, HTML_REPORT, "--out")
    return outputs


def run_batch(inputs: Sequence[str | Path], out_dir: str | Path,
              make_segmenter: Callable[[], Callable[[Any, str], Any]], *, html: bool = False,
              overwrite: bool = False, on_exam: Callable[[int, int, BatchRow], None] | None = None) -> list[BatchRow]:
    """Segment every input and write its outputs and ``summary.csv`` in ``out_dir`` (created when
    needed); return the summary's rows.

    ``make_segmenter()`` is called once, after the outputs are checked, and returns ``segment(volume,
    name)`` (e.g. a :class:`~scarnet.inference.Segmenter` call); its errors (weights that cannot be
    loaded) stop the run, while an exam's own errors (unreadable input, no heart found) are that
    exam's row. Raises before any exam runs when an output exists (without ``overwrite``) or two
    inputs share a name. ``on_exam(number, count, row)`` is called after each exam.
    """
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
                report = _run_exam(plan, segment, overwrite, out_dir)
            except ScarNetError as error:
                row.status = f"failed: {error}"
            except Exception as error:  # a bug on one exam: said, and the others still run
                row.status = f"failed: internal error: {type(error).__name__}: {' '.join(str(error).split())[:200]}"
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
        # Also after an interrupt: the exams done are listed, the others "not run".
        out_dir.mkdir(parents=True, exist_ok=True)  # when no exam wrote anything
        with atomic_path(summary_path, overwrite=True) as temp:
            temp.write_text(summary_csv(rows), encoding="utf-8")
    return rows


def _run_exam(plan: ExamOutputs, segment: Callable[[Any, str], Any], overwrite: bool, out_dir: Path):
    """Read, segment and write one exam (its files together or not at all); return its report."""
    from .io import read_volume, write_report, write_seg_nrrd
    from .report_html import report_html

    started = time.perf_counter()
    with _output_set(plan, overwrite, out_dir) as outputs:
        outputs.prepare()
        # The exam's warnings go into its report (and the summary), not loose onto the terminal.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = segment(read_volume(plan.input), str(plan.input))
        report = result.report
        known = set(report.warnings())
        reading = list(dict.fromkeys(str(w.message) for w in caught if str(w.message) not in known))
        if reading:
            report.extra["input_warnings"] = [*report.extra.get("input_warnings", []), *reading]
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
        writer.writerow(["" if value is None else f"{value:.6g}" if isinstance(value, float) else value
                         for value in row.values()])
    return buffer.getvalue()


__all__ = ["SUMMARY_COLUMNS", "SUMMARY_NAME", "BatchRow", "ExamOutputs", "exam_name", "plan_outputs", "run_batch",
           "summary_csv"]
