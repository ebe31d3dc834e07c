"""The module's work without Qt: run the engine on a volume node, put the results into MRML.

Order of events, and on which thread:

1. :meth:`Processor.start` (main thread): read the input node into an engine ``Volume`` (this
   refuses 2D/4D/vector input), check that an edited segmentation is not about to be replaced
   (and note its fingerprint, to see at the end whether it was edited during the run), and build
   a :class:`~ScarNetSlicerLib.worker.BackgroundTask`. The scene is not touched.
2. The task (worker thread, or the caller's thread for ``waitForCompletion``): load the model
   (cached per process by the engine), segment, quantify. Numpy only, no MRML.
3. :meth:`Processor.finish` (main thread): if the task succeeded, write segments, table and plot
   (:meth:`Processor.apply`); if it was cancelled, do nothing; if it failed, raise its error.
   The scene may have changed while the model ran (the GUI stays usable): a removed input drops
   the result, and a chosen segmentation that was edited or removed meanwhile is left alone, the
   result going into a new segmentation (``Outputs.notice`` says so).

:meth:`Processor.update_report` re-quantifies a segmentation as it is now (after Segment Editor
edits) without any model, and leaves the segmentation where it is. The segmenter is injectable
(``segmenter_factory``), so all of this is tested with a fake segmenter on a real MRML scene.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import slicer

from scarnet.errors import InputError
from scarnet.io import validate_image
from scarnet.qc import APICAL_COVERAGE_WARNING_START
from scarnet.quantify import before_correction, model_totals, quantify, report_warnings
from scarnet.summary import made_from as report_made_from
from scarnet.volume import Volume

from . import report_nodes, segmentation_nodes
from .volume_nodes import (
    InstanceValue,
    check_node_class,
    check_volume_node,
    dicom_headers,
    dicom_slice_identifiers,
    rv_insertion_lps,
    volume_from_node,
)
from .worker import BackgroundTask, CancelCheck, ProgressCallback

DEVICES = ("auto", "cpu", "cuda")
#: Node reference from outputs to the input volume they were computed from.
INPUT_REFERENCE_ROLE = report_nodes.INPUT_REFERENCE_ROLE
#: How the model run's warnings start that *Update report* does not carry to the report of the segmentation as it is
#: now, because that report decides them afresh: whether it has AHA segments, and whether the stack may stop short of
#: the apex (from the labels, :func:`scarnet.qc.apical_coverage_warning` in quantify's ``labelmap_warnings``).
DECIDED_AFRESH_WARNING_STARTS = ("no AHA segments", APICAL_COVERAGE_WARNING_START)


@dataclass
class SegmentationOptions:
    """How to run the engine (the module's Advanced section)."""

    device: str = "auto"
    encoder: str | None = None
    weights: str | None = None  # None: the weights bundled with the extension
    #: Test-time augmentation: False/"none", True/"flip" or "dihedral" (the 8 turns and mirrors); after checking,
    #: the engine's name for it (``scarnet.inference.tta_mode``): None, "flip" or "dihedral".
    tta: bool | str | None = None
    #: Scar regions (3D-connected) smaller than this become healthy myocardium; 0 (the engine's
    #: default, see scarnet.inference.MIN_SCAR_COMPONENT_ML for why) keeps every region.
    min_scar_component_ml: float = 0.0
    #: When set, the job writes its input, labelmap (.seg.nrrd) and report (.json) here, so a run
    #: can be reproduced or compared outside Slicer with the ``scarnet`` command line.
    intermediate_folder: str | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise InputError(f"unknown device '{self.device}' (use {', '.join(DEVICES)})")
        self.weights = normalise_path(self.weights)
        self.encoder = self.encoder or None
        # The engine's rules, checked before a job starts.
        from scarnet.inference import check_min_scar_component_ml, tta_mode

        self.tta = tta_mode(self.tta)
        self.min_scar_component_ml = check_min_scar_component_ml(self.min_scar_component_ml)


def normalise_path(path: Any) -> str | None:
    """A path from the GUI (str or pathlib.Path, possibly empty or '.') → str, or None when unset."""
    text = str(path).strip() if path is not None else ""
    return None if text in ("", ".") else text


def default_segmenter_factory(options: SegmentationOptions) -> Callable[..., Any]:
    """The engine's segmenter (torch imported here, on first use, in the job's thread)."""
    from scarnet.inference import Segmenter

    return Segmenter(weights=options.weights, encoder=options.encoder, device=options.device, tta=options.tta,
                     min_scar_component_ml=options.min_scar_component_ml)


SegmenterFactory = Callable[[SegmentationOptions], Callable[..., Any]]


@dataclass
class Outputs:
    """The nodes a run wrote and its report (``Report.to_dict()`` shape).

    ``notice`` is what the user must be told, one message per line: that the result did not go where
    it was asked to go (the chosen segmentation was edited or removed while the model ran), and the
    engine's warnings (e.g. a model unsure in most slices, a fall-back to the CPU); empty otherwise.
    """

    segmentation_node: Any
    table_node: Any
    chart_node: Any
    series_node: Any
    report: dict[str, Any]
    notice: str = ""
    segment_table_node: Any = None  # the AHA segment table, when the report has (or had) segments


@dataclass
class SegmentationJob:
    """A started (or ready to run) segmentation: the task plus where its results will go."""

    task: BackgroundTask
    input_node: Any
    segmentation_node: Any
    table_node: Any
    options: SegmentationOptions
    #: Fingerprint of ``segmentation_node`` when the job started, to see at the end whether it was
    #: edited meanwhile (None: unreadable then; ``UNRESOLVED_FINGERPRINT``: not comparable; either way
    #: the result goes into a new segmentation).
    segmentation_fingerprint: str | None = None
    started_s: float = field(default_factory=time.perf_counter)


class EditedSegmentationError(InputError):
    """The output segmentation holds edits (or someone else's segments) that a run would replace."""


class Processor:
    """Runs ScarNet for the Slicer module on one MRML scene."""

    def __init__(self, scene, segmenter_factory: SegmenterFactory = default_segmenter_factory,
                 dicom_instance_value: InstanceValue | None = None) -> None:
        self.scene = scene
        self.segmenter_factory = segmenter_factory
        #: Reads a DICOM attribute of an instance, so report rows name their DICOM images; None: Slicer's
        #: DICOM database, when there is one (see :func:`~.volume_nodes.dicom_slice_identifiers`).
        self.dicom_instance_value = dicom_instance_value

    # -- Segment scar ----------------------------------------------------------------------------
    def segmentation_was_edited(self, segmentation_node, input_node) -> bool:
        """True when running again would replace segments edited since (or not made by) this module, or its result
        for another volume (:func:`made_from_another_input`: on the same grid it does not look edited): what a run
        asks before replacing.

        The input is checked first: a missing, 2D or 4D input raises its one-line
        :class:`~scarnet.errors.InputError` rather than answering about edits.
        """
        check_volume_node(input_node)
        check_node_class(segmentation_node, "vtkMRMLSegmentationNode", "segmentation")
        if segmentation_node is None:
            return False
        if made_from_another_input(segmentation_node, input_node) and segmentation_nodes.has_segments(
                segmentation_node):
            return True
        return segmentation_nodes.was_edited(segmentation_node, input_node)

    def keeps_corrected_report(self, segmentation_node, table_node=None) -> bool:
        """Whether a run into ``segmentation_node`` (and ``table_node``, else its own table) would keep a report of
        corrected contours as outdated (:meth:`apply`): what the question before replacing edits may promise."""
        if segmentation_node is None:
            return False
        target = table_node if table_node is not None else self._own_table(segmentation_node)
        return target is not None and _reports_corrections(target, segmentation_node)

    def start(self, input_node, segmentation_node=None, table_node=None,
              options: SegmentationOptions | None = None, overwrite_edited: bool = False,
              rv_insertion_node=None, basal_end: str | None = None) -> SegmentationJob:
        """Check everything that can be checked before the model runs, and prepare the job.

        ``rv_insertion_node``: a markups node holding the anterior RV insertion point (and optionally the
        inferior one after it: :func:`~ScarNetSlicerLib.volume_nodes.rv_insertion_lps`);
        the report then has the AHA segments (:mod:`scarnet.aha`). ``basal_end``: "first" or "last"
        when the user says which end of the stack is basal (None: found). Raises
        :class:`~scarnet.errors.InputError` (a ``ValueError``) for a missing, 2D or 4D input or a
        markups node without a point, and :class:`EditedSegmentationError` for an edited output, or
        another volume's result, without ``overwrite_edited``.
        """
        options = options or SegmentationOptions()
        volume = self._input_image(input_node)  # checks the input: a missing, 2D or 4D one raises
        _check_output_classes(segmentation_node, table_node)
        self._check_in_scene(input_node, segmentation_node)
        if table_node is not None and not self._in_scene(table_node):
            table_node = None  # removed: a new table
        rv_insertion = rv_insertion_lps(rv_insertion_node, input_node)
        # Only when given, so segmenters that know nothing of segments (test fakes) still work.
        segment_options = {key: value for key, value in (("rv_insertion_lps", rv_insertion), ("basal_end", basal_end))
                           if value is not None}
        # One fingerprint serves both the edit check now and, at the end, the check for edits during the run.
        before = _fingerprint_or_none(segmentation_node, input_node, volume) if segmentation_node is not None else None
        if not overwrite_edited and segmentation_nodes.has_segments(segmentation_node) \
                and made_from_another_input(segmentation_node, input_node):
            # Another exam's result (a script's wrong node, or chosen by hand after the input changed): on the same
            # grid it would not even look edited, and it would be replaced by this exam's without a word.
            other = segmentation_node.GetNodeReference(INPUT_REFERENCE_ROLE)
            raise EditedSegmentationError(
                f"segmentation '{segmentation_node.GetName()}' holds ScarNet's result for another volume"
                f"{f' ({other.GetName()!r})' if other is not None else ''}, not '{input_node.GetName()}'; choose "
                "another output segmentation (or none, for a new one), or confirm replacing it (overwriteEdited=True)")
        if not overwrite_edited and segmentation_nodes.was_edited(segmentation_node, input_node, current=before):
            what = (f"{_not_comparable(segmentation_node, input_node)}, so whether it was edited after ScarNet wrote "
                    "it cannot be told" if before == segmentation_nodes.UNRESOLVED_FINGERPRINT else
                    "was edited after ScarNet wrote it (or was not made by ScarNet)")
            raise EditedSegmentationError(
                f"segmentation '{segmentation_node.GetName()}' {what}; choose another output segmentation, or confirm "
                "replacing it (overwriteEdited=True)")
        name = input_node.GetName()
        factory = self.segmenter_factory

        def job(progress: ProgressCallback, should_cancel: CancelCheck):
            progress(0.0, "loading the model")
            segmenter = factory(options)
            # Named as the user knows the input, so the engine's messages ("LGE PSIR: contains NaN ...") say which.
            result = segmenter(volume, progress=progress, should_cancel=should_cancel, name=name, **segment_options)
            if options.intermediate_folder:
                progress(0.97, "writing intermediate files")
                write_intermediate_files(options.intermediate_folder, name, volume, result)
            return result

        task = BackgroundTask(job, name=f"ScarNet on {name}")
        return SegmentationJob(task, input_node, segmentation_node, table_node, options, before)

    def finish(self, job: SegmentationJob) -> Outputs | None:
        """Main thread, after the task finished: apply its result (None when it was cancelled).

        The user may have changed the scene while the model ran. If the input volume was removed,
        the result is dropped (:class:`~scarnet.errors.InputError`, nothing created). If the chosen
        segmentation was edited or removed, it is left as it is and the result goes into a new
        segmentation and table; ``Outputs.notice`` says so.
        """
        result = job.task.outcome()  # raises the job's error
        if result is None:
            return None
        input_name = job.input_node.GetName()
        if not self._in_scene(job.input_node):
            raise InputError(f"input volume '{input_name}' was removed while ScarNet ran: the result was dropped")
        segmentation_node, table_node, notice = job.segmentation_node, job.table_node, ""
        if table_node is not None and not self._in_scene(table_node):
            table_node = None  # removed meanwhile: a new table
        if segmentation_node is not None:
            reason = ""
            if not self._in_scene(segmentation_node):
                reason = f"segmentation '{segmentation_node.GetName()}' was removed while ScarNet ran"
            elif job.segmentation_fingerprint is None:  # unreadable at the start: whether it changed is unknown
                reason = (f"segmentation '{segmentation_node.GetName()}' could not be read when ScarNet started, "
                          "so it was left as it is")
            elif job.segmentation_fingerprint == segmentation_nodes.UNRESOLVED_FINGERPRINT \
                    and job.task.ran_in_background:
                # Its voxels cannot be compared with the input's (segmentation_nodes.subdivision). A run that held
                # the main thread (run_here) left no time for edits: the replacement the user confirmed stands.
                reason = (f"segmentation '{segmentation_node.GetName()}' "
                          f"{_not_comparable(segmentation_node, job.input_node)}, so edits made while ScarNet ran "
                          "cannot be ruled out and it was left as it is")
            elif _fingerprint_or_none(segmentation_node, job.input_node) != job.segmentation_fingerprint:
                reason = (f"segmentation '{segmentation_node.GetName()}' was edited while ScarNet ran, "
                          "so it was left as it is")
            if reason:
                segmentation_node = self.scene.AddNewNodeByClass(
                    "vtkMRMLSegmentationNode", self.scene.GenerateUniqueName(f"{input_name} ScarNet"))
                table_node = None  # the chosen table reports the segmentation that was kept
                notice = f"{reason}: the result is in the new segmentation '{segmentation_node.GetName()}'"
        outputs = self.apply(job.input_node, result, segmentation_node, table_node)
        # The report's warnings (the engine's: CPU fallback, an exam unlike the training data; the segments': a
        # stack whose septum side comes from the display) reach the user too.
        outputs.notice = "\n".join(message for message in [notice, outputs.notice, *report_warnings(outputs.report)]
                                   if message)
        outputs.report.setdefault("slicer", {})["elapsed_s"] = round(time.perf_counter() - job.started_s, 3)
        return outputs

    def apply(self, input_node, result, segmentation_node=None, table_node=None) -> Outputs:
        """Write a segmentation result (labelmap + report) into MRML nodes (created when None)."""
        name = input_node.GetName()
        if segmentation_node is None:
            segmentation_node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                             self.scene.GenerateUniqueName(f"{name} ScarNet"))
        else:
            # Another volume's result replaced (the user said so): a name this module gave it for that volume
            # ("A ScarNet") would go on naming the wrong exam; a name of the user's own is kept.
            other = segmentation_node.GetNodeReference(INPUT_REFERENCE_ROLE)
            if other is not None and other is not input_node \
                    and segmentation_node.GetName().startswith(f"{other.GetName()} ScarNet"):
                segmentation_node.SetName(self.scene.GenerateUniqueName(f"{name} ScarNet"))
        # The segments are written in the input's own frame, so they lie on its voxels only under the
        # input's transform. Set it before the fingerprint, which reads them back through it.
        segmentation_node.SetAndObserveTransformNodeID(input_node.GetTransformNodeID())
        segmentation_nodes.write_labelmap(segmentation_node, result.labelmap, input_node)
        written = segmentation_nodes.store_fingerprint(segmentation_node, input_node)
        report = result.report.to_dict() if hasattr(result.report, "to_dict") else dict(result.report)
        report["source"] = "ScarNet model"
        # A report of the reader's corrected contours (Update report after edits) is not rewritten with the model's
        # new figures: the run goes into a new table and that one is kept, marked outdated, as the only record of
        # the corrections the user just confirmed replacing.
        kept = ""
        target = table_node if table_node is not None else self._own_table(segmentation_node)
        if target is not None and _reports_corrections(target, segmentation_node):
            kept = (f"the report of the corrected contours was kept as table "
                    f"'{target.GetName()}{report_nodes.OUTDATED_SUFFIX}'")
            table_node = self.scene.AddNewNodeByClass("vtkMRMLTableNode",
                                                      self.scene.GenerateUniqueName(f"{name} ScarNet report"))
        # The tables that reported this segmentation before (another volume's report of it, a report of it on
        # another volume) describe contours it no longer holds.
        earlier = [table for table in _nodes_of_class(self.scene, "vtkMRMLTableNode")
                   if table.GetNodeReference(report_nodes.SEGMENTATION_REFERENCE_ROLE) is segmentation_node]
        outputs = self._write_report(input_node, segmentation_node, table_node, report, segmentation_is_result=True,
                                     fingerprint=written)
        for table in earlier:
            if table is not outputs.table_node:
                _mark_outdated(table, segmentation_node)
        if kept:
            outputs.notice = "\n".join(message for message in (kept, outputs.notice) if message)
        return outputs

    # -- Update report ---------------------------------------------------------------------------
    def update_report(self, input_node, segmentation_node, table_node=None, rv_insertion_node=None,
                      basal_end: str | None = None) -> Outputs:
        """Quantify ``segmentation_node`` as it is now on the input's grid; update table and plot.

        ``rv_insertion_node``, ``basal_end``: as for :meth:`start` (the AHA segments of the segmentation as
        it is now).

        No model runs and the segmentation is not changed: not its segments, not its transform,
        not its place in the subject hierarchy, not the input it records. The QC flags of the last
        model run are kept (they describe the model's uncertainty, which edits do not change), but
        only when that run was on this input: another volume's flags say nothing about this one. The
        flags' per-slice heart confidence (``report["qc"]``) is kept with them.
        """
        check_volume_node(input_node)
        _check_output_classes(segmentation_node, table_node)
        if segmentation_node is None:
            raise InputError("no segmentation selected: run 'Segment scar' first, or choose a segmentation "
                             "with LV blood pool / Myocardium / Scar / MVO segments")
        self._check_in_scene(input_node, segmentation_node)
        if table_node is not None and not self._in_scene(table_node):
            table_node = None  # removed: the segmentation's own table, or a new one
        image = self._input_image(input_node)
        # As Segment scar refuses it: NaN voxels would give NaN intensities in a report that cannot be saved.
        validate_image(image, input_node.GetName())
        rv_insertion = rv_insertion_lps(rv_insertion_node, input_node)
        # Each segment read once: the labelmap, the segments not counted and whether it was edited.
        segments = segmentation_nodes.read_segmentation(segmentation_node, input_node, image, require_recognised=True)
        notices = _segments_left_out(segmentation_node, segments)
        report = quantify(segments.labelmap, image=image, basal_end=basal_end,
                          rv_insertion_lps=rv_insertion).to_dict()
        previous = self._previous_model_report(input_node, segmentation_node, table_node)
        if previous and len(previous.get("slices", [])) == len(report["slices"]):
            # The DICOM image of each slice, as known when the model ran, where its images cannot be read now (a
            # scene reopened where Slicer's DICOM database does not hold the exam): the column was dropped unsaid.
            # Not where they were read and no longer match the slices (a moved volume).
            keep_dicom = image.source_slices is None and dicom_headers(input_node, self.dicom_instance_value) is None
            for new, old in zip(report["slices"], previous["slices"]):
                new["qc_flags"] = list(old.get("qc_flags", []))
                if keep_dicom and old.get("dicom"):
                    new["dicom"] = dict(old["dicom"])
            if "qc" in previous:  # with the per-slice heart confidence behind the flags
                report["qc"] = previous["qc"]
            if "inference" in previous:  # which weights made the segmentation that was edited (and their warnings)
                report["inference"] = dict(previous["inference"])
                # ... less what this report decides afresh (DECIDED_AFRESH_WARNING_STARTS).
                report["inference"]["warnings"] = [w for w in previous["inference"].get("warnings") or []
                                                   if not str(w).startswith(DECIDED_AFRESH_WARNING_STARTS)]
            # The model's totals, which the page shows as before correction: from its own report, or as an earlier
            # update carried them (as scarnet quantify --model-report records them).
            model_total = model_totals(previous.get("total")) if report_made_from(previous) == "ScarNet model" \
                else before_correction(previous)
            if model_total is not None:
                report["model_run"] = {"total": model_total}
        report["source"] = "segmentation"
        report["edited"] = segmentation_nodes.was_edited(segmentation_node, input_node, segments.fingerprint)
        if notices:
            report["segments_left_out"] = list(notices)  # (the notice adds more below)
        outputs = self._write_report(input_node, segmentation_node, table_node, report, segmentation_is_result=False,
                                     fingerprint=segments.fingerprint, input_image=image)
        if made_from_another_input(segmentation_node, input_node):  # first: it explains what follows
            made_from = segmentation_node.GetNodeReference(INPUT_REFERENCE_ROLE)
            notices.insert(0, f"segmentation '{segmentation_node.GetName()}' was made by ScarNet from another volume"
                              f"{f' ({made_from.GetName()!r})' if made_from is not None else ''}: these are its "
                              f"contours measured on '{input_node.GetName()}'")
        outputs.notice = "\n".join(message for message in [*notices, *(report.get("labelmap_warnings") or []),
                                                           *(report.get("segment_warnings") or []),
                                                           outputs.notice] if message)
        return outputs

    def report_is_current(self, table_node) -> bool | None:
        """Whether the segmentation ``table_node`` reports is still as it was reported: False when it was edited
        since (Segment Editor) and the report was not updated, so the table (and a page saved from it) no longer
        says what the contours show; None when that cannot be told (no report of this module, its segmentation or
        input gone, or a segmentation too fine to compare voxel by voxel)."""
        reported = table_node.GetAttribute(report_nodes.REPORTED_FINGERPRINT_ATTRIBUTE) if table_node else None
        if not reported or reported == segmentation_nodes.UNRESOLVED_FINGERPRINT:
            return None
        segmentation_node = table_node.GetNodeReference(report_nodes.SEGMENTATION_REFERENCE_ROLE)
        input_node = table_node.GetNodeReference(INPUT_REFERENCE_ROLE)
        if segmentation_node is None or input_node is None or not self._in_scene(segmentation_node) \
                or not self._in_scene(input_node):
            return None
        now = _fingerprint_or_none(segmentation_node, input_node)
        if now is None or now == segmentation_nodes.UNRESOLVED_FINGERPRINT:
            return None
        return now == reported

    def _previous_model_report(self, input_node, segmentation_node, table_node) -> dict[str, Any] | None:
        """The report this segmentation last had on this input, whose QC flags an update keeps: from ``table_node``
        when it holds it, else from the table the segmentation's report went to last (a fresh table chosen for the
        update holds none: the flags were dropped, and stayed lost once the segmentation referenced it).

        Only this segmentation's own report: another's table is not written (see :meth:`_write_report`), nor read.
        (An own table the user edited is not rewritten, but its QC flags are still this segmentation's.)
        """
        for candidate in (table_node, self._own_table(segmentation_node)):
            if candidate is None:
                continue
            same_input = recorded_input_id(segmentation_node) == recorded_input_id(candidate) == input_node.GetID()
            own = not report_nodes.reason_not_to_reuse(candidate, segmentation_node, edits_count=False)
            previous = report_nodes.stored_report(candidate) if same_input and own else None
            if previous:
                return previous
        return None

    # -- shared ------------------------------------------------------------------------------------
    def _input_image(self, input_node) -> Volume:
        """The input volume as the engine reads it, each slice named by its DICOM image where known."""
        image = volume_from_node(input_node)
        image.source_slices = dicom_slice_identifiers(input_node, image, self.dicom_instance_value)
        return image

    def _in_scene(self, node) -> bool:
        return bool(self.scene.IsNodePresent(node))

    def _check_in_scene(self, *nodes) -> None:
        """Refuse a node a script still holds after it was removed from the scene: a report written for it (and
        referencing it) would be lost with it, or point at nothing."""
        for node in nodes:
            if node is not None and not self._in_scene(node):
                kind = "segmentation" if node.IsA("vtkMRMLSegmentationNode") else "volume"
                raise InputError(f"{kind} '{node.GetName()}' is no longer in the scene (removed?): choose another")

    def _own_table(self, segmentation_node):
        """The table this segmentation's report went to last (its reference), when it is still in the scene."""
        table_node = segmentation_node.GetNodeReference(report_nodes.TABLE_REFERENCE_ROLE)
        return table_node if table_node is not None and table_node.GetScene() is self.scene else None

    def _table_on(self, segmentation_node, input_node):
        """The last table that reports ``segmentation_node`` on ``input_node`` and may be rewritten (None: none)."""
        tables = [table for table in _nodes_of_class(self.scene, "vtkMRMLTableNode")
                  if table.GetNodeReference(report_nodes.SEGMENTATION_REFERENCE_ROLE) is segmentation_node
                  and recorded_input_id(table) == input_node.GetID()
                  and not report_nodes.reason_not_to_reuse(table, segmentation_node)]
        return tables[-1] if tables else None

    def _write_report(self, input_node, segmentation_node, table_node, report: dict[str, Any],
                      segmentation_is_result: bool, fingerprint: str | None = None,
                      input_image: Volume | None = None) -> Outputs:
        """Table and plot of ``report``, cross-referenced with the segmentation and the input.

        ``fingerprint``: the segmentation's (:func:`~.segmentation_nodes.fingerprint`) on the input as reported,
        kept with the table so that :meth:`report_is_current` can tell when it was edited since. ``input_image``: the
        input as already read (else it is read here, for ``input_sha256``).

        ``segmentation_is_result``: the segments were just computed from ``input_node`` ("Segment
        scar"), so the segmentation records that input and joins its study. Otherwise ("Update
        report") the segmentation is the user's and keeps its input reference and place.
        """
        name = input_node.GetName()
        # "Update report" of a segmentation ScarNet made from another volume: its report there is that volume's
        # and stays so (table, and the segmentation's reference to it); this volume's goes to a table of its own.
        cross = not segmentation_is_result and made_from_another_input(segmentation_node, input_node)
        own_table = self._table_on(segmentation_node, input_node) if cross else self._own_table(segmentation_node)
        if table_node is None:
            table_node = own_table
        notices = []
        if table_node is not None:
            elsewhere = made_from_another_input(table_node, input_node)
            reason = report_nodes.reason_not_to_reuse(table_node, segmentation_node) or (
                f"table '{table_node.GetName()}' reports another volume" if elsewhere else "")
            if reason:  # the user's data, or the report of another segmentation: never overwritten
                # Into the table this segmentation's report went to last, where it may be rewritten: a script that
                # passes the edited table again and again would otherwise make a new table (and plot) each time.
                reusable = own_table is not None and own_table is not table_node \
                    and not report_nodes.reason_not_to_reuse(own_table, segmentation_node) \
                    and not made_from_another_input(own_table, input_node)
                table_node = own_table if reusable else self.scene.AddNewNodeByClass(
                    "vtkMRMLTableNode", self.scene.GenerateUniqueName(f"{name} ScarNet report"))
                notices.append(f"{reason}, so it was left as it is: the report is in the "
                               f"{'' if reusable else 'new '}table '{table_node.GetName()}'")
        if table_node is None:
            table_node = self.scene.AddNewNodeByClass("vtkMRMLTableNode",
                                                      self.scene.GenerateUniqueName(f"{name} ScarNet report"))
        # Which exam, beyond its name: Save report must not replace another exam's saved report of the same name
        # (two patients' series both called "6: LGE PSIR").
        image = input_image if input_image is not None else volume_from_node(input_node)
        report["input_sha256"] = image.content_sha256()
        report_nodes.update_table(table_node, report)
        table_node.SetAttribute(report_nodes.REPORTED_FINGERPRINT_ATTRIBUTE, fingerprint or "")
        chart_node, series_node = report_nodes.update_plot(self.scene, table_node, f"Scar per slice: {name}")
        segment_table_node = report_nodes.update_segment_table(self.scene, table_node, report, notices)
        notice = "\n".join(notices)
        # References let scripts (and the next "Update report") find everything from any node.
        table_node.SetNodeReferenceID(report_nodes.SEGMENTATION_REFERENCE_ROLE, segmentation_node.GetID())
        if not cross:
            segmentation_node.SetNodeReferenceID(report_nodes.TABLE_REFERENCE_ROLE, table_node.GetID())
        table_node.SetNodeReferenceID(INPUT_REFERENCE_ROLE, input_node.GetID())
        placed = [table_node, chart_node, series_node] + ([segment_table_node] if segment_table_node else [])
        if segmentation_is_result:
            segmentation_node.SetNodeReferenceID(INPUT_REFERENCE_ROLE, input_node.GetID())
            placed.insert(0, segmentation_node)
        # Same place in the Data module as the input.
        place_next_to(self.scene, input_node, placed)
        return Outputs(segmentation_node, table_node, chart_node, series_node, report, notice, segment_table_node)


def _check_output_classes(segmentation_node, table_node) -> None:
    check_node_class(segmentation_node, "vtkMRMLSegmentationNode", "output segmentation")
    check_node_class(table_node, "vtkMRMLTableNode", "output table")


def _reports_corrections(table_node, segmentation_node) -> bool:
    """Whether ``table_node`` holds this module's report of ``segmentation_node`` after a reader's edits (Update
    report of edited contours), not yet outdated."""
    report = report_nodes.stored_report(table_node)
    return bool(report) and report.get("source") == "segmentation" and bool(report.get("edited")) \
        and not table_node.GetAttribute(report_nodes.OUTDATED_ATTRIBUTE) \
        and table_node.GetNodeReference(report_nodes.SEGMENTATION_REFERENCE_ROLE) is segmentation_node


def _mark_outdated(table_node, segmentation_node) -> None:
    """A report whose segmentation now holds another result: kept (the user may want its figures) but named so,
    and no longer tied to the segmentation, so that the panel never shows its totals beside contours they do not
    describe and nothing finds the segmentation through it."""
    because = f"the contents of segmentation '{segmentation_node.GetName()}' were replaced by a later run"
    # Its AHA segment table (with its bullseye) and its plot too: unmarked, they sat beside the current ones under
    # their usual names, showing the old contours' figures.
    for node in (table_node, *(table_node.GetNodeReference(role) for role in (
            report_nodes.SEGMENT_TABLE_REFERENCE_ROLE, report_nodes.CHART_REFERENCE_ROLE,
            report_nodes.SERIES_REFERENCE_ROLE))):
        if node is None:
            continue
        if not node.GetName().endswith(report_nodes.OUTDATED_SUFFIX):
            node.SetName(f"{node.GetName()}{report_nodes.OUTDATED_SUFFIX}")
        node.SetAttribute(report_nodes.OUTDATED_ATTRIBUTE, because)
    table_node.RemoveNodeReferenceIDs(report_nodes.SEGMENTATION_REFERENCE_ROLE)


def _first_warp(node):
    """The nearest transform above ``node`` that is not linear (its own, not its chain's), or None."""
    parent = node.GetParentTransformNode()
    while parent is not None and parent.IsLinear():
        parent = parent.GetParentTransformNode()
    return parent


def _not_comparable(segmentation_node, input_node) -> str:
    """Why a segmentation's voxels cannot be compared with the input's one by one (its fingerprint is
    ``UNRESOLVED_FINGERPRINT``): a warping transform above one of the two and not the other (named, with which node
    is under it), or a geometry finer in a way that does not cut the input's voxels into whole sub-voxels."""
    segmentation_warp, input_warp = _first_warp(segmentation_node), _first_warp(input_node)
    if segmentation_warp is not input_warp:
        under, name = ("is", segmentation_warp.GetName()) if segmentation_warp is not None else \
            (f"lies on an input ('{input_node.GetName()}') that is", input_warp.GetName())
        return (f"{under} under a non-linear transform ('{name}') that the "
                f"{'input' if segmentation_warp is not None else 'segmentation'} is not: ScarNet cannot compare the "
                "two voxel by voxel")
    return ("is finer than the input in a way ScarNet cannot compare voxel by voxel (its geometry in Segment "
            "Editor)")


def recorded_input_id(node) -> str | None:
    """ID of the input volume a segmentation or table was computed from (None: none recorded)."""
    return node.GetNodeReferenceID(INPUT_REFERENCE_ROLE) if node is not None else None


def made_from_another_input(node, input_node) -> bool:
    """True when ``node`` records an input volume that is not ``input_node``.

    The module uses it to unselect the previous input's outputs when the input changes, so a run
    or "Update report" on the new input never replaces or re-quantifies them. Nodes that record
    no input (the user's own segmentation or table) are never "another input's".
    """
    recorded = recorded_input_id(node)
    return bool(recorded) and (input_node is None or recorded != input_node.GetID())


def outputs_of_input(scene, input_node) -> tuple[Any, Any]:
    """The segmentation ScarNet made last from ``input_node`` (edited since or not) and its report table, or None
    for either: what the module selects when the user comes back to an input, so that "Segment scar" and
    "Update report" work on that input's results rather than making a second set. The table only when it
    reports that segmentation of that input."""
    if input_node is None:
        return None, None
    made = [node for node in _nodes_of_class(scene, "vtkMRMLSegmentationNode")
            if recorded_input_id(node) == input_node.GetID()]
    if not made:
        return None, None
    segmentation_node = made[-1]  # the scene keeps nodes in the order they were added
    table_node = segmentation_node.GetNodeReference(report_nodes.TABLE_REFERENCE_ROLE)
    if table_node is None or recorded_input_id(table_node) != input_node.GetID() \
            or table_node.GetNodeReference(report_nodes.SEGMENTATION_REFERENCE_ROLE) is not segmentation_node:
        table_node = None
    return segmentation_node, table_node


def _nodes_of_class(scene, class_name: str) -> list:
    # By index, not GetNodesByClass: its collection is a new reference that Python would leak.
    return [scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name))]


def _segments_left_out(segmentation_node, segments: segmentation_nodes.SegmentationOnGrid) -> list[str]:
    """What "Update report" must say it did not count of ``segments`` (the segmentation as read), or counted in a
    way the user may not expect; raises when the report would be meaningless.

    Without any myocardium on the input's grid (segments emptied, or moved off the volume) the report would be
    zeros: refused. Without healthy myocardium (no Myocardium segment, or one still empty), scar % would be scar
    over scar (100 %): refused. A missing scar or blood-pool segment counts as none, which may be what the reader meant
    (scar erased), so it is said, not refused. Segments of other names are named with their size; a renamed
    ScarNet segment still counted and a blood pool hidden under a filled myocardium are named too
    (:attr:`~ScarNetSlicerLib.segmentation_nodes.SegmentationOnGrid.notes`).
    """
    from scarnet.labels import HEALTHY_MYOCARDIUM, LV_BLOOD_POOL, MVO, SCAR

    found = set(segments.recognised.values())
    counted = set(np.unique(segments.labelmap.array).tolist()) if segments.labelmap is not None else found
    name = segmentation_node.GetName()
    if not counted & {HEALTHY_MYOCARDIUM, SCAR, MVO}:
        # A report of zeros would replace the last one without a word.
        raise InputError(f"segmentation '{name}' has no myocardium on the input's grid (its segments are empty, or "
                         "lie off the volume: moved by a transform?), so there is nothing to report")
    if HEALTHY_MYOCARDIUM not in counted and (SCAR in counted or MVO in counted):
        state = "has no Myocardium segment" if HEALTHY_MYOCARDIUM not in found else \
            "has no healthy myocardium (its Myocardium segment is empty, or wholly under Scar / MVO)"
        raise InputError(f"segmentation '{name}' {state}: scar % needs the whole myocardium; paint the "
                         "myocardium into a segment named 'Myocardium'")
    notices = []
    if SCAR not in found:
        notices.append(f"segmentation '{name}' has no Scar segment: scar counted as 0 mL (besides any MVO)")
    if LV_BLOOD_POOL not in found:
        notices.append(f"segmentation '{name}' has no LV blood pool segment: blood pool counted as 0 mL")
    if segments.not_counted:
        notices.append(f"segments not counted, their names are not LV blood pool, Myocardium, Scar or MVO (or a "
                       f"usual synonym such as Infarct): {', '.join(segments.not_counted)}")
    return notices + segments.notes


def _fingerprint_or_none(segmentation_node, input_node, grid=None) -> str | None:
    """The segmentation's fingerprint, or None when it cannot be read (then it counts as changed)."""
    try:
        return segmentation_nodes.fingerprint(segmentation_node, input_node, grid)
    except (InputError, RuntimeError):
        return None


def place_next_to(scene, input_node, nodes: list) -> None:
    """Put ``nodes`` under the same subject-hierarchy parent (the input's study) as ``input_node``."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if hierarchy is None:
        return
    input_item = hierarchy.GetItemByDataNode(input_node)
    if not input_item:
        return
    parent = hierarchy.GetItemParent(input_item)
    for node in nodes:
        item = hierarchy.GetItemByDataNode(node)
        if item:
            if hierarchy.GetItemParent(item) != parent:
                hierarchy.SetItemParent(item, parent)
        else:
            hierarchy.CreateItem(parent, node)


def write_intermediate_files(folder: str, name: str, volume: Volume, result) -> Path:
    """Input, labelmap and report of one run, for reproducing it with the ``scarnet`` command line."""
    from scarnet.io import write_report, write_seg_nrrd, write_volume

    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "input"
    stem = Path(folder) / f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}"
    Path(folder).mkdir(parents=True, exist_ok=True)
    # A folder of its own: two inputs of one name (or one run twice) within a second never share, or overwrite,
    # another run's files. mkdir without exist_ok claims the name atomically, so parallel runs cannot race for it.
    for attempt in range(1, 1000):
        target = stem if attempt == 1 else stem.with_name(f"{stem.name}-{attempt}")
        try:
            target.mkdir()
            break
        except FileExistsError:
            continue
    else:
        raise InputError(f"{folder}: could not make a new folder for the intermediate files ({stem.name}-…)")
    write_volume(volume, target / "input.nrrd", overwrite=True)
    write_seg_nrrd(result.labelmap, target / "segmentation.seg.nrrd", overwrite=True)
    write_report(result.report, target / "report.json", overwrite=True)
    return target


__all__ = [
    "DEVICES",
    "EditedSegmentationError",
    "INPUT_REFERENCE_ROLE",
    "Outputs",
    "Processor",
    "SegmentationJob",
    "SegmentationOptions",
    "default_segmenter_factory",
    "made_from_another_input",
    "outputs_of_input",
    "normalise_path",
    "place_next_to",
    "recorded_input_id",
    "write_intermediate_files",
]
