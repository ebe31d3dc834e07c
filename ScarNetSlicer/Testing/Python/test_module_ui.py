"""Static checks of the Slicer module, without Slicer: the .ui, ScarNetSlicer.py (read with ``ast``,
never imported: it needs Qt), the CMake lists, the extension description files and the resources.

These catch the mistakes that otherwise only show up when Slicer loads the module: a widget the
code uses but the .ui lacks, a parameter not bound to any widget, a file not installed by CMake,
an untranslated label, a heavy import at module load, terminology out of step with labels.py.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from scarnet.labels import SEGMENTS

MODULE_DIR = Path(__file__).resolve().parents[2]
REPO_ROOT = MODULE_DIR.parent
MODULE_FILE = MODULE_DIR / "ScarNetSlicer.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "ScarNetSlicer.ui"
CMAKE_FILE = MODULE_DIR / "CMakeLists.txt"
TERMINOLOGY_FILE = MODULE_DIR / "Resources" / "Terminology" / "ScarNetSlicer.term.json"
HOMEPAGE = "https://github.com/ScarNetSlicer/ScarNetSlicer"


# ---------------------------------------------------------------------------------------------
# Parsing helpers
# ---------------------------------------------------------------------------------------------
def _ui_widgets() -> dict[str, ET.Element]:
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def _property(widget: ET.Element, name: str) -> ET.Element | None:
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            return prop
    return None


def _bindings() -> dict[str, ET.Element]:
    """SlicerParameterName → widget."""
    out = {}
    for widget in _ui_widgets().values():
        prop = _property(widget, "SlicerParameterName")
        if prop is not None:
            name = prop.findtext("string")
            assert name not in out, f"parameter {name} bound twice in the .ui"
            out[name] = widget
    return out


def _module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"))


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise AssertionError(f"class {name} not found in ScarNetSlicer.py")


def _parameter_fields() -> dict[str, str]:
    """Field name → annotation source of the @parameterNodeWrapper class."""
    cls = _class(_module_tree(), "ScarNetSlicerParameterNode")
    assert any(ast.unparse(d) == "parameterNodeWrapper" for d in cls.decorator_list)
    return {n.target.id: ast.unparse(n.annotation) for n in cls.body
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def _cmake_list(text: str, variable: str) -> list[str]:
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"{variable} not set in {CMAKE_FILE}"
    return [t for t in match.group(1).split() if not t.startswith("#")]


def _cmake_globs(text: str) -> list[str]:
    patterns = []
    for body in re.findall(r"file\(GLOB\s+\w+\s+RELATIVE\s+\$\{CMAKE_CURRENT_SOURCE_DIR\}\s+(.*?)\)", text, re.S):
        patterns += body.split()
    return patterns


def _expand(entry: str) -> str:
    return entry.replace("${MODULE_NAME}", "ScarNetSlicer")


# ---------------------------------------------------------------------------------------------
# .ui ↔ ScarNetSlicer.py
# ---------------------------------------------------------------------------------------------
def test_every_ui_widget_used_in_the_module_exists():
    used = set()
    for node in ast.walk(_module_tree()):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
            used.add(node.attr)
    assert used, "the module uses no self.ui widgets?"
    missing = used - set(_ui_widgets())
    assert not missing, f"ScarNetSlicer.py uses widgets missing from the .ui: {sorted(missing)}"
    for required in ("segmentButton", "updateReportButton", "cancelButton", "progressBar"):
        assert required in used


def _widget_method(name: str) -> ast.FunctionDef:
    widget = _class(_module_tree(), "ScarNetSlicerWidget")
    for node in widget.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"ScarNetSlicerWidget.{name} not found")


def test_every_button_is_connected_explained_and_enabled_by_the_widget():
    """Each push button of the .ui is connected in setup() to a handler of the widget, has a tooltip, starts
    disabled and is enabled by the widget when it can act (a button left unconnected does nothing when clicked)."""
    widget = _class(_module_tree(), "ScarNetSlicerWidget")
    methods = {n.name for n in widget.body if isinstance(n, ast.FunctionDef)}
    connected = {}
    for node in ast.walk(_widget_method("setup")):
        if isinstance(node, ast.Call) and ast.unparse(node.func).startswith("self.ui.") \
                and ast.unparse(node.func).endswith(".connect"):
            button = ast.unparse(node.func).split(".")[2]
            signal, slot = node.args
            connected[button] = (signal.value, ast.unparse(slot))
    enabled = {ast.unparse(target).split(".")[2] for node in ast.walk(widget) if isinstance(node, ast.Assign)
               for target in node.targets if ast.unparse(target).startswith("self.ui.")
               and ast.unparse(target).endswith(".enabled")}
    buttons = {name: w for name, w in _ui_widgets().items() if w.get("class") == "QPushButton"}
    assert {"segmentButton", "editSegmentationButton", "updateReportButton", "cancelButton"} <= set(buttons)
    for name, button in buttons.items():
        assert name in connected, f"{name} is not connected in setup()"
        signal, slot = connected[name]
        assert signal == "clicked(bool)" and slot.startswith("self.") and slot[5:] in methods, (name, signal, slot)
        assert (_property(button, "toolTip").findtext("string") or "").strip(), f"{name} has no tooltip"
        assert _property(button, "enabled").findtext("bool") == "false", f"{name} starts enabled"
        assert name in enabled, f"the widget never enables {name}"
    # Editing needs a segmentation to edit and the input as its source volume: the same condition as Update report.
    assert _assigned(_widget_method("_updateButtons"), "self.ui.editSegmentationButton.enabled") == \
        _assigned(_widget_method("_updateButtons"), "self.ui.updateReportButton.enabled") == \
        ast.dump(ast.parse("hasSegmentation and not running", mode="eval").body)


def _assigned(function: ast.FunctionDef, target: str) -> str | None:
    """The value last assigned to ``target`` in ``function``, as ``ast.dump``."""
    values = [ast.dump(node.value) for node in ast.walk(function) if isinstance(node, ast.Assign)
              and [ast.unparse(t) for t in node.targets] == [target]]
    return values[-1] if values else None


def test_segment_editor_gets_the_nodes_in_the_order_it_takes_them():
    """Slicer's qMRMLSegmentEditorWidget writes its selections to the parameter node that entering the Segment Editor
    module gives it, refuses a source volume before a segmentation (qCritical, nothing set) and, on a new
    segmentation, selects that segmentation's reference volume as source. So: select the module, then the
    segmentation, then the source volume (the input, not the reference volume), then the segment."""
    calls = [(node.lineno, node.col_offset, ast.unparse(node.func).split(".")[-1], [ast.unparse(a) for a in node.args])
             for node in ast.walk(_widget_method("onEditSegmentationButton")) if isinstance(node, ast.Call)]
    order = [(name, args) for _, _, name, args in sorted(calls) if name in (
        "selectModule", "setSegmentationNode", "setSourceVolumeNode", "setMasterVolumeNode", "setCurrentSegmentID")]
    assert order == [("selectModule", ["'SegmentEditor'"]), ("setSegmentationNode", ["segmentation"]),
                     ("setSourceVolumeNode", ["volume"]), ("setMasterVolumeNode", ["volume"]),
                     ("setCurrentSegmentID", ["scarSegmentId"])], order
    handler = _widget_method("onEditSegmentationButton")
    assert _assigned(handler, "(segmentation, volume)") == \
        ast.dump(ast.parse("p.outputSegmentation, p.inputVolume", mode="eval").body)
    assert "slicer.util.tryWithErrorDisplay(" in ast.unparse(handler)


def test_the_rv_insertion_point_can_be_placed_from_the_panel():
    """The point list's place widget keeps its Place button (buttonsVisible=false would hide it with the
    others), places one point at a time, and follows the selector; both get the scene."""
    widget = _ui_widgets()["rvInsertionPlaceWidget"]
    assert widget.get("class") == "qSlicerMarkupsPlaceWidget"
    buttons = _property(widget, "buttonsVisible")
    assert buttons is None or buttons.findtext("bool") == "true"
    assert _property(widget, "placeMultipleMarkups").findtext("enum").endswith("ForcePlaceSingleMarkup")
    connections = {(c.findtext("sender"), c.findtext("signal"), c.findtext("receiver"), c.findtext("slot"))
                   for c in ET.parse(UI_FILE).getroot().iter("connection")}
    assert ("rvInsertionSelector", "currentNodeChanged(vtkMRMLNode*)", "rvInsertionPlaceWidget",
            "setCurrentNode(vtkMRMLNode*)") in connections
    for receiver in ("rvInsertionSelector", "rvInsertionPlaceWidget"):
        assert ("ScarNetSlicer", "mrmlSceneChanged(vtkMRMLScene*)", receiver,
                "setMRMLScene(vtkMRMLScene*)") in connections


def test_the_status_shows_names_as_plain_text():
    """The status line shows notices that quote node and segment names; a QLabel would take a name such as
    "<b>Scar</b>" or "<img src=...>" for rich text unless told that its text is plain."""
    text_format = _property(_ui_widgets()["statusLabel"], "textFormat")
    assert text_format is not None and text_format.findtext("enum") == "Qt::PlainText"


def test_every_parameter_is_bound_to_a_widget_of_the_right_kind():
    fields = _parameter_fields()
    bindings = _bindings()
    assert set(fields) == {"inputVolume", "rvInsertionPoint", "outputSegmentation", "outputTable", "device",
                           "encoder", "weightsPath", "testTimeAugmentation", "minimumScarRegionMl",
                           "keepIntermediateFiles", "basalEnd"}
    assert set(bindings) == set(fields), (
        f"unbound parameters: {sorted(set(fields) - set(bindings))}, "
        f"bindings without parameter: {sorted(set(bindings) - set(fields))}")
    for name, annotation in fields.items():
        widget = bindings[name]
        kind = widget.get("class")
        if annotation.startswith("vtkMRML"):
            assert kind == "qMRMLNodeComboBox", name
            node_types = [s.text for s in _property(widget, "nodeTypes").iter("string")]
            assert node_types == [annotation], f"{name}: nodeTypes {node_types} vs {annotation}"
        elif annotation == "bool":
            assert kind == "QCheckBox", name
        elif annotation.startswith("Annotated[str, Choice"):
            assert kind == "QComboBox", name
        elif annotation == "pathlib.Path":
            assert kind == "ctkPathLineEdit", name
        elif annotation.startswith("Annotated[float, WithinRange("):
            # A float needs its range in the annotation: without one, Slicer's spin-box connector sets
            # the widget's range to ±inf, whatever the .ui says.
            assert kind in ("QDoubleSpinBox", "ctkDoubleSpinBox", "ctkSliderWidget"), name
            low, high = (float(v) for v in re.findall(r"WithinRange\(([^,]+),([^)]+)\)", annotation)[0])
            minimum = _property(widget, "minimum")
            ui_minimum = float(minimum.find("double").text) if minimum is not None else 0.0  # Qt's default
            assert (ui_minimum, float(_property(widget, "maximum").find("double").text)) == (low, high), name
        else:
            raise AssertionError(f"{name}: no widget rule for {annotation}")


def test_parameter_annotations_evaluate_on_python_3_9():
    """@parameterNodeWrapper reads the class's annotations with typing.get_type_hints when Slicer loads the module:
    under ``from __future__ import annotations`` they are strings, evaluated then in the module's globals. So
    ``vtkMRMLScalarVolumeNode | None`` there stops the module from loading on Python 3.9 (Slicer 5.6–5.8) only, and
    a name imported inside a function is not found (the 3.9 grammar check cannot see either: they are strings)."""
    import builtins

    tree = _module_tree()
    defined = set(dir(builtins))
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    for name, annotation in _parameter_fields().items():
        expression = ast.parse(annotation, mode="eval")
        assert not any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(expression)), (
            f"{name}: {annotation} (X | Y fails on Python 3.9; leave node parameters unannotated for None)")
        unknown = {n.id for n in ast.walk(expression) if isinstance(n, ast.Name)} - defined
        assert not unknown, f"{name}: {annotation} uses names not defined at module level: {sorted(unknown)}"


def test_device_choices_match_the_processing_library():
    processing = ast.parse((MODULE_DIR / "ScarNetSlicerLib" / "processing.py").read_text())
    devices = next(ast.literal_eval(n.value) for n in processing.body
                   if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "DEVICES")
    assert f"Choice({list(devices)!r})".replace("'", '"') in _parameter_fields()["device"].replace("'", '"')


def test_test_time_augmentation_offers_the_engines_modes_and_reads_old_scenes():
    """The panel offers none and the engine's modes by the engine's names (what ``process`` and the command line
    take). It was a checkbox: a scene saved then holds "True" (flips) or "False", which must read as a choice the
    combo box lists (Slicer's combo-box connector raises on any other value). The serializer's ``read`` is run here
    on a stand-in for Slicer's StringSerializer, whose ``read`` returns the node's parameter as it is."""
    from scarnet.inference import TTA_MODES

    tree = _module_tree()
    assignments = {n.targets[0].id: n for n in tree.body
                   if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}
    choices = ast.literal_eval(assignments["TTA_CHOICES"].value)
    assert choices == ["none", *TTA_MODES]
    annotation = _parameter_fields()["testTimeAugmentation"]
    assert annotation == "Annotated[str, Choice(TTA_CHOICES), AugmentationChoiceSerializer()]"
    defaults = {n.target.id: ast.literal_eval(n.value) for n in _class(tree, "ScarNetSlicerParameterNode").body
                if isinstance(n, ast.AnnAssign) and n.value is not None and isinstance(n.value, ast.Constant)}
    assert defaults["testTimeAugmentation"] == "none"

    class StringSerializer:  # Slicer's (parameterNodeWrapper/serializers.py)
        def read(self, parameterNode, name):
            return parameterNode.GetParameter(name)

    namespace = {"StringSerializer": StringSerializer}
    source = ast.Module(body=[assignments["TTA_SAVED_BY_THE_CHECKBOX"], _class(tree, "AugmentationChoiceSerializer")],
                        type_ignores=[])
    exec(compile(source, str(MODULE_FILE), "exec"), namespace)
    serializer = namespace["AugmentationChoiceSerializer"]()
    for saved, choice in (("True", "flip"), ("False", "none"), ("none", "none"), ("flip", "flip"),
                          ("dihedral", "dihedral")):
        node = type("ParameterNode", (), {"GetParameter": lambda self, name, saved=saved: saved})()
        assert serializer.read(node, "testTimeAugmentation") == choice, saved
        assert choice in choices


def test_mrml_selectors_follow_the_scene():
    root = ET.parse(UI_FILE).getroot()
    connected = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    selectors = {n for n, w in _ui_widgets().items() if w.get("class") == "qMRMLNodeComboBox"}
    assert selectors and selectors <= connected


def test_user_visible_strings_are_translatable():
    tree = _module_tree()
    module_class = _class(tree, "ScarNetSlicer")
    assigned = {}
    for node in ast.walk(module_class):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
            target = ast.unparse(node.targets[0])
            if target.startswith("self.parent."):
                assigned[target.removeprefix("self.parent.")] = node.value
    for attribute in ("title", "helpText", "acknowledgementText"):
        value = assigned[attribute]
        assert isinstance(value, ast.Call) and ast.unparse(value.func) == "_", f"{attribute} is not wrapped in _()"
    # No bare string literal is put on a widget or in a dialog.
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute)
                and node.targets[0].attr in ("text", "toolTip") and isinstance(node.value, ast.Constant)):
            assert not str(node.value.value).strip(), f"untranslated text: {ast.unparse(node)}"
        if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in (
                "errorDisplay", "confirmYesNoDisplay", "confirmOkCancelDisplay", "tryWithErrorDisplay"):
            first = node.args[0] if node.args else None
            assert not isinstance(first, ast.Constant), f"untranslated dialog text: {ast.unparse(node)}"
    # The fallback for Slicer without slicer.i18n exists.
    source = MODULE_FILE.read_text()
    assert "from slicer.i18n import tr as _" in source and "except ImportError" in source


def test_help_and_acknowledgement_cite_sources_and_terms_of_use():
    source = MODULE_FILE.read_text()
    for needle in ("2501.01372", "LiteMedSAM", "MedSAM", "EMIDEC", "Lalande", "Data 5(4):89", "2020",
                   "non-commercial", "not for clinical diagnosis"):
        assert needle in source, needle
    assert '_("ScarNet LGE Scar")' in source and '"Cardiac"' in source


def test_module_import_is_light():
    """Slicer imports every module at startup (and the generic tests import it without a main
    window): nothing heavy at module level. torch, numpy and the engine load on first use."""
    heavy = {"torch", "numpy", "scipy", "scarnet", "ScarNetSlicerLib", "SimpleITK", "PyTorchUtils", "SampleData"}
    for node in _module_tree().body:
        names = []
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]]
        assert not heavy & set(names), f"heavy import at module level: {ast.unparse(node)}"


def test_module_classes_follow_the_template():
    tree = _module_tree()
    bases = {c.name: [ast.unparse(b) for b in c.bases] for c in tree.body if isinstance(c, ast.ClassDef)}
    assert bases["ScarNetSlicer"] == ["ScriptedLoadableModule"]
    assert bases["ScarNetSlicerWidget"][0] == "ScriptedLoadableModuleWidget"
    assert bases["ScarNetSlicerLogic"] == ["ScriptedLoadableModuleLogic"]
    assert bases["ScarNetSlicerTest"] == ["ScriptedLoadableModuleTest"]
    logic = _class(tree, "ScarNetSlicerLogic")
    process = next(f for f in logic.body if isinstance(f, ast.FunctionDef) and f.name == "process")
    arguments = [a.arg for a in process.args.args]
    assert arguments[:5] == ["self", "inputVolume", "outputSegmentation", "outputTable", "device"]
    assert {"waitForCompletion", "overwriteEdited"} <= set(arguments)


# ---------------------------------------------------------------------------------------------
# CMake: every script and resource installed
# ---------------------------------------------------------------------------------------------
def _python_files() -> set[str]:
    files = {"ScarNetSlicer.py"}
    for package in ("ScarNetSlicerLib", "scarnet"):
        files |= {p.relative_to(MODULE_DIR).as_posix() for p in (MODULE_DIR / package).rglob("*.py")
                  if "__pycache__" not in p.parts}
    return files


def test_cmake_lists_every_python_file():
    text = CMAKE_FILE.read_text()
    listed = [_expand(e) for e in _cmake_list(text, "MODULE_PYTHON_SCRIPTS")]
    assert len(listed) == len(set(listed)), "a script is listed twice"
    on_disk = _python_files()
    assert not on_disk - set(listed), f"not installed by CMakeLists.txt: {sorted(on_disk - set(listed))}"
    assert not set(listed) - on_disk, f"listed in CMakeLists.txt but missing: {sorted(set(listed) - on_disk)}"


def test_cmake_lists_every_resource_file():
    text = CMAKE_FILE.read_text()
    explicit = [_expand(e) for e in _cmake_list(text, "MODULE_PYTHON_RESOURCES") if not e.startswith("${")]
    globs = _cmake_globs(text)
    for entry in explicit:
        assert (MODULE_DIR / entry).is_file(), f"CMakeLists.txt lists a missing resource: {entry}"
    resources = [p for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file()]
    resources += [p for p in (MODULE_DIR / "scarnet" / "weights").glob("*") if p.is_file()]
    resources += list((MODULE_DIR / "scarnet" / "train" / "configs").glob("*.json"))
    assert resources
    for path in resources:
        relative = path.relative_to(MODULE_DIR).as_posix()
        if path.name.startswith(".") or path.suffix in (".py", ".pyc"):
            continue
        assert relative in explicit or any(fnmatch.fnmatch(relative, g) for g in globs), (
            f"resource not installed by CMakeLists.txt: {relative}")
    for pattern in ("scarnet/weights/*.safetensors", "scarnet/weights/*.json", "scarnet/weights/MODEL_CARD.md",
                    "scarnet/train/configs/*.json"):
        assert pattern in globs
    assert "slicerMacroBuildScriptedModule" in text and "WITH_GENERIC_TESTS" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def test_extension_description_files():
    root = (REPO_ROOT / "CMakeLists.txt").read_text()
    for needle in ("project(ScarNetSlicer)", f'set(EXTENSION_HOMEPAGE "{HOMEPAGE}")',
                   'set(EXTENSION_CATEGORY "Cardiac")', 'set(EXTENSION_DEPENDS "PyTorch")',
                   "find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(ScarNetSlicer)",
                   "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert needle in root, needle
    for variable in ("EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL",
                     "EXTENSION_SCREENSHOTURLS"):
        assert f"set({variable} " in root, variable

    s4ext = {}
    for line in (REPO_ROOT / "ScarNetSlicer.s4ext").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            s4ext[key] = value.strip()
    assert s4ext["scm"] == "git" and s4ext["scmurl"].startswith(HOMEPAGE)
    assert s4ext["depends"] == "PyTorch" and s4ext["build_subdirectory"] == "."
    assert s4ext["homepage"] == HOMEPAGE and s4ext["category"] == "Cardiac" and s4ext["enabled"] == "1"
    assert s4ext["iconurl"].endswith("ScarNetSlicer/Resources/Icons/ScarNetSlicer.png") and s4ext["description"]
    assert s4ext["contributors"]
    # The Extensions Index asks for one category for extension and module, screenshots and a licence file.
    assert re.search(r'self\.parent\.categories = \[translate\("qSlicerAbstractCoreModule", "Cardiac"\)\]',
                     MODULE_FILE.read_text())
    cmake_values = dict(re.findall(r'set\((EXTENSION_\w+) "([^"]*)"\)', root))
    assert s4ext["description"] == cmake_values["EXTENSION_DESCRIPTION"]
    for url in (s4ext["screenshoturls"], cmake_values["EXTENSION_SCREENSHOTURLS"]):
        prefix = "https://raw.githubusercontent.com/ScarNetSlicer/ScarNetSlicer/main/"
        assert url.startswith(prefix) and (REPO_ROOT / url[len(prefix):]).is_file(), url
    assert "Apache License" in (REPO_ROOT / "LICENSE").read_text()

    catalog = json.loads((REPO_ROOT / "ExtensionsIndex" / "ScarNetSlicer.json").read_text())
    assert catalog["$schema"].startswith("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/")
    assert catalog["category"] == "Cardiac" and catalog["scm_url"].startswith(HOMEPAGE)
    assert catalog["build_dependencies"] == ["PyTorch"] and catalog["build_subdirectory"] == "."
    assert catalog["enabled"] is True and catalog["tier"] in (1, 3, 5) and catalog["scm_revision"]
    # The catalog schema (v1.0.1) has additionalProperties false: description, homepage, contributors and the like
    # belong in CMakeLists.txt, and the Extensions Index refuses an entry that carries them.
    assert set(catalog) <= {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                            "build_subdirectory", "enabled", "tier"}, sorted(catalog)


def test_wheel_ships_every_data_file_of_the_engine():
    # pip installs only what package-data names: a data file missing there works in the editable
    # checkout and fails from a wheel (the training configs once did: `scarnet train` had no config).
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    globs = project["tool"]["setuptools"]["package-data"]["scarnet"]
    package = MODULE_DIR / "scarnet"
    data_files = [path.relative_to(package).as_posix() for path in package.rglob("*")
                  if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts]
    assert any(name.startswith("train/configs/") for name in data_files)
    for name in data_files:
        assert any(fnmatch.fnmatch(name, g) for g in globs), f"not in the wheel (pyproject package-data): {name}"
    # Code and weights are under different licences; the metadata says both.
    assert project["project"]["license"] == "Apache-2.0 AND CC-BY-NC-SA-4.0"
    assert project["project"]["license-files"] == ["LICENSE"]


def test_gui_poll_gives_the_worker_thread_most_of_the_time():
    # Slicer's main thread holds the GIL while idle (PythonQt without thread support): the worker
    # runs only while the poll waits on it. A poll without the wait ran the model 20–50× slower.
    tree = ast.parse(MODULE_FILE.read_text())
    constants = {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body
                 if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name) and n.targets[0].id.isupper()
                 and isinstance(n.value, ast.Constant)}
    assert constants["WORKER_SHARE_S"] * 1000 >= 2 * constants["POLL_INTERVAL_MS"]
    poll = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "onPollJob")
    waits = [c for c in ast.walk(poll) if isinstance(c, ast.Call) and getattr(c.func, "attr", "") == "wait"
             and [getattr(a, "id", None) for a in c.args] == ["WORKER_SHARE_S"]]
    assert waits, "onPollJob must wait on the task (releasing the GIL) in each tick"


def _python_310_constructs(path: Path) -> list[str]:
    """Constructs that Python 3.9 (3D Slicer 5.6–5.8) refuses or that fail there at run time."""
    source = path.read_text(encoding="utf-8")
    ast.parse(source, str(path), feature_version=(3, 9))  # grammar: match statements and the like
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", "")
            keywords = {k.arg for k in node.keywords}
            if name == "zip" and "strict" in keywords:
                found.append(f"{path.name}:{node.lineno}: zip(strict=)")
            if name == "dataclass" and keywords & {"slots", "kw_only", "match_args"}:
                found.append(f"{path.name}:{node.lineno}: dataclass({sorted(keywords)})")
            if name in ("isinstance", "issubclass") and len(node.args) == 2 and isinstance(node.args[1], ast.BinOp):
                found.append(f"{path.name}:{node.lineno}: isinstance with X | Y")
            if name in ("pairwise", "aiter", "anext"):
                found.append(f"{path.name}:{node.lineno}: {name}")
    return found


def test_the_code_slicer_loads_runs_on_python_3_9():
    # Slicer 5.6–5.8 embed Python 3.9.10; the module ships the whole engine.
    files = [MODULE_FILE, *sorted((MODULE_DIR / "ScarNetSlicerLib").glob("*.py")),
             *sorted((MODULE_DIR / "scarnet").rglob("*.py"))]
    found = [problem for path in files for problem in _python_310_constructs(path)]
    assert not found, found


def _pydicom_3_only(path: Path) -> list[str]:
    """Uses of pydicom 3's API that pydicom 2.4 (the newest for Python 3.9: 3D Slicer 5.6–5.8) lacks, outside a
    branch on ``pydicom.__version__`` or a ``try`` that catches the ImportError."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "__version__" in ast.unparse(node.test):
            guarded |= {id(n) for statement in [*node.body, *node.orelse] for n in ast.walk(statement)}
        if isinstance(node, ast.Try) and any("ImportError" in ast.unparse(handler.type or ast.Name(""))
                                             for handler in node.handlers):
            guarded |= {id(n) for statement in node.body for n in ast.walk(statement)}
    found = []
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.ImportFrom) and node.module in ("pydicom.pixels", "pydicom.examples"):
            found.append(f"{path.name}:{node.lineno}: from {node.module} import")
        if isinstance(node, ast.ImportFrom) and node.module == "pydicom.encaps":
            found += [f"{path.name}:{node.lineno}: {alias.name}" for alias in node.names
                      if alias.name in ("generate_fragments", "generate_frames", "get_frame", "parse_basic_offsets")]
        if isinstance(node, ast.Call):
            keywords = {k.arg for k in node.keywords} & {"enforce_file_format", "implicit_vr", "little_endian"}
            if keywords:
                found.append(f"{path.name}:{node.lineno}: {sorted(keywords)}")
        if isinstance(node, ast.Attribute) and node.attr in ("set_pixel_data", "pixel_array_options"):
            found.append(f"{path.name}:{node.lineno}: {node.attr}")
    return found


def test_the_tests_run_on_python_3_9_and_pydicom_2_4():
    # Python 3.9 (3D Slicer 5.6–5.8) gets pydicom 2.4 at most (pydicom 3 needs 3.10): the tests run there too, and
    # the engine reads and writes DICOM with either pydicom.
    tests = sorted(Path(__file__).resolve().parent.glob("*.py"))
    engine = [MODULE_FILE, *sorted((MODULE_DIR / "ScarNetSlicerLib").glob("*.py")),
              *sorted((MODULE_DIR / "scarnet").rglob("*.py"))]
    found = [problem for path in tests for problem in _python_310_constructs(path)]
    found += [problem for path in [*tests, *engine] for problem in _pydicom_3_only(path)]
    assert not found, found


def test_icon_is_a_128_pixel_png():
    data = (MODULE_DIR / "Resources" / "Icons" / "ScarNetSlicer.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (128, 128)


# ---------------------------------------------------------------------------------------------
# Terminology ↔ labels.py
# ---------------------------------------------------------------------------------------------
def test_terminology_matches_labels():
    doc = json.loads(TERMINOLOGY_FILE.read_text())
    assert doc["SegmentationCategoryTypeContextName"] == "ScarNetSlicer LGE"
    assert "segment-context-schema" in doc["@schema"]
    types = {}
    for category in doc["SegmentationCodes"]["Category"]:
        for term in category["Type"]:
            key = ((category["CodingSchemeDesignator"], category["CodeValue"], category["CodeMeaning"]),
                   (term["CodingSchemeDesignator"], term["CodeValue"], term["CodeMeaning"]))
            assert key not in types, f"duplicate type {key}"
            types[key] = term
    expected = {(info.category, info.type): info for info in SEGMENTS}
    assert set(types) == set(expected), "term.json and scarnet.labels.SEGMENTS list different codes"
    for key, info in expected.items():
        assert types[key]["recommendedDisplayRGBValue"] == [round(255 * c) for c in info.color_rgb], info.name
        assert types[key].get("3dSlicerLabel") == info.name
    by_name = {info.name: info for info in SEGMENTS}
    assert by_name["Scar"].type[:2] == ("SCT", "12402003")
    assert by_name["Scar"].category[:2] == ("SCT", "49755003")
    assert by_name["LV blood pool"].type[:2] == ("SCT", "87878005")
    assert by_name["Myocardium"].type[:2] == ("SCT", "74281007")


@pytest.mark.parametrize("path", ["docs/slicer.md"])
def test_slicer_docs_exist(path):
    text = (REPO_ROOT / path).read_text()
    for needle in ("Extensions Manager", "Segment scar", "Update report", "Segment Editor", "ScarNetSlicerTest",
                   "waitForCompletion", ".seg.nrrd", "thread"):
        assert needle in text, needle
