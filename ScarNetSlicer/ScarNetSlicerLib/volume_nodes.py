"""Scalar volume nodes ↔ :class:`scarnet.volume.Volume`, with the full geometry.

Slicer stores the voxel-to-world geometry of a volume node as an IJK→RAS matrix; the engine
works in LPS (the DICOM/ITK convention). The two differ by a flip of the first two world axes:
``LPS = diag(-1, -1, 1) · RAS``. Array axis order is the same on both sides: ``[k, j, i]``
(slice, row, column), which is how a vtkImageData's scalars lie in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import vtk
from vtk.util import numpy_support

from scarnet.dicom import slice_identifiers
from scarnet.errors import InputError
from scarnet.volume import Volume

#: Looks up one DICOM attribute of one instance: ``(SOPInstanceUID, "gggg,eeee") -> str``, as
#: ``slicer.dicomDatabase.instanceValue`` does.
InstanceValue = Callable[[str, str], str]
#: The instances a volume loaded by Slicer's DICOM module was made from (space-separated UIDs).
DICOM_INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"

#: Multiplying a RAS point by this gives the LPS point (and vice versa: it is its own inverse).
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def ijk_to_ras_matrix(node) -> np.ndarray:
    """The 4×4 IJK→RAS matrix of a volume node as a numpy array."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijk_to_ras_from_volume(volume: Volume) -> np.ndarray:
    """The 4×4 IJK→RAS matrix of an engine volume (whose geometry is LPS)."""
    flip = np.eye(4)
    flip[:3, :3] = RAS_TO_LPS
    return flip @ volume.ijk_to_lps_matrix()


def _vtk_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def is_sequence_proxy(node) -> bool:
    """True when ``node`` is the proxy of a sequence browser (one frame of a 4D series)."""
    scene = node.GetScene()
    if scene is None or not node.GetID():
        return False
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        browser = scene.GetNthNodeByClass(index, "vtkMRMLSequenceBrowserNode")
        if browser.IsProxyNodeID(node.GetID()):
            return True
    return False


def check_node_class(node, class_name: str, what: str) -> None:
    """Raise :class:`~scarnet.errors.InputError` unless ``node`` is None or a ``class_name`` node: a script that
    passes a table as the segmentation (arguments swapped), a node's name instead of the node, gets one line that
    says which argument is wrong, not an ``AttributeError`` from deep inside. ``what``: the argument, in words."""
    if node is None or (hasattr(node, "IsA") and node.IsA(class_name)):
        return
    got = (f"a {node.GetClassName()} ('{node.GetName()}')" if hasattr(node, "GetClassName") and hasattr(node, "GetName")
           else f"{type(node).__name__} {node!r}"[:120])
    raise InputError(f"{what}: expected a {class_name} node, got {got}")


def check_volume_node(node, name: str | None = None) -> None:
    """Raise :class:`~scarnet.errors.InputError` (a ``ValueError``) unless ``node`` is a usable 3D LGE stack.

    Refused, each with one line that says why: no node, not a scalar volume, a vector/RGB or
    multi-volume (4D) node, a frame of a sequence (4D time series), no voxels, a 2D image
    (one slice, or one row/column).
    """
    if node is None:
        raise InputError("no input volume selected: choose the LGE short-axis stack as input volume")
    check_node_class(node, "vtkMRMLNode", "input volume")  # a name or a path instead of the node
    label = name or node.GetName() or "input volume"
    if not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(f"{label}: is a {node.GetClassName()}, not a scalar image volume")
    image = node.GetImageData()
    if node.IsA("vtkMRMLVectorVolumeNode") or node.IsA("vtkMRMLMultiVolumeNode") or (
            image is not None and image.GetNumberOfScalarComponents() != 1):
        components = image.GetNumberOfScalarComponents() if image is not None else "several"
        raise InputError(f"{label}: has {components} values per voxel (a vector, colour or 4D multi-volume); "
                         "select one 3D frame of the LGE stack")
    if is_sequence_proxy(node):
        raise InputError(f"{label}: is one frame of a sequence (4D time series); "
                         "clone the frame to analyse as a plain volume (Sequences module) and select that")
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"{label}: holds no image data")
    dims = image.GetDimensions()
    if 0 in dims:
        raise InputError(f"{label}: is empty (size {dims})")
    if dims[2] == 1:
        raise InputError(f"{label}: is a 2D image (one slice, size {dims[0]}×{dims[1]}); "
                         "ScarNet needs the short-axis stack (several slices)")
    if dims[0] == 1 or dims[1] == 1:
        raise InputError(f"{label}: is a 2D image (size {dims[0]}×{dims[1]}×{dims[2]}); "
                         "ScarNet needs a stack of short-axis slices")


def volume_from_node(node, check: bool = True) -> Volume:
    """A copy of the node's voxels and geometry as an engine :class:`Volume` (LPS).

    The engine's array starts at the image's first voxel, which is IJK index ``extent[0, 2, 4]``
    of the node (not always 0: VTK filters and some readers leave a cropped extent). The origin is
    that voxel's position, so array element ``[0, 0, 0]`` lies where Slicer shows that voxel, and
    anything written back on the engine's grid lands on the same voxels.
    """
    if check:
        check_volume_node(node)
    image = node.GetImageData()
    dims = image.GetDimensions()
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    # vtkImageData scalars are x-fastest: reshaping to (k, j, i) is the engine's array order.
    # Copy, so the array stays valid (and unchanged) whatever happens to the node later.
    array = np.array(scalars.reshape(dims[2], dims[1], dims[0]), copy=True)
    ijk_to_lps = ijk_to_ras_matrix(node)
    first_voxel = np.array([*image.GetExtent()[0::2], 1.0])
    ijk_to_lps[:, 3] = ijk_to_lps @ first_voxel
    ijk_to_lps[:3, :] = RAS_TO_LPS @ ijk_to_lps[:3, :]
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    direction = ijk_to_lps[:3, :3] / spacing
    return Volume(array, tuple(spacing), tuple(ijk_to_lps[:3, 3]), direction)


def update_node_from_volume(node, volume: Volume) -> None:
    """Replace the node's voxels and geometry with ``volume``'s (array copied, LPS → RAS)."""
    array = np.ascontiguousarray(volume.array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    k, j, i = array.shape
    image = vtk.vtkImageData()
    image.SetDimensions(i, j, k)
    vtk_array = numpy_support.numpy_to_vtk(array.ravel(), deep=True)
    vtk_array.SetName("ImageScalars")
    image.GetPointData().SetScalars(vtk_array)
    was_modifying = node.StartModify()
    node.SetIJKToRASMatrix(_vtk_matrix(ijk_to_ras_from_volume(volume)))
    node.SetAndObserveImageData(image)
    node.EndModify(was_modifying)


def add_volume_node(scene, volume: Volume, name: str, class_name: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node of ``class_name`` in ``scene`` holding ``volume``, with display nodes."""
    node = scene.AddNewNodeByClass(class_name, name)
    update_node_from_volume(node, volume)
    node.CreateDefaultDisplayNodes()
    return node


def ras_point_of_voxel(node, ijk: tuple[float, float, float]) -> np.ndarray:
    """World RAS position (mm) of voxel ``ijk`` of a volume node (ignoring parent transforms)."""
    return (ijk_to_ras_matrix(node) @ np.array([*ijk, 1.0]))[:3]


def rv_insertion_lps(markups_node, volume_node) -> np.ndarray | None:
    """The RV insertion point(s) placed in ``markups_node``, in the engine's LPS, as
    :func:`scarnet.quantify.quantify` takes them: the first placed point is the anterior insertion
    (shape (3,) when it is the only one); a second is the inferior insertion, which sizes the septum
    (shape (2, 3)).

    Taken in world coordinates and brought into the volume's own frame (through the inverse of the
    volume's parent transform, if any), where the engine's geometry of the volume lives. None
    without a markups node; :class:`~scarnet.errors.InputError` when it has no placed point, or
    more than two (which of them are meant is not guessed).
    """
    if markups_node is None:
        return None
    check_node_class(markups_node, "vtkMRMLMarkupsNode", "RV insertion point(s)")
    placed = [index for index in range(markups_node.GetNumberOfControlPoints())
              if markups_node.GetNthControlPointPositionStatus(index) == markups_node.PositionDefined]
    if not placed:
        raise InputError(f"'{markups_node.GetName()}' has no point: place the anterior RV insertion point "
                         "(where the RV wall meets the septum at the front)")
    if len(placed) > 2:
        raise InputError(f"'{markups_node.GetName()}' has {len(placed)} points: keep the anterior RV insertion point "
                         "and, if you like, the inferior one after it (delete the others, or move a point instead "
                         "of placing it again)")
    parent = volume_node.GetParentTransformNode()
    transform = None
    if parent is not None:
        transform = vtk.vtkGeneralTransform()
        parent.GetTransformFromWorld(transform)
    points = []
    for index in placed:
        world = [0.0, 0.0, 0.0]
        markups_node.GetNthControlPointPositionWorld(index, world)
        if transform is not None:
            world = list(transform.TransformPoint(world))
        points.append(RAS_TO_LPS @ np.asarray(world, dtype=float))
    return points[0] if len(points) == 1 else np.stack(points)


def dicom_slice_identifiers(node, volume: Volume, instance_value: InstanceValue | None = None
                            ) -> list[dict[str, Any]] | None:
    """Per-slice DICOM identifiers (:attr:`Volume.source_slices`) of a volume node loaded from DICOM.

    The node's instances (``DICOM.instanceUIDs``) are looked up with ``instance_value``, by default
    in Slicer's DICOM database: ImagePositionPatient, InstanceNumber and SliceLocation. Each is
    placed on the slice of ``volume`` (the node's grid) its position lies on. None when the node was
    not loaded from DICOM, the database is not there, or the images do not match the slices one to
    one (a resampled or moved volume, an enhanced multi-frame file): then the report just has none.
    """
    headers = dicom_headers(node, instance_value)
    return slice_identifiers(volume, headers) if headers is not None else None


def dicom_headers(node, instance_value: InstanceValue | None = None) -> list[dict[str, Any]] | None:
    """The position, instance number and slice location of each DICOM image of a volume node (see
    :func:`dicom_slice_identifiers`); None when it was not loaded from DICOM or they cannot be read (no DICOM
    database, a scene reopened where the database does not hold the exam, a database error)."""
    uids = (node.GetAttribute(DICOM_INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if not uids:
        return None
    if instance_value is None:
        instance_value = _dicom_database_lookup()
        if instance_value is None:
            return None
    try:
        return [{"position": [float(v) for v in str(instance_value(uid, "0020,0032")).split("\\")],
                 "instance_number": instance_value(uid, "0020,0013"),
                 "slice_location_mm": instance_value(uid, "0020,1041")} for uid in uids]
    except Exception:  # noqa: BLE001 - naming slices is a courtesy: a database error must not stop a run
        return None


def _dicom_database_lookup() -> InstanceValue | None:
    try:
        import slicer
    except ImportError:
        return None
    database = getattr(slicer, "dicomDatabase", None)  # the Slicer app's; absent from slicer-core
    if database is None or not getattr(database, "isOpen", False):
        return None
    return database.instanceValue


__all__ = [
    "DICOM_INSTANCE_UIDS_ATTRIBUTE",
    "dicom_headers",
    "dicom_identity",
    "RAS_TO_LPS",
    "add_volume_node",
    "check_volume_node",
    "dicom_slice_identifiers",
    "ijk_to_ras_from_volume",
    "ijk_to_ras_matrix",
    "is_sequence_proxy",
    "ras_point_of_voxel",
    "rv_insertion_lps",
    "update_node_from_volume",
    "volume_from_node",
]


def dicom_identity(input_node) -> dict[str, str]:
    """The patient and study of a volume loaded from DICOM, as Slicer's subject hierarchy keeps them ("DICOM.<keyword>"
    attributes of its study and patient items): for the printed page only (:func:`scarnet.dicom.identity_from`).
    Empty for a volume that is not under a DICOM patient (a NIfTI file)."""
    import slicer

    from scarnet.dicom import identity_from

    scene = input_node.GetScene() if input_node is not None else None
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene) if scene is not None else None
    item = hierarchy.GetItemByDataNode(input_node) if hierarchy is not None else 0
    items = []
    while item and item != hierarchy.GetSceneItemID():
        items.append(item)
        item = hierarchy.GetItemParent(item)

    def value_of(keyword: str) -> str:
        for each in items:
            value = hierarchy.GetItemAttribute(each, f"DICOM.{keyword}")
            if value:
                return value
        return ""

    return identity_from(value_of)
