"""ScarNet LGE Scar: myocardium and scar segmentation of LGE cardiac MRI, with scar per slice.

Slicer glue only. The work is in the engine (``scarnet/``, no Slicer) and in ``ScarNetSlicerLib/``
(MRML conversions, the worker thread, dependencies; tested outside Slicer on slicer-core).
Nothing heavy is imported here at module load: torch and the engine load on the first click.
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import pathlib
import re
from typing import Annotated, Any

import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import Choice, StringSerializer, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

try:
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # Slicer without the i18n module: show the English text

    def _(text: str) -> str:
        return text

    def translate(context: str, text: str) -> str:
        return text


ENCODER_CHOICES = ["auto", "litemedsam", "medsam_vit_b", "none"]
#: Test-time augmentation: none, "flip" (3 model passes) or "dihedral" (the 8 turns and mirrors): the engine's
#: ``scarnet.inference.TTA_MODES``, and what ``ScarNetSlicerLogic.process(testTimeAugmentation=...)`` takes.
TTA_CHOICES = ["none", "flip", "dihedral"]
#: A scene saved when test-time augmentation was a checkbox holds "True" (flips) or "False".
TTA_SAVED_BY_THE_CHECKBOX = {"True": "flip", "False": "none"}
#: The GUI polls the worker this often, and gives it this long of each tick (see the widget's setup).
POLL_INTERVAL_MS = 10
BULLSEYE_WIDTH_PX = 340  # the AHA bullseye in the panel (the SVG is drawn 460 px wide)
WORKER_SHARE_S = 0.04


#
# ScarNetSlicer
#


class ScarNetSlicer(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("ScarNet LGE Scar")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Cardiac")]
        self.parent.dependencies = []
        self.parent.contributors = ["ScarNetSlicer contributors (https://github.com/ScarNetSlicer/ScarNetSlicer)"]
        self.parent.helpText = _(
            "Segments the LV blood pool, myocardium, scar and microvascular obstruction (MVO) in a short-axis "
            "late gadolinium enhancement (LGE) MRI stack and reports myocardium and scar volume, mass and scar % "
            "per slice and in total. Click <b>Segment scar</b>, then <b>Edit in Segment Editor</b> (it opens Segment "
            "Editor on the output segmentation, with the input volume and the Scar segment selected), correct the "
            "segments, then click <b>Update report</b>. "
            'See <a href="https://github.com/ScarNetSlicer/ScarNetSlicer/blob/main/docs/slicer.md">the '
            "documentation</a>."
        )
        self.parent.acknowledgementText = _(
            "ScarNet: Tiwari et al., a hybrid ViT/U-Net network for myocardial scar segmentation in LGE MRI "
            '(<a href="https://arxiv.org/abs/2501.01372">arXiv 2501.01372</a>). Image encoder from LiteMedSAM / '
            "MedSAM (Ma et al., Segment anything in medical images, Nature Communications 15:654, 2024). "
            "Weights trained on the EMIDEC data set (Lalande et al., Emidec: a database usable for the automatic "
            "evaluation of myocardial infarction from delayed-enhancement cardiac MRI, Data 5(4):89, 2020): "
            "for non-commercial research use only, not for clinical diagnosis."
        )
        # Sample data and terminology need the application (and the Sample Data module) to be ready.
        slicer.app.connect("startupCompleted()", onStartupCompleted)


@contextlib.contextmanager
def _waitCursor():
    """The busy cursor for the work inside only (not over the message boxes that may follow)."""
    qt.QApplication.setOverrideCursor(qt.Qt.WaitCursor)
    try:
        yield
    finally:
        qt.QApplication.restoreOverrideCursor()


def onStartupCompleted() -> None:
    # Each on its own: without the Sample Data module (disabled), the terminology must still load.
    for step in (registerSampleData, loadTerminology):
        try:
            step()
        except Exception:  # a start-up hook must not stop Slicer's others; the log says what failed
            logging.exception(f"ScarNetSlicer: {step.__name__} failed")


def registerSampleData() -> None:
    """Add the phantom LGE volume (bundled file, SHA-256 checked) to the Sample Data module."""
    import SampleData

    from ScarNetSlicerLib import sample_data

    SampleData.SampleDataLogic.registerCustomSampleDataSource(**sample_data.source_arguments())


def loadTerminology() -> None:
    """Make our segment terminology selectable in Segment Editor's terminology selector."""
    path = os.path.join(os.path.dirname(__file__), "Resources", "Terminology", "ScarNetSlicer.term.json")
    terminologies = getattr(slicer.modules, "terminologies", None)
    if terminologies is not None:
        terminologies.logic().LoadTerminologyFromFile(path)


#
# ScarNetSlicerParameterNode
#


class AugmentationChoiceSerializer(StringSerializer):
    """Reads the test-time augmentation choice, and a scene's saved checkbox (before the choice of turns) as its
    choice: "True" as flip, "False" as none. Read, not rewritten once: a scene loaded into an open module (a
    singleton node copied over) is read again, and the panel's combo box refuses a value it does not list."""

    def read(self, parameterNode, name: str) -> str:
        value = super().read(parameterNode, name)
        return TTA_SAVED_BY_THE_CHECKBOX.get(value, value)


@parameterNodeWrapper
class ScarNetSlicerParameterNode:
    """The module's settings, saved with the scene and bound to the GUI (SlicerParameterName in the .ui)."""

    inputVolume: vtkMRMLScalarVolumeNode
    rvInsertionPoint: vtkMRMLMarkupsFiducialNode  # optional: the anterior (then inferior) RV insertion: AHA segments
    outputSegmentation: vtkMRMLSegmentationNode
    outputTable: vtkMRMLTableNode
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    encoder: Annotated[str, Choice(ENCODER_CHOICES)] = "auto"
    weightsPath: pathlib.Path
    # none / flip / dihedral (TTA_CHOICES); an older scene's True reads as flip (see the serializer).
    testTimeAugmentation: Annotated[str, Choice(TTA_CHOICES), AugmentationChoiceSerializer()] = "none"
    # The range is stated here: without it the GUI connector widens the .ui spin box to ±inf.
    minimumScarRegionMl: Annotated[float, WithinRange(0.0, 20.0)] = 0.0
    keepIntermediateFiles: bool = False
    # Which end of the stack is basal (levels, AHA segments): auto = the image's orientation, else the cavity.
    basalEnd: Annotated[str, Choice(["auto", "first", "last"])] = "auto"


#
# ScarNetSlicerWidget
#


class ScarNetSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        # True from a click on "Segment scar" until its job starts: the first click may install packages for
        # minutes (pip's output keeps the GUI responsive), and a second click must not start a second run.
        self._starting = False
        self._inputVolumeId = None  # the input the output selections were last checked against
        # (table ID, segmentation ID) whose report was last compared with the contours (see _refreshTotals).
        self._reportCheckedFor = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ScarNetSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = ScarNetSlicerLogic()
        self.ui.progressBar.hide()

        # The job runs in a worker thread; this timer brings its progress (and its end) to the GUI thread.
        # Slicer's main thread holds Python's GIL even while idle in the Qt event loop (PythonQt runs
        # without thread support), so the worker runs only while the main thread waits: each tick
        # waits WORKER_SHARE_S for it (releasing the GIL), as Slicer's SimpleFilters module does.
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onPollJob)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.editSegmentationButton.connect("clicked(bool)", self.onEditSegmentationButton)
        self.ui.updateReportButton.connect("clicked(bool)", self.onUpdateReportButton)
        self.ui.saveReportButton.connect("clicked(bool)", self.onSaveReportButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self._job is not None:
            self._job.task.cancel()  # its result will be dropped
            # Let it reach its next cancel check: a thread still inside torch when Python shuts down can crash
            # Slicer on exit. The job checks between slices; loading the model has no check, so wait up to 10 s.
            self._job.task.wait(10.0)
        self._timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self.onCancelButton()
        self.setParameterNode(None)
        if self._job is None:  # the last run's figures are not the next scene's (a cancelled run says so itself)
            self.ui.statusLabel.text = ""

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            # Exactly a scalar volume: the selector cannot show its subclasses (labelmaps, vector volumes).
            # And one the module can segment: not a frame of a cine sequence, not a single slice.
            from scarnet.errors import ScarNetError
            from ScarNetSlicerLib.volume_nodes import check_volume_node

            def usable(node) -> bool:
                try:
                    check_volume_node(node)
                except ScarNetError:
                    return False
                return True

            scalarVolumes = [node for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                             if node.GetClassName() == "vtkMRMLScalarVolumeNode" and usable(node)]
            if scalarVolumes:
                self._parameterNode.inputVolume = scalarVolumes[0]

    def setParameterNode(self, inputParameterNode: ScarNetSlicerParameterNode | None) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        self._reportCheckedFor = None  # entering the module, or another scene: compare the report shown again
        # Selections saved with the scene are the user's: only a change of input unselects outputs.
        inputVolume = self._parameterNode.inputVolume if self._parameterNode else None
        self._inputVolumeId = inputVolume.GetID() if inputVolume else None
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._updateButtons()
        self._refreshTotals()
        self._showNoWeightsFileAsEmpty()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        self._selectOutputsOfInput()
        self._updateButtons()
        self._refreshTotals()
        self._showNoWeightsFileAsEmpty()

    def _showNoWeightsFileAsEmpty(self) -> None:
        """Show "no weights file" as an empty field, as its tooltip says (empty: the bundled weights).

        The parameter node's unset path is ``pathlib.Path()``, which its GUI connector writes as ".". The value
        is left as it is (an empty field reads back as the same path); only what the field shows changes.
        """
        edit = self.ui.weightsPathLineEdit
        if edit.currentPath == ".":
            wasBlocked = edit.blockSignals(True)
            edit.currentPath = ""
            edit.blockSignals(wasBlocked)

    def _selectOutputsOfInput(self) -> None:
        """When the input volume changes, unselect outputs made from another volume, and select the new
        input's own results where ScarNet made some (the last segmentation and its report).

        Otherwise the next "Segment scar" would write into (and "Update report" re-quantify) the
        previous input's results, or make a second set for an input that has one. The user's own nodes
        (no recorded input) stay selected. "Segment scar" still asks before it replaces an edited one.
        """
        inputVolume = self._parameterNode.inputVolume if self._parameterNode else None
        inputVolumeId = inputVolume.GetID() if inputVolume else None
        if inputVolumeId == self._inputVolumeId:
            return
        self._inputVolumeId = inputVolumeId
        if self._job is None:  # the status line spoke of the last input's run or report (its scar, its notices)
            self.ui.statusLabel.text = ""
        if inputVolume is None:
            return  # nothing can run without an input; the next input decides
        from ScarNetSlicerLib.processing import made_from_another_input, outputs_of_input

        # Each assignment modifies the parameter node again; that call returns above (same input).
        if made_from_another_input(self._parameterNode.outputSegmentation, inputVolume):
            self._parameterNode.outputSegmentation = None
        if made_from_another_input(self._parameterNode.outputTable, inputVolume):
            self._parameterNode.outputTable = None
        if self._parameterNode.outputSegmentation is None:
            segmentation, table = outputs_of_input(slicer.mrmlScene, inputVolume)
            if segmentation is not None:
                self._parameterNode.outputSegmentation = segmentation
                if self._parameterNode.outputTable is None and table is not None:
                    self._parameterNode.outputTable = table

    def _updateButtons(self, caller=None, event=None) -> None:
        running = self._job is not None or self._starting
        hasInput = bool(self._parameterNode and self._parameterNode.inputVolume)
        hasSegmentation = bool(hasInput and self._parameterNode.outputSegmentation)
        self.ui.segmentButton.enabled = hasInput and not running
        self.ui.segmentButton.toolTip = (
            _("Segment myocardium, scar and MVO and report scar per slice") if hasInput else _("Select the LGE volume")
        )
        # Not during a run: edits made meanwhile send the run's result into a new segmentation.
        self.ui.editSegmentationButton.enabled = hasSegmentation and not running
        self.ui.updateReportButton.enabled = hasSegmentation and not running
        # Once clicked, Cancel stays off until the job ends (a parameter change must not offer it again).
        self.ui.cancelButton.enabled = self._job is not None and not self._job.task.should_cancel()
        # A new input during a run would get the run's outputs selected (and "Update report" would
        # then measure them on the wrong volume): the input stays fixed until the run ends.
        self.ui.inputVolumeSelector.enabled = not running

    def _showUserError(self, error: Exception) -> None:
        """One clear message for problems the user can fix (no traceback dialog)."""
        slicer.util.errorDisplay(str(error), windowTitle=_("ScarNet"))

    def onSegmentButton(self) -> None:
        if self._job is not None or self._starting:
            return  # a click while packages install (pip keeps the GUI responsive) or a run is under way
        self._starting = True
        self._updateButtons()
        try:
            self._startSegmentation()
        finally:
            self._starting = False
            if self._job is None and self.ui.statusLabel.text == self._checkingPackagesText():
                self.ui.statusLabel.text = ""  # nothing started (declined, refused, failed): its dialog said why
            self._updateButtons()

    @staticmethod
    def _checkingPackagesText() -> str:
        return _("Checking the Python packages ScarNet needs…")

    def _startSegmentation(self) -> None:
        from scarnet.errors import ScarNetError

        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Segmentation failed."), waitCursor=False):
            try:
                overwrite = False
                # Checks the input first: a 2D/4D input gets its own message, not a question about edits.
                if self.logic.segmentationWasEdited(p.outputSegmentation, p.inputVolume):
                    from ScarNetSlicerLib.processing import made_from_another_input

                    if made_from_another_input(p.outputSegmentation, p.inputVolume):
                        question = _("Segmentation '{name}' holds ScarNet's result for another volume. Replace its "
                                     "segments with a new ScarNet segmentation of this one?")
                    else:
                        question = _("Segmentation '{name}' was edited after ScarNet made it (or ScarNet did not "
                                     "make it). Replace its segments with a new ScarNet segmentation?") + " " + (
                            _("(The report of the corrected contours is kept, marked outdated.)")
                            if self.logic.keepsCorrectedReport(p.outputSegmentation, p.outputTable) else
                            _("(The edits were not reported: to keep their figures, click Update report first.)"))
                    # Escaped: the dialog takes a name such as "<b>x</b>" for markup.
                    if not slicer.util.confirmYesNoDisplay(question.format(name=html.escape(
                            p.outputSegmentation.GetName())), windowTitle=_("ScarNet")):
                        return
                    overwrite = True
                self.ui.statusLabel.text = self._checkingPackagesText()  # the first run may install them
                self._job = self.logic.process(
                    p.inputVolume, p.outputSegmentation, p.outputTable, device=p.device, encoder=p.encoder,
                    weightsPath=p.weightsPath, testTimeAugmentation=p.testTimeAugmentation,
                    minimumScarRegionMl=p.minimumScarRegionMl, keepIntermediateFiles=p.keepIntermediateFiles,
                    overwriteEdited=overwrite, rvInsertionPoint=p.rvInsertionPoint, basalEnd=p.basalEnd,
                    waitForCompletion=False)
            except ScarNetError as error:
                self._showUserError(error)
                return
            self._job.task.start()
            self.ui.progressBar.value = 0
            self.ui.progressBar.show()
            self.ui.statusLabel.text = _("Starting…")
            self._updateButtons()
            self._timer.start()

    def onPollJob(self) -> None:
        from scarnet.errors import ScarNetError

        job = self._job
        if job is None:
            self._timer.stop()
            return
        if not job.task.finished:
            job.task.wait(WORKER_SHARE_S)  # releases the GIL: the worker's time (see setup)
        for progress in job.task.poll():
            self.ui.progressBar.value = int(round(100 * progress.fraction))
            self.ui.statusLabel.text = progress.message  # the engine's words (English)
        if not job.task.finished:
            return
        self._timer.stop()
        self._job = None
        self.ui.progressBar.hide()
        self._updateButtons()
        with slicer.util.tryWithErrorDisplay(_("Segmentation failed."), waitCursor=False):
            try:
                with _waitCursor():  # only while working: the dialogs below get the normal cursor
                    report = self.logic.finishProcessing(job, showResults=True)
            except ScarNetError as error:
                self.ui.statusLabel.text = _("Failed: {reason}").format(reason=error)
                self._showUserError(error)
                return
            except Exception:
                # Unexpected (e.g. out of GPU memory): the dialog above shows the details; the status line
                # must not go on showing the last progress message.
                self.ui.statusLabel.text = _("Failed (see the error message).")
                raise
            if report is None:
                self.ui.statusLabel.text = _("Cancelled: nothing was changed.")
                return
            inputVolume = self._parameterNode.inputVolume
            if inputVolume is not None and inputVolume.GetID() == job.input_node.GetID():
                self._showReport(report)  # (another input's panel must not get this run's outputs)
            done = _("Done in {seconds:.1f} s. Review the QC flags in the table.").format(
                seconds=report.get("slicer", {}).get("elapsed_s", 0.0))
            notice = report.get("slicer", {}).get("notice")
            # How much of the scar lies on flagged slices (a normal heart's false scar is often all there): shown,
            # not a dialog after every run.
            from scarnet.quantify import flagged_scar_text

            flagged = flagged_scar_text(report)
            self.ui.statusLabel.text = done + ("\n" + flagged if flagged else "") + ("\n" + notice if notice else "")
            if notice:  # the result went into a new segmentation, or the engine warns (see Outputs.notice)
                slicer.util.warningDisplay(notice, windowTitle=_("ScarNet"))

    def onCancelButton(self) -> None:
        if self._job is not None:
            self._job.task.cancel()
            self.ui.statusLabel.text = _("Cancelling…")
            self.ui.cancelButton.enabled = False

    def onEditSegmentationButton(self) -> None:
        """Open Segment Editor on the output segmentation, with the input volume as source volume (the intensities its
        Threshold and intensity masking use) and the Scar segment selected: not whatever it last edited, which
        "Update report" would not see."""
        from ScarNetSlicerLib.segmentation_nodes import scar_segment_id

        p = self._parameterNode
        segmentation, volume = p.outputSegmentation, p.inputVolume
        with slicer.util.tryWithErrorDisplay(_("Opening Segment Editor failed."), waitCursor=False):
            # First the module: entering it gives its editor the parameter node (vtkMRMLSegmentEditorNode) that the
            # calls below write to.
            slicer.util.selectModule("SegmentEditor")
            editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
            # Then in this order: the editor takes a source volume only once it has a segmentation, and a new
            # segmentation selects its own reference volume as source, which need not be this input.
            editor.setSegmentationNode(segmentation)
            if hasattr(editor, "setSourceVolumeNode"):
                editor.setSourceVolumeNode(volume)
            else:  # Slicer < 5.4
                editor.setMasterVolumeNode(volume)
            scarSegmentId = scar_segment_id(segmentation)
            if scarSegmentId:
                editor.setCurrentSegmentID(scarSegmentId)

    def onUpdateReportButton(self) -> None:
        from scarnet.errors import ScarNetError

        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Update report failed."), waitCursor=False):
            try:
                with _waitCursor():
                    report = self.logic.updateReport(p.inputVolume, p.outputSegmentation, p.outputTable,
                                                     showResults=True, rvInsertionPoint=p.rvInsertionPoint,
                                                     basalEnd=p.basalEnd)
            except ScarNetError as error:
                # Not the last update's "Report updated" beside a refusal: the table still holds the earlier report.
                failed = _("Update failed: {reason}. The table still holds the earlier report.")
                self.ui.statusLabel.text = failed.format(reason=error)
                self._showUserError(error)
                return
            self._showReport(report)
            notice = report.get("slicer", {}).get("notice")
            from scarnet.quantify import flagged_scar_text

            flagged = flagged_scar_text(report)  # the model's flags, kept through the update
            self.ui.statusLabel.text = (_("Report updated from the segmentation.") + ("\n" + flagged if flagged else "")
                                        + ("\n" + notice if notice else ""))
            if notice:  # segments it did not count, or a table it would not overwrite (see Outputs.notice)
                slicer.util.warningDisplay(notice, windowTitle=_("ScarNet"))

    def onSaveReportButton(self) -> None:
        from scarnet.errors import ScarNetError
        from ScarNetSlicerLib.report_nodes import SEGMENTATION_REFERENCE_ROLE, write_report_page

        p = self._parameterNode
        table, volume = p.outputTable, p.inputVolume
        if self.logic.reportIsCurrent(table) is False:
            # Segment Editor edits not yet reported: the page would show figures the contours no longer have.
            question = _("Segmentation '{name}' was edited after this report was made, so the report does not show "
                         "those edits. Save the report as it was made?\n\n(No: click Update report first.)")
            segmentation = table.GetNodeReference(SEGMENTATION_REFERENCE_ROLE)
            if not slicer.util.confirmYesNoDisplay(question.format(name=html.escape(segmentation.GetName())),
                                                   windowTitle=_("ScarNet")):
                self.ui.statusLabel.text = _("Not saved: click Update report, then Save report.")
                return
        name = volume.GetName() if volume else table.GetName()
        # DICOM volumes are named like "6: LGE PSIR": keep the file name to characters every system takes.
        fileName = re.sub(r"[^\w .-]+", "_", f"{name} ScarNet report").strip(" .") + ".html"
        path = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Save report"),
                                              os.path.join(qt.QDir.homePath(), fileName), _("Web page") + " (*.html)")
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Saving the report failed."), waitCursor=False):
            try:
                with _waitCursor():  # not over the error dialog below
                    saved = write_report_page(table, path, name)
            except (ScarNetError, OSError) as error:  # no report; a folder that cannot be written
                self._showUserError(error)
                return
            self.ui.statusLabel.text = _("Report saved: {path} (and its data: {data})").format(
                path=saved, data=saved.with_suffix(".json").name)

    def _showReport(self, report: dict[str, Any]) -> None:
        from ScarNetSlicerLib.report_nodes import format_totals, stored_bullseye

        nodes = report.get("slicer", {})
        self._parameterNode.outputSegmentation = slicer.mrmlScene.GetNodeByID(nodes.get("segmentation"))
        self._parameterNode.outputTable = slicer.mrmlScene.GetNodeByID(nodes.get("table"))
        self._showTotals(format_totals(report))
        # The same table as before changes no parameter, so the picture is refreshed here too.
        self._showBullseye(stored_bullseye(self._parameterNode.outputTable))
        self.ui.saveReportButton.enabled = True

    def _showTotals(self, totals: dict[str, str]) -> None:
        self.ui.myocardiumMassLabel.text = totals["myocardium_g"]
        self.ui.scarMassLabel.text = totals["scar_g"]
        self.ui.scarPercentLabel.text = totals["scar_percent"]
        self.ui.transmuralLabel.text = totals["transmural_over_50_percent"]

    def _refreshTotals(self) -> None:
        """The panel's totals: the selected table's, when it reports the selected segmentation; else blank.

        So that another input's (or another segmentation's) figures are never shown beside this one,
        and a scene loaded from disk shows its report's totals again.
        """
        from ScarNetSlicerLib.report_nodes import (
            SEGMENTATION_REFERENCE_ROLE,
            TOTAL_KEYS,
            format_totals,
            stored_bullseye,
            stored_report,
        )

        p = self._parameterNode
        table = p.outputTable if p else None
        segmentation = p.outputSegmentation if p else None
        report = None
        if table is not None and segmentation is not None \
                and table.GetNodeReference(SEGMENTATION_REFERENCE_ROLE) is segmentation:
            report = stored_report(table)
        self._showTotals(format_totals(report) if report else dict.fromkeys(TOTAL_KEYS, ""))
        self._showBullseye(stored_bullseye(table) if report else "")
        self.ui.saveReportButton.enabled = bool(report)
        # Comparing the report with the contours reads every segment on the input's grid (seconds for a large
        # volume, on the GUI thread): done when the pair shown changes (a scene reopened, a table picked, the module
        # entered), not on every parameter change (each click of a checkbox or step of a spin box).
        shown = (table.GetID(), segmentation.GetID()) if report else None
        checked, self._reportCheckedFor = self._reportCheckedFor, shown
        if report and shown != checked and self.logic.reportIsCurrent(table) is False:
            # A scene reopened (or a table picked) after Segment Editor edits that were never reported: the totals
            # shown are of the contours as they were.
            self.ui.statusLabel.text = _("Segmentation '{name}' was edited after this report was made: the totals "
                                         "shown are from before the edits; click Update report.").format(
                name=segmentation.GetName())

    def _showBullseye(self, svg: str) -> None:
        """The report's AHA bullseye (SVG text) in the panel; hidden without one, or where Qt cannot draw SVG."""
        pixmap = qt.QPixmap()
        shown = bool(svg) and pixmap.loadFromData(qt.QByteArray(svg.encode("utf-8")), "SVG")
        self.ui.bullseyeLabel.setPixmap(pixmap.scaledToWidth(BULLSEYE_WIDTH_PX, qt.Qt.SmoothTransformation)
                                        if shown else qt.QPixmap())
        self.ui.bullseyeLabel.visible = shown


#
# ScarNetSlicerLogic
#


class ScarNetSlicerLogic(ScriptedLoadableModuleLogic):
    """Batch API; the work is in ``ScarNetSlicerLib.processing`` (which takes a fake segmenter in tests)."""

    def __init__(self, segmenterFactory=None, allowInstall: bool = True) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.segmenterFactory = segmenterFactory  # None: the ScarNet model
        # False: never offer to install packages (the self-test, which "Reload and Test" runs without --testing).
        self.allowInstall = allowInstall

    def getParameterNode(self):
        return ScarNetSlicerParameterNode(super().getParameterNode())

    def _processor(self):
        from ScarNetSlicerLib.processing import Processor, default_segmenter_factory

        return Processor(slicer.mrmlScene, self.segmenterFactory or default_segmenter_factory)

    def ensureDependencies(self, includeTorch: bool = True) -> list[str]:
        """Install missing packages after one confirmation (see ScarNetSlicerLib/dependencies.py); without
        ``includeTorch``, those of the paths that run no model (Update report)."""
        from ScarNetSlicerLib import dependencies

        def confirm(text: str) -> bool:
            # A test never installs (no network, no change to the user's Slicer): without the packages it
            # runs the click path with a stand-in model (ScarNetSlicerTest.test_ClickPath).
            return self.allowInstall and not slicer.app.testingEnabled() and slicer.util.confirmOkCancelDisplay(
                text, windowTitle=_("ScarNet"))

        installTorch = None
        try:
            import PyTorchUtils

            def installTorch():
                return PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                                     torchVersionRequirement=">=2.1")
        except ImportError:
            pass
        return dependencies.ensure_dependencies(confirm, installTorch, _pipInstall, include_torch=includeTorch)

    def segmentationWasEdited(self, segmentationNode, inputVolume) -> bool:
        """True when a run would replace edited segments; raises ``ValueError`` for an unusable input."""
        return self._processor().segmentation_was_edited(segmentationNode, inputVolume)

    def process(self, inputVolume, outputSegmentation=None, outputTable=None, device: str = "auto",
                encoder: str | None = None, weightsPath=None, testTimeAugmentation: bool | str = False,
                minimumScarRegionMl: float = 0.0, keepIntermediateFiles: bool = False, overwriteEdited: bool = False,
                waitForCompletion: bool = True,
                showResults: bool = False, rvInsertionPoint=None, basalEnd: str = "auto"):
        """Segment ``inputVolume`` and write segments, per-slice table and plot.

        Returns the report dict (``scarnet`` report plus ``report["slicer"]`` with the node IDs, and a
        ``"notice"`` when the chosen segmentation was edited or removed during the run, so the result
        went into a new one, or when the engine warns), or None if cancelled. With
        ``waitForCompletion=False`` returns the not yet started job instead (the widget starts it and
        calls :meth:`finishProcessing`). Raises ``ValueError``
        (bad input, edited output without ``overwriteEdited``, an input removed during the run, no heart
        found) or ``RuntimeError`` (weights, dependencies), one line each. ``rvInsertionPoint``: a point list
        holding the anterior RV insertion point and, optionally, the inferior one after it (which sizes
        the septum); the report then has the AHA segments (``report["segments"]``, and a second table
        referenced from the report table).
        ``basalEnd``: "auto", "first" or "last" (which end of the stack is basal).
        ``testTimeAugmentation``: the model averaged over transformed copies of each slice: False or "none" (1 pass),
        True or "flip" (mirrors, 3 passes), "dihedral" (the 8 turns and mirrors: the result no longer depends on the
        image's in-plane orientation).
        """
        from ScarNetSlicerLib.processing import SegmentationOptions
        from ScarNetSlicerLib.volume_nodes import check_volume_node

        check_volume_node(inputVolume)  # a bad input gets its message, not first an offer to install PyTorch
        if self.segmenterFactory is None:
            self.ensureDependencies()
        folder = os.path.join(slicer.app.temporaryPath, "ScarNetSlicer") if keepIntermediateFiles else None
        options = SegmentationOptions(device=device, encoder=None if encoder in (None, "", "auto") else encoder,
                                      weights=weightsPath, tta=testTimeAugmentation,
                                      min_scar_component_ml=minimumScarRegionMl, intermediate_folder=folder)
        job = self._processor().start(inputVolume, outputSegmentation, outputTable, options, overwriteEdited,
                                      rv_insertion_node=rvInsertionPoint, basal_end=_basalEnd(basalEnd))
        if not waitForCompletion:
            return job
        job.task.run_here()
        return self.finishProcessing(job, showResults)

    def finishProcessing(self, job, showResults: bool = False) -> dict[str, Any] | None:
        """Apply a finished job to the scene (main thread); None when it was cancelled."""
        outputs = self._processor().finish(job)
        if outputs is None:
            logging.info("ScarNet: cancelled, scene unchanged")
            return None
        return self._done(outputs, showResults)

    def updateReport(self, inputVolume, segmentationNode, outputTable=None, showResults: bool = False,
                     rvInsertionPoint=None, basalEnd: str = "auto") -> dict:
        """Re-quantify the segmentation as it is now (after Segment Editor edits); no model runs.

        ``rvInsertionPoint``, ``basalEnd``: as for :meth:`process` (AHA segments of the segmentation as it is now).
        """
        if self.segmenterFactory is None:
            self.ensureDependencies(includeTorch=False)  # scipy and the rest, in a scene opened before any run
        return self._done(self._processor().update_report(inputVolume, segmentationNode, outputTable,
                                                          rv_insertion_node=rvInsertionPoint,
                                                          basal_end=_basalEnd(basalEnd)), showResults)

    def keepsCorrectedReport(self, segmentationNode, tableNode=None) -> bool:
        """True when a run replacing ``segmentationNode``'s edited contours keeps their report (marked outdated)."""
        return self._processor().keeps_corrected_report(segmentationNode, tableNode)

    def reportIsCurrent(self, tableNode) -> bool | None:
        """False when the segmentation that ``tableNode`` reports was edited since the report was made (click
        Update report); None when that cannot be told."""
        return self._processor().report_is_current(tableNode)

    def _done(self, outputs, showResults: bool) -> dict[str, Any]:
        outputs.report["slicer"] = {**outputs.report.get("slicer", {}), **{
            "segmentation": outputs.segmentation_node.GetID(), "table": outputs.table_node.GetID(),
            "chart": outputs.chart_node.GetID(), "series": outputs.series_node.GetID()}}
        if outputs.report.get("segments") is not None:
            outputs.report["slicer"]["segmentTable"] = outputs.segment_table_node.GetID()
        if outputs.notice:
            outputs.report["slicer"]["notice"] = outputs.notice
            logging.warning(f"ScarNet: {outputs.notice}")
        if showResults:
            self.showResults(outputs.table_node, outputs.chart_node)
        return outputs.report

    @staticmethod
    def showResults(tableNode, chartNode) -> None:
        """Show the per-slice table and the scar % plot next to the slice views."""
        layoutManager = slicer.app.layoutManager()
        if layoutManager is None:
            return
        layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView)
        appLogic = slicer.app.applicationLogic()
        selectionNode = appLogic.GetSelectionNode()
        selectionNode.SetActiveTableID(tableNode.GetID())
        selectionNode.SetActivePlotChartID(chartNode.GetID())
        appLogic.PropagateTableSelection()
        appLogic.PropagatePlotChartSelection()


def _basalEnd(value: str | None) -> str | None:
    """The panel's "auto" / "first" / "last" → the engine's None / "first" / "last"."""
    return None if value in (None, "", "auto") else value


def _pipInstall(requirements: list[str]) -> None:
    """pip_ensure on Slicer >= 5.11 (its own prompt off: we asked once already), pip_install before."""
    slicerPackaging = None
    for name in ("slicer.packaging", "slicer.pydeps"):  # the module's name in Slicer 5.11+ (and in 5.11 previews)
        try:
            slicerPackaging = __import__(name, fromlist=["pip_ensure"])
            break
        except ImportError:
            continue
    if slicerPackaging is not None and hasattr(slicerPackaging, "pip_ensure"):
        from packaging.requirements import Requirement

        slicerPackaging.pip_ensure([Requirement(r) for r in requirements], prompt_install=False,
                                   requester="ScarNetSlicer")
    else:
        slicer.util.pip_install(" ".join(requirements))


#
# ScarNetSlicerTest
#


class ScarNetSlicerTest(ScriptedLoadableModuleTest):
    """The click path inside Slicer: sample → Segment scar → edit → Update report."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_BadInput()
        self.setUp()
        self.test_OutputsFollowInput()
        self.setUp()
        self.test_EditInSegmentEditor()
        self.setUp()
        self.test_ClickPath()
        self.setUp()
        self.test_SceneSavedWithTheCheckbox()

    def test_BadInput(self):
        import numpy as np

        logic = ScarNetSlicerLogic(segmenterFactory=lambda options: None)
        with self.assertRaises(ValueError):
            logic.process(None)
        flat = slicer.util.addVolumeFromArray(np.ones((1, 64, 64), dtype=np.float32), name="single slice")
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "some segmentation")
        segmentation.GetSegmentation().AddEmptySegment("scar", "Scar")
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaises(ValueError):
            logic.process(flat)
        # The Segment button asks this first: a 2D input must get its own message, not "was edited, replace?"
        with self.assertRaisesRegex(ValueError, "2D"):
            logic.segmentationWasEdited(segmentation, flat)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore, "a refused input must not change the scene")
        stack = slicer.util.addVolumeFromArray(np.zeros((4, 16, 16), dtype=np.float32), name="stack")
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaisesRegex(ValueError, "test-time augmentation 'rotations'"):
            logic.process(stack, testTimeAugmentation="rotations")  # "dihedral" is the name of the turns
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)

    def test_OutputsFollowInput(self):
        """Picking another input unselects the outputs made from the previous one, not the user's own,
        and the panel's totals are those of the selected segmentation's report, or blank."""
        import numpy as np

        from scarnet.quantify import quantify
        from scarnet.volume import Volume
        from ScarNetSlicerLib import report_nodes
        from ScarNetSlicerLib.processing import INPUT_REFERENCE_ROLE

        slicer.util.selectModule("ScarNetSlicer")
        widget = slicer.util.getModuleWidget("ScarNetSlicer")
        parameterNode = widget._parameterNode
        first = slicer.util.addVolumeFromArray(np.zeros((4, 16, 16), dtype=np.float32), name="first")
        second = slicer.util.addVolumeFromArray(np.zeros((4, 16, 16), dtype=np.float32), name="second")
        resultOfFirst = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "first ScarNet")
        resultOfFirst.SetNodeReferenceID(INPUT_REFERENCE_ROLE, first.GetID())
        labels = np.zeros((4, 16, 16), dtype=np.uint8)
        labels[:, 4:12, 4:12] = 2
        labels[:, 6:10, 6:10] = 1
        labels[1, 4, 4:12] = 3
        report = quantify(Volume(labels, (1.5, 1.5, 8.0), (0.0, 0.0, 0.0), np.eye(3))).to_dict()
        reportOfFirst = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "first ScarNet report")
        report_nodes.update_table(reportOfFirst, report)
        reportOfFirst.SetNodeReferenceID(report_nodes.SEGMENTATION_REFERENCE_ROLE, resultOfFirst.GetID())
        reportOfFirst.SetNodeReferenceID(INPUT_REFERENCE_ROLE, first.GetID())
        parameterNode.inputVolume = first
        parameterNode.outputSegmentation = resultOfFirst
        parameterNode.outputTable = reportOfFirst
        self.assertEqual(widget.ui.scarPercentLabel.text, report_nodes.format_totals(report)["scar_percent"])
        self.assertEqual(widget.ui.transmuralLabel.text,
                         report_nodes.format_totals(report)["transmural_over_50_percent"])
        # Whether the report shown still matches its contours (which reads every segment) is asked when the pair
        # shown changes or the module is entered again, not on every parameter change (a checkbox click).
        checks = []
        reportIsCurrent = widget.logic.reportIsCurrent
        widget.logic.reportIsCurrent = lambda tableNode: checks.append(tableNode) or reportIsCurrent(tableNode)
        try:
            parameterNode.testTimeAugmentation = "dihedral"
            parameterNode.testTimeAugmentation = "none"
            self.assertEqual(checks, [])
            widget.enter()  # back from Segment Editor
            self.assertTrue(checks)
        finally:
            del widget.logic.reportIsCurrent
        lastReport = "Report updated from the segmentation.\n1.06 of the 3.18 mL of scar ..."  # as an update left it
        widget.ui.statusLabel.text = lastReport
        parameterNode.inputVolume = second  # the first input's outputs unselected, its totals gone
        self.assertIsNone(parameterNode.outputTable)
        self.assertEqual(widget.ui.statusLabel.text, "")  # nor does the status line speak of the first one's scar
        self.assertEqual(widget.ui.scarPercentLabel.text, "")
        self.assertEqual(widget.ui.transmuralLabel.text, "")
        self.assertEqual(widget.ui.weightsPathLineEdit.currentPath, "")  # no weights file: empty, not "."
        resultOfFirst.SetNodeReferenceID(report_nodes.TABLE_REFERENCE_ROLE, reportOfFirst.GetID())
        parameterNode.inputVolume = first  # back to the first: its results selected again, not a second set made
        self.assertEqual(parameterNode.outputSegmentation.GetID(), resultOfFirst.GetID())
        self.assertEqual(parameterNode.outputTable.GetID(), reportOfFirst.GetID())
        self.assertEqual(widget.ui.scarPercentLabel.text, report_nodes.format_totals(report)["scar_percent"])
        parameterNode.inputVolume = second
        self.assertIsNone(parameterNode.outputSegmentation)

        usersTable = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "my table")
        parameterNode.inputVolume = first
        parameterNode.outputSegmentation = resultOfFirst
        parameterNode.outputTable = usersTable
        parameterNode.inputVolume = second
        self.assertIsNone(parameterNode.outputSegmentation)
        self.assertEqual(parameterNode.outputTable.GetID(), usersTable.GetID())

    def test_SceneSavedWithTheCheckbox(self):
        """Test-time augmentation was a checkbox: a scene saved then (True: flips) opens with flip chosen, not a
        value the panel's combo box refuses."""
        slicer.util.selectModule("ScarNetSlicer")
        widget = slicer.util.getModuleWidget("ScarNetSlicer")
        parameterNode = widget._parameterNode
        for saved, choice in (("True", "flip"), ("False", "none"), ("dihedral", "dihedral"), ("flip", "flip")):
            parameterNode.parameterNode.SetParameter("testTimeAugmentation", saved)  # as a scene's file sets it
            self.assertEqual(parameterNode.testTimeAugmentation, choice)
            self.assertEqual(widget.ui.ttaComboBox.currentText, choice)

    def test_EditInSegmentEditor(self):
        """"Edit in Segment Editor" gives Segment Editor the panel's segmentation, input volume and Scar segment,
        whatever it was editing before: the reader corrects what Update report measures, on the LGE intensities."""
        import numpy as np

        lge = slicer.util.addVolumeFromArray(np.zeros((4, 16, 16), dtype=np.float32), name="LGE")
        cine = slicer.util.addVolumeFromArray(np.zeros((4, 16, 16), dtype=np.float32), name="cine")
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn on the cine")
        # Segment Editor makes a newly selected segmentation's reference volume the source volume: here not the input.
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(cine)
        for segmentId, name in (("Segment_1", "LV blood pool"), ("Segment_2", "Myocardium"), ("Segment_3", "Scar")):
            segmentation.GetSegmentation().AddEmptySegment(segmentId, name)
        earlier = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "earlier work")
        earlier.GetSegmentation().AddEmptySegment("Segment_1", "Tumor")
        slicer.util.selectModule("SegmentEditor")  # left on another segmentation, source volume and segment
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(earlier)
        editor.setSourceVolumeNode(cine)
        editor.setCurrentSegmentID("Segment_1")

        slicer.util.selectModule("ScarNetSlicer")
        widget = slicer.util.getModuleWidget("ScarNetSlicer")
        widget._parameterNode.inputVolume = lge
        widget._parameterNode.outputSegmentation = None
        self.assertFalse(widget.ui.editSegmentationButton.enabled)
        widget._parameterNode.outputSegmentation = segmentation
        self.assertTrue(widget.ui.editSegmentationButton.enabled)
        try:
            widget.ui.editSegmentationButton.click()
            self.assertEqual(slicer.util.moduleSelector().selectedModule, "SegmentEditor")
            self.assertEqual(editor.segmentationNode().GetID(), segmentation.GetID())
            self.assertEqual(editor.sourceVolumeNode().GetID(), lge.GetID())
            self.assertEqual(editor.currentSegmentID(), "Segment_3")
        finally:
            slicer.util.selectModule("ScarNetSlicer")

    def test_ClickPath(self):
        import types

        import numpy as np
        import SampleData

        from scarnet.errors import WeightsError
        from scarnet.quantify import quantify
        from ScarNetSlicerLib import sample_data, segmentation_nodes
        from ScarNetSlicerLib.dependencies import DependencyError

        self.delayDisplay("Loading the sample LGE volume")
        registerSampleData()
        volume = SampleData.downloadSample(sample_data.SAMPLE_NAME)
        self.assertIsNotNone(volume)
        slices = volume.GetImageData().GetDimensions()[2]
        self.assertGreater(slices, 5)  # a short-axis stack

        self.delayDisplay("Segment scar")
        logic = ScarNetSlicerLogic(allowInstall=False)  # a test never installs (nor asks to)
        try:
            report = logic.process(volume, waitForCompletion=True, showResults=True)
        except (WeightsError, DependencyError) as error:
            # Without weights or PyTorch (a CI Slicer without the PyTorch extension), run the same path
            # with the sample's exact labels as the "model".
            logging.warning(f"ScarNet model unavailable ({error}); testing the click path with a stand-in model")
            # Read by Slicer itself: sample_data.read_truth needs slicerio, one of the packages that may be missing.
            truthNode = slicer.util.loadSegmentation(str(sample_data.TRUTH_PATH))
            truth = segmentation_nodes.labelmap_from_segmentation(truthNode, volume)
            slicer.mrmlScene.RemoveNode(truthNode)
            self.assertTrue({1, 2, 3} <= set(np.unique(truth.array).tolist()))  # blood pool, myocardium, scar

            def factory(options):
                def segment(image, progress=None, should_cancel=None, name="image"):
                    labelmap = image.with_array(truth.array)
                    return types.SimpleNamespace(labelmap=labelmap, report=quantify(labelmap))
                return segment

            logic = ScarNetSlicerLogic(segmenterFactory=factory)
            report = logic.process(volume, waitForCompletion=True, showResults=True)

        segmentation = slicer.mrmlScene.GetNodeByID(report["slicer"]["segmentation"])
        table = slicer.mrmlScene.GetNodeByID(report["slicer"]["table"])
        chart = slicer.mrmlScene.GetNodeByID(report["slicer"]["chart"])
        self.assertIsNotNone(chart)
        names = [segmentation.GetSegmentation().GetNthSegment(i).GetName()
                 for i in range(segmentation.GetSegmentation().GetNumberOfSegments())]
        self.assertEqual(names, ["LV blood pool", "Myocardium", "Scar", "MVO"])
        self.assertEqual(table.GetNumberOfRows(), slices)
        total = report["total"]
        self.assertTrue(50 < total["myocardium_g"] < 300, total)  # an adult LV, not noise
        self.assertTrue(0 < total["scar_percent"] < 60, total)
        self.assertFalse(logic.segmentationWasEdited(segmentation, volume))

        self.delayDisplay("Edit: remove the scar of the slice with most scar")
        labelmap = segmentation_nodes.labelmap_from_segmentation(segmentation, volume)
        scar = labelmap.array >= 3
        k = int(np.argmax(scar.sum(axis=(1, 2))))
        mask = scar.copy()
        mask[k] = False
        segmentation_nodes.set_segment_mask(segmentation, "scar", mask & (labelmap.array == 3), labelmap)
        self.assertTrue(logic.segmentationWasEdited(segmentation, volume))
        self.assertIs(logic.reportIsCurrent(table), False)  # Save report asks until the report is updated
        # The panel says so beside the totals it shows (as after reopening a scene saved before Update report).
        slicer.util.selectModule("ScarNetSlicer")
        panel = slicer.util.getModuleWidget("ScarNetSlicer")
        panel._parameterNode.inputVolume = volume
        panel._parameterNode.outputSegmentation = segmentation
        panel._parameterNode.outputTable = table
        self.assertIn("was edited after this report was made", panel.ui.statusLabel.text)
        try:
            panel.ui.editSegmentationButton.click()  # where a reader corrects it: this segmentation, on this volume
            editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
            self.assertEqual(editor.segmentationNode().GetID(), segmentation.GetID())
            self.assertEqual(editor.sourceVolumeNode().GetID(), volume.GetID())
            self.assertEqual(segmentation.GetSegmentation().GetSegment(editor.currentSegmentID()).GetName(), "Scar")
        finally:
            slicer.util.selectModule("ScarNetSlicer")

        self.delayDisplay("Update report")
        updated = logic.updateReport(volume, segmentation, table, showResults=True)
        self.assertLess(updated["total"]["scar_g"], total["scar_g"])
        self.assertIs(logic.reportIsCurrent(table), True)
        self.assertEqual(updated["slices"][k]["scar_ml"], updated["slices"][k]["mvo_ml"])
        with self.assertRaises(ValueError):
            logic.process(volume, segmentation, table)  # edited: replacing it needs overwriteEdited=True

        self.delayDisplay("AHA segments from an RV insertion point")
        from ScarNetSlicerLib.volume_nodes import ras_point_of_voxel

        middle = len(updated["slices"]) // 2
        wall = np.argwhere(labelmap.array[middle] >= 2)  # (row, column) of myocardium pixels
        row, column = wall[0]
        point = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "RV insertion")
        point.AddControlPoint(*ras_point_of_voxel(volume, (float(column), float(row), float(middle))))
        withSegments = logic.updateReport(volume, segmentation, table, showResults=True, rvInsertionPoint=point)
        self.assertEqual([s["segment"] for s in withSegments["segments"]], list(range(1, 18)))
        self.assertAlmostEqual(sum(s["scar_ml"] for s in withSegments["segments"]),
                               withSegments["total"]["scar_ml"], places=3)
        segmentTable = slicer.mrmlScene.GetNodeByID(withSegments["slicer"]["segmentTable"])
        self.assertEqual(segmentTable.GetNumberOfRows(), 17)
        from ScarNetSlicerLib.report_nodes import stored_bullseye

        svg = stored_bullseye(table)
        self.assertEqual(svg.count("data-segment="), 17)
        pixmap = qt.QPixmap()  # what the panel shows: Qt must be able to draw the SVG
        self.assertTrue(pixmap.loadFromData(qt.QByteArray(svg.encode("utf-8")), "SVG"))
        self.assertGreater(pixmap.width(), 0)
        widget = slicer.modules.scarnetslicer.widgetRepresentation().self()
        widget._showBullseye(svg)
        self.assertFalse(widget.ui.bullseyeLabel.isHidden())
        widget._showBullseye("")
        self.assertTrue(widget.ui.bullseyeLabel.isHidden())
        import tempfile

        from ScarNetSlicerLib.report_nodes import write_report_page

        with tempfile.TemporaryDirectory() as folder:
            page = write_report_page(table, pathlib.Path(folder) / "report", volume.GetName()).read_text("utf-8")
        # The panel's picture, less the captions the page says in its text beside it (its first line, the size, too).
        drawn = [line for line in svg.strip().splitlines()[1:] if "data-caption" not in line]
        self.assertIn("\n".join(drawn[:-1]), page)
        self.delayDisplay("Test passed")
