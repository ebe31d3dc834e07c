"""Engine labelmaps ↔ segments of a vtkMRMLSegmentationNode.

* :func:`write_labelmap` turns a labelmap (0 bg, 1 LV blood pool, 2 myocardium, 3 scar, 4 MVO) into
  the four segments "LV blood pool", "Myocardium", "Scar" and "MVO" with the colours and DICOM
  terminology of :data:`scarnet.labels.SEGMENTS`, referenced to the input volume's grid.
* :func:`labelmap_from_segmentation` does the reverse on a reference volume's grid, from the
  segmentation *as it is now*: this is what "Update report" quantifies after Segment Editor edits.
  A segmentation finer than the volume (Segment Editor's oversampling) is read on sub-voxels
  (:func:`subdivision`) and each voxel takes the label the report would count (:func:`majority_labels`:
  at least half of it), so an edit of part of a voxel counts as far as it covers the voxel, not by
  whether it hits one sampled point.
* :func:`fingerprint` / :func:`was_edited` detect such edits: the module stores a hash of every
  segment it wrote (ID, name and the segment's own voxels) as a node attribute and compares it with
  the current content, so any change (a painted voxel, an added, renamed or removed segment, an
  overlapping edit) counts.
* :func:`read_segmentation` gives the labelmap, the segments not counted and the fingerprint from one
  reading of each segment (what "Update report" needs).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import slicer
import vtk

from scarnet.errors import InputError
from scarnet.labels import (
    BACKGROUND,
    HEALTHY_MYOCARDIUM,
    LV_BLOOD_POOL,
    MVO,
    SCAR,
    SEGMENTS,
    DrawnSegment,
    SegmentInfo,
    blood_pool_hidden_by_overlap,
    label_for_segment_name,
)
from scarnet.volume import Volume

from . import ATTRIBUTE_PREFIX
from .volume_nodes import check_volume_node, ijk_to_ras_from_volume, volume_from_node

#: Terminology context of our segments (the ``SegmentationCategoryTypeContextName`` of
#: Resources/Terminology/ScarNetSlicer.term.json; scarnet.io.write_seg_nrrd uses the same).
TERMINOLOGY_CONTEXT = "ScarNetSlicer LGE"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
#: Anatomic region written with each segment (the heart), as scarnet.io.write_seg_nrrd does.
ANATOMIC_REGION = ("SCT", "80891009", "Heart")

#: Node attribute holding the fingerprint of the segments this module last wrote.
FINGERPRINT_ATTRIBUTE = ATTRIBUTE_PREFIX + "LabelmapFingerprint"
#: Slicer's name of the binary labelmap representation ("Binary labelmap").
BINARY_LABELMAP = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
#: Node attribute set on segmentations written by this module.
CREATED_BY_ATTRIBUTE = ATTRIBUTE_PREFIX + "CreatedBy"
#: Sub-voxels per axis of a reference voxel that a finer segmentation may be read on (Segment Editor's
#: oversampling 2, 3 or 4), and in all; a ratio further than the tolerance from a whole number is not a
#: subdivision (see :func:`subdivision`).
MAX_SUBDIVISION = 4
MAX_SUB_VOXELS = 64_000_000
SUBDIVISION_TOLERANCE = 0.05
#: The fingerprint of a segmentation whose sub-voxel edits cannot be told apart: never a stored one.
UNRESOLVED_FINGERPRINT = "finer-than-the-volume-unresolved"


def _code(triplet: tuple[str, str, str] | None) -> str:
    return "^".join(triplet) if triplet else "^^"


def terminology_entry(info: SegmentInfo) -> str:
    """Slicer's serialised terminology entry for a segment.

    ``context~category~type~typeModifier~anatomicContext~region~regionModifier`` with each code
    as ``scheme^value^meaning``.
    """
    return "~".join([
        TERMINOLOGY_CONTEXT, _code(info.category), _code(info.type), _code(info.type_modifier),
        ANATOMIC_CONTEXT, _code(ANATOMIC_REGION), _code(None),
    ])


def parse_terminology_entry(entry: str) -> dict[str, tuple[str, ...]]:
    """The category/type codes of a serialised terminology entry (empty dict when malformed)."""
    parts = entry.split("~") if entry else []
    if len(parts) < 3:
        return {}
    return {"context": (parts[0],), "category": tuple(parts[1].split("^")), "type": tuple(parts[2].split("^"))}


def segment_terminology(segment) -> str:
    """The serialised terminology entry of a vtkSegment ("" when it has none)."""
    value = vtk.reference("")
    segment.GetTag(segment.GetTerminologyEntryTagName(), value)
    return str(value)


def _oriented_mask(mask_kji: np.ndarray, grid: Volume):
    """A vtkOrientedImageData (uint8 0/1) of ``mask_kji`` on ``grid``'s geometry."""
    from vtk.util import numpy_support

    k, j, i = mask_kji.shape
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(i, j, k)
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(mask_kji, dtype=np.uint8).ravel(), deep=True)
    image.GetPointData().SetScalars(scalars)
    matrix = vtk.vtkMatrix4x4()
    ijk_to_ras = ijk_to_ras_from_volume(grid)
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(ijk_to_ras[r, c]))
    image.SetImageToWorldMatrix(matrix)
    return image


def set_segment_mask(segmentation_node, segment_id: str, mask_kji: np.ndarray, grid: Volume) -> None:
    """Replace the voxels of one segment by a boolean mask given on ``grid`` (engine array order)."""
    if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
        raise KeyError(f"no segment '{segment_id}' in {segmentation_node.GetName()}")
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    ok = logic.SetBinaryLabelmapToSegment(_oriented_mask(mask_kji, grid), segmentation_node, segment_id,
                                          logic.MODE_REPLACE)
    if not ok:
        raise RuntimeError(f"could not write segment '{segment_id}' of {segmentation_node.GetName()}")


def write_labelmap(segmentation_node, labelmap: Volume, reference_volume_node) -> dict[str, str]:
    """Replace all segments of ``segmentation_node`` by the four ScarNet segments of ``labelmap``.

    ``labelmap`` must lie on ``reference_volume_node``'s grid (the engine returns it so). The
    segmentation's reference geometry (and node reference) is set to that volume, so Segment
    Editor paints on the LGE voxels. Segments that are empty (e.g. no MVO) are still created, so
    they can be painted. Returns ``{segment name: segment ID}``.
    """
    segmentation = segmentation_node.GetSegmentation()
    was_modifying = segmentation_node.StartModify()
    try:
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
        if hasattr(segmentation_node, "SetSourceRepresentationToBinaryLabelmap"):
            segmentation_node.SetSourceRepresentationToBinaryLabelmap()
        else:  # Slicer < 5.4
            segmentation_node.SetMasterRepresentationToBinaryLabelmap()
        segmentation.RemoveAllSegments()
        labels = np.asarray(labelmap.array)
        ids = {}
        for info in SEGMENTS:
            segment_id = segmentation.AddEmptySegment(info.segment_id, info.name, list(info.color_rgb))
            segment = segmentation.GetSegment(segment_id)
            segment.SetTag(segment.GetTerminologyEntryTagName(), terminology_entry(info))
            set_segment_mask(segmentation_node, segment_id, labels == info.label, labelmap)
            ids[info.name] = segment_id
        segmentation_node.SetAttribute(CREATED_BY_ATTRIBUTE, "ScarNetSlicer")
    finally:
        segmentation_node.EndModify(was_modifying)
    if segmentation_node.GetDisplayNode() is None:
        segmentation_node.CreateDefaultDisplayNodes()
    return ids


def recognised_segments(segmentation_node) -> dict[str, int]:
    """``{segment ID: label value}`` for every segment that stands for a ScarNet label.

    Each segment is read on its own: by its name (:func:`scarnet.labels.label_for_segment_name`:
    case-insensitive, and the usual synonyms, so a user-made "scar" or "Infarct" counts, and a segment
    renamed "Myocardium" is myocardium, as ``scarnet quantify`` reads a ``.seg.nrrd``), else by its ID
    (one this module wrote and the user renamed to a name of no label: still counted, and
    :func:`renamed_segments` says so), else by its terminology type code. Several segments may stand for
    one label (a "Scar" and an "Infarct"): all count.
    """
    return {segment_id: label for segment_id, (label, _) in _segment_labels(segmentation_node).items()}


def scar_segment_id(segmentation_node) -> str | None:
    """The ID of the first segment that stands for scar (as "Update report" reads it: :func:`recognised_segments`),
    the one readers correct most, to select in Segment Editor; None when no segment does."""
    return next((segment_id for segment_id, label in recognised_segments(segmentation_node).items()
                 if label == SCAR), None)


def renamed_segments(segmentation_node) -> list[str]:
    """A line for each segment this module wrote that the user renamed to a name of no label ("Scar" →
    "Artifact"): it is still counted by its ID, which the user may not expect, so "Update report" says so."""
    segmentation = segmentation_node.GetSegmentation()
    names = {info.label: info.name for info in SEGMENTS}
    return [f"segment '{segmentation.GetSegment(segment_id).GetName()}' counted as {names[label]}: it is ScarNet's "
            f"{names[label]} segment, renamed; to leave its voxels out, delete the segment or erase them"
            for segment_id, (label, how) in _segment_labels(segmentation_node).items() if how == "id"]


def _segment_labels(segmentation_node) -> dict[str, tuple[int, str]]:
    """``{segment ID: (label value, "name" | "id" | "terminology")}``: how each recognised segment was recognised."""
    by_id = {info.segment_id: info.label for info in SEGMENTS}
    segmentation = segmentation_node.GetSegmentation()
    found: dict[str, tuple[int, str]] = {}
    for segment_id in segmentation.GetSegmentIDs():
        segment = segmentation.GetSegment(segment_id)
        if (label := label_for_segment_name(segment.GetName())) is not None:
            found[segment_id] = (label, "name")
        elif (label := by_id.get(segment_id)) is not None:
            found[segment_id] = (label, "id")
        else:
            codes = parse_terminology_entry(segment_terminology(segment))
            label = next((info.label for info in SEGMENTS if codes.get("type", ())[:2] == info.type[:2]), None)
            if label is not None:
                found[segment_id] = (label, "terminology")
    return found


def segments_not_counted(segmentation_node, reference_volume_node, grid: Volume | None = None) -> list[str]:
    """"name (N voxels)" of each segment with voxels that :func:`recognised_segments` does not recognise.

    What "Update report" must tell the user it left out (an "RV", a "Scar 2", a "Segment_1"),
    rather than report a smaller scar without a word. Empty segments change nothing and are not named.
    """
    return read_segmentation(segmentation_node, reference_volume_node, grid, with_labelmap=False).not_counted


def _segmentation_to_volume_transform(segmentation_node, volume_node):
    """The segmentation's own frame → the volume's own frame; None when both are under the same transform (or none).

    One transform between the two parents (Slicer composes them, inverting where it must), applied by the
    resampler to the segment in its own frame. Asking Slicer for the segment already moved to world
    coordinates instead crops it under a non-linear (grid) transform on an oblique volume: most of an
    exam's myocardium was lost without a word.
    """
    segmentation_parent = segmentation_node.GetParentTransformNode()
    volume_parent = volume_node.GetParentTransformNode()
    if segmentation_parent is volume_parent:
        return None
    transform = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(segmentation_parent, volume_parent, transform)
    return transform


class SegmentReadError(InputError, RuntimeError):
    """A segment that cannot be read onto the input's grid (no binary labelmap, a failed resampling): one line for
    the user, and a ``RuntimeError`` for callers that take an unreadable segmentation as edited."""


@dataclass
class SegmentOnGrid:
    """One segment read onto a reference grid (:func:`read_segment`)."""

    #: The segment's voxels on the grid (engine array order).
    mask: np.ndarray
    #: The segment's own voxels whose centres lie outside the grid (moved off by a transform, drawn on a series that
    #: covers more): not in :attr:`mask`, so not counted.
    voxels_off_grid: int = 0
    #: The volume of those voxels (mL).
    off_grid_ml: float = 0.0


def segment_mask(segmentation_node, segment_id: str, reference_volume_node, grid: Volume | None = None) -> np.ndarray:
    """Boolean mask (engine array order) of one segment on the reference volume's voxel grid.

    Works from the segment's binary labelmap resampled (nearest neighbour) onto the reference grid,
    so it is right whatever geometry the segmentation was edited in. Where both nodes are under the
    same transform (or none; "Segment scar" puts its result under the input's) the two are read in
    their shared own frame: a round trip through world coordinates would have to invert a
    non-linear (warping) transform, which is only approximate and moves voxel centres across
    boundaries. Otherwise through the one transform from the segmentation's parent to the volume's
    (:func:`_segmentation_to_volume_transform`), whichever transforms the two nodes are under.
    Nothing is added to the scene.
    """
    return read_segment(segmentation_node, segment_id, reference_volume_node, grid).mask


def read_segment(segmentation_node, segment_id: str, reference_volume_node,
                 grid: Volume | None = None) -> SegmentOnGrid:
    """:func:`segment_mask` with what of the segment lies outside the grid, so a report can say what it left out."""
    grid = grid if grid is not None else volume_from_node(reference_volume_node, check=False)
    empty = np.zeros(grid.array.shape, dtype=bool)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    segment_image = slicer.vtkOrientedImageData()
    name = segmentation_node.GetName()
    if not logic.GetSegmentBinaryLabelmapRepresentation(segmentation_node, segment_id, segment_image, False):
        raise SegmentReadError(f"segment '{segment_id}' of {name} has no binary labelmap: set the segmentation's "
                               "source representation to Binary labelmap (Segmentations module)")
    extent = segment_image.GetExtent()
    if extent[0] > extent[1] or extent[2] > extent[3] or extent[4] > extent[5]:
        return SegmentOnGrid(empty)  # an empty segment (e.g. no MVO)
    to_volume = _segmentation_to_volume_transform(segmentation_node, reference_volume_node)
    reference = _oriented_mask(empty, grid)
    resampled = slicer.vtkOrientedImageData()
    ok = slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        segment_image, reference, resampled, False, False, to_volume, 0)
    if not ok:
        raise SegmentReadError(f"could not resample segment '{segment_id}' of {name} onto the input volume's grid")
    from vtk.util import numpy_support

    dims = resampled.GetDimensions()
    if (dims[2], dims[1], dims[0]) != grid.array.shape:
        raise SegmentReadError(f"segment '{segment_id}' of {name}: resampled to size {dims}, expected {grid.shape_ijk}")
    values = numpy_support.vtk_to_numpy(resampled.GetPointData().GetScalars()).reshape(grid.array.shape)
    own_values = numpy_support.vtk_to_numpy(segment_image.GetPointData().GetScalars())
    own_values = own_values.reshape(extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    if segmentation_node.GetSegmentation().ContainsRepresentation(BINARY_LABELMAP):
        # A stored labelmap is a shared layer: it holds every segment of the layer, each with its own label value.
        label_value = segmentation_node.GetSegmentation().GetSegment(segment_id).GetLabelValue()
        mask, own = values == label_value, own_values == label_value
    else:
        # No stored labelmap (the source is e.g. a closed surface): Slicer converted this one segment on
        # the fly, alone, so every non-zero voxel is the segment's, whatever its label value says.
        mask, own = values != 0, own_values != 0
    off, off_ml = _voxels_off_grid(own, segment_image, to_volume, grid)
    return SegmentOnGrid(mask, off, off_ml)


def _voxels_off_grid(own_kji: np.ndarray, segment_image, to_volume, grid: Volume) -> tuple[int, float]:
    """How many of a segment's own voxels (``own_kji``, True where set, on ``segment_image``'s extent) have their
    centre outside ``grid`` once moved into the volume's frame by ``to_volume``; and their volume (mL)."""
    from vtk.util import numpy_support

    k, j, i = np.nonzero(own_kji)
    if k.size == 0:
        return 0, 0.0
    extent = segment_image.GetExtent()
    matrix = vtk.vtkMatrix4x4()
    segment_image.GetImageToWorldMatrix(matrix)
    image_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    ijk = np.column_stack([i + extent[0], j + extent[2], k + extent[4], np.ones(k.size)])
    ras = (ijk @ image_to_ras.T)[:, :3]
    if to_volume is not None:
        points = vtk.vtkPoints()
        points.SetData(numpy_support.numpy_to_vtk(np.ascontiguousarray(ras), deep=True))
        moved = vtk.vtkPoints()
        to_volume.TransformPoints(points, moved)
        ras = numpy_support.vtk_to_numpy(moved.GetData()).astype(float)
    ras_to_grid = np.linalg.inv(ijk_to_ras_from_volume(grid))
    grid_ijk = ras @ ras_to_grid[:3, :3].T + ras_to_grid[:3, 3]
    size = np.array(grid.shape_ijk, dtype=float)
    tolerance = 1e-3  # a centre on the grid's outer face, up to rounding, is in
    off = int(np.count_nonzero(np.any((grid_ijk < -0.5 - tolerance) | (grid_ijk > size - 0.5 + tolerance), axis=1)))
    voxel_ml = abs(float(np.linalg.det(image_to_ras[:3, :3]))) / 1000.0
    return off, off * voxel_ml


def subdivision(segmentation_node, reference_volume_node, grid: Volume) -> tuple[int, int, int] | None:
    """Sub-voxels per axis (i, j, k) of ``grid``'s voxels that resolve the segmentation's own voxels.

    (1, 1, 1) where the segmentation is as coarse as the grid (the usual case: its geometry is the
    input volume's) or coarser; 2 along an axis where it has twice the voxels (Segment Editor's
    oversampling 2), and so on. None when its voxels are finer but do not cut the grid's voxels
    into whole numbers of at most :data:`MAX_SUBDIVISION` along each axis (oversampling 1.5 or 8),
    or more than :data:`MAX_SUB_VOXELS` sub-voxels would be needed: then part of a voxel cannot be
    told apart (:func:`labelmap_from_segmentation` reads each voxel at its centre, and
    :func:`fingerprint` takes the segmentation as edited). Taken from the finest segment, in the
    volume's frame (through the two nodes' parent transforms, where they are linear).
    """
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    axes_mm = grid.direction * np.asarray(grid.spacing_mm)  # columns: one voxel step along i, j, k (LPS mm)
    axes_mm = np.diag([-1.0, -1.0, 1.0]) @ axes_mm  # in RAS, as the segment's geometry is
    # The volume's frame → the segmentation's frame (identity when both are under the same transform).
    volume_parent, segmentation_parent = reference_volume_node.GetParentTransformNode(), \
        segmentation_node.GetParentTransformNode()
    if volume_parent is not segmentation_parent:
        if any(parent is not None and not parent.IsTransformToWorldLinear()
               for parent in (volume_parent, segmentation_parent)):
            return None  # a warped frame: no fixed number of sub-voxels per voxel
        to_segmentation = vtk.vtkMatrix4x4()
        slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(volume_parent, segmentation_parent, to_segmentation)
        linear = np.array([[to_segmentation.GetElement(r, c) for c in range(3)] for r in range(3)])
        axes_mm = linear @ axes_mm
    finest = np.ones(3)
    for segment_id in segmentation_node.GetSegmentation().GetSegmentIDs():
        image = slicer.vtkOrientedImageData()
        if not logic.GetSegmentBinaryLabelmapRepresentation(segmentation_node, segment_id, image, False):
            continue
        extent = image.GetExtent()
        if extent[0] > extent[1] or extent[2] > extent[3] or extent[4] > extent[5]:
            continue  # an empty segment: its image has no geometry of its own
        matrix = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        image_axes = np.array([[matrix.GetElement(r, c) for c in range(3)] for r in range(3)])
        if abs(np.linalg.det(image_axes)) < 1e-12:
            return None  # a degenerate geometry: nothing can be resolved on it
        # How many of the segment's voxels one grid voxel spans along each of its axes.
        finest = np.maximum(finest, np.linalg.norm(np.linalg.inv(image_axes) @ axes_mm, axis=0))
    factor = np.rint(finest)
    if np.all(factor == 1) and np.all(np.abs(finest - 1) <= SUBDIVISION_TOLERANCE):
        return 1, 1, 1  # as coarse as the volume (or coarser): voxel centres, whatever the volume's size
    if np.any(np.abs(finest - factor) > SUBDIVISION_TOLERANCE) or np.any(factor > MAX_SUBDIVISION) \
            or float(np.prod(factor)) * grid.array.size > MAX_SUB_VOXELS:
        return None
    return int(factor[0]), int(factor[1]), int(factor[2])


def subdivided_grid(grid: Volume, factor: tuple[int, int, int]) -> Volume:
    """``grid`` with each voxel cut into ``factor`` (i, j, k) sub-voxels that fill it exactly (empty array);
    ``grid`` itself for (1, 1, 1), so callers can tell the two apart with ``is``."""
    if tuple(factor) == (1, 1, 1):
        return grid
    f = np.asarray(factor, dtype=float)
    spacing = np.asarray(grid.spacing_mm)
    # The first sub-voxel's centre: half a sub-voxel in from the corner of the first voxel.
    origin = np.asarray(grid.origin_mm) + grid.direction @ (spacing * (1.0 / (2.0 * f) - 0.5))
    k, j, i = grid.array.shape
    shape = (k * factor[2], j * factor[1], i * factor[0])
    return Volume(np.zeros(shape, dtype=np.uint8), tuple(spacing / f), tuple(origin), grid.direction.copy())


def majority_labels(fine_labels: np.ndarray, factor: tuple[int, int, int]) -> np.ndarray:
    """Each voxel's label from its ``factor`` (i, j, k) sub-voxels, read as the report counts tissue (scar
    includes MVO, myocardium includes both): MVO where MVO covers at least half of the voxel, else scar
    where scar and MVO together do, else myocardium where myocardium, scar and MVO together do; otherwise
    blood pool or background, whichever covers more (blood pool on a tie)."""
    fi, fj, fk = factor
    k, j, i = (n // f for n, f in zip(fine_labels.shape, (fk, fj, fi)))
    blocks = fine_labels.reshape(k, fk, j, fj, i, fi)
    counts = np.stack([(blocks == value).sum(axis=(1, 3, 5)) for value in range(BACKGROUND, MVO + 1)])
    half = fi * fj * fk / 2.0
    out = np.where(counts[LV_BLOOD_POOL] >= counts[BACKGROUND], LV_BLOOD_POOL, BACKGROUND).astype(np.uint8)
    for label in (HEALTHY_MYOCARDIUM, SCAR, MVO):  # nested: each at least as much as the ones above it
        out[counts[label:].sum(axis=0) >= half] = label
    return out


@dataclass
class SegmentationOnGrid:
    """A segmentation read once on a reference volume's grid (:func:`read_segmentation`): what "Update report"
    needs of it, each segment resampled once."""

    #: The ScarNet labelmap (0–4) of the recognised segments (:func:`labelmap_from_segmentation`); None when not
    #: asked for.
    labelmap: Volume | None
    #: ``{segment ID: label value}`` of the recognised segments (:func:`recognised_segments`).
    recognised: dict[str, int]
    #: "name (N voxels)" of the segments with voxels that are not counted (:func:`segments_not_counted`).
    not_counted: list[str]
    #: The hash that tells edits (:func:`fingerprint`).
    fingerprint: str
    #: What the user should know of how the segments were read: a renamed ScarNet segment still counted
    #: (:func:`renamed_segments`), counted segments' voxels outside the input (:class:`SegmentOnGrid`), a blood pool
    #: mostly under a myocardium drawn as a filled disk (:func:`scarnet.labels.blood_pool_hidden_by_overlap`).
    #: Empty without the labelmap.
    notes: list[str] = field(default_factory=list)


def read_segmentation(segmentation_node, reference_volume_node, grid: Volume | None = None,
                      require_recognised: bool = False, with_labelmap: bool = True) -> SegmentationOnGrid:
    """The segmentation as it is now on the reference volume's grid: its labelmap, the segments not counted and
    its fingerprint, from one reading of each segment (:func:`read_segment`). ``grid``: the reference volume
    already read (saves a copy of its voxels). ``require_recognised``: raise :class:`~scarnet.errors.InputError`
    before reading any segment when no segment is recognised (a labelmap of background alone means nothing).
    ``with_labelmap``: False leaves the labelmap out (its majority vote on sub-voxels is the costly part).
    Raises :class:`SegmentReadError` (a ``RuntimeError``) when a segment cannot be read.
    """
    if segmentation_node is None:
        raise InputError("no segmentation selected: run 'Segment scar' first or choose a segmentation")
    grid = grid if grid is not None else volume_from_node(reference_volume_node)
    segmentation = segmentation_node.GetSegmentation()
    counted = recognised_segments(segmentation_node)
    if require_recognised and not counted:
        names = [segmentation.GetSegment(s).GetName() for s in segmentation.GetSegmentIDs()]
        raise InputError(f"{segmentation_node.GetName()}: no segment named LV blood pool / Myocardium / Scar / MVO "
                         f"(found: {', '.join(names) or 'none'})")
    factor = subdivision(segmentation_node, reference_volume_node, grid)
    sub_voxels = factor or (1, 1, 1)  # None: finer in a way that cannot be resolved; read at voxel centres
    fine = subdivided_grid(grid, sub_voxels)
    labels = np.full(fine.array.shape if with_labelmap else (0,), BACKGROUND, dtype=np.uint8)
    not_counted: list[str] = []
    drawn: list[DrawnSegment] = []  # as drawn, to tell a blood pool mostly hidden under a higher label
    off_grid: list[str] = []  # counted segments' voxels that lie outside the input: not counted, and said so
    digest = hashlib.sha256()
    digest.update(str(grid.array.shape).encode())
    for segment_id in segmentation.GetSegmentIDs():
        segment = read_segment(segmentation_node, segment_id, reference_volume_node, fine)
        mask = segment.mask
        name = segmentation.GetSegment(segment_id).GetName()
        label = counted.get(segment_id)
        if label is not None and segment.voxels_off_grid:
            off_grid.append(f"{segment.voxels_off_grid} voxels ({segment.off_grid_ml:.2f} mL) of segment '{name}'")
        if label is not None and with_labelmap:
            # Where segments overlap the higher label wins (MVO over scar over myocardium over blood pool): every
            # enhanced voxel stays counted as infarct.
            labels[mask & (labels < label)] = label
            # Only a blood pool's voxels are checked: the others' (up to 64 MB each, sub-voxels) are not kept.
            drawn.append(DrawnSegment(name, label, mask if label == LV_BLOOD_POOL else None))
        elif label is None and mask.any():
            # In whole voxels of the grid, rounded up: a segment of a few sub-voxels is still named.
            voxels = -(-int(mask.sum()) // int(np.prod(sub_voxels)))
            not_counted.append(f"{name} ({voxels} voxels)")
        if fine is not grid:
            # Every voxel wholly in or wholly out: the same mask as on the grid, so a segmentation re-gridded
            # finer (oversampled) without edits keeps its fingerprint; a part of a voxel painted changes it.
            (k, j, i), (fi, fj, fk) = grid.array.shape, sub_voxels
            blocks = mask.reshape(k, fk, j, fj, i, fi)
            anywhere, everywhere = blocks.any(axis=(1, 3, 5)), blocks.all(axis=(1, 3, 5))
            if np.array_equal(anywhere, everywhere):
                mask = anywhere
        # repr() keeps ID and name apart, so ("a", "bc") and ("ab", "c") hash differently. A mask on sub-voxels
        # says so; one on the grid hashes as it always has, so fingerprints stored in saved scenes still match.
        key = (segment_id, name)
        digest.update(repr(key if mask.shape == grid.array.shape else (*key, mask.shape)).encode())
        digest.update(np.packbits(mask).tobytes())
    labelmap, notes = None, []
    if with_labelmap:  # without the grid's DICOM names of its slices
        labelmap = Volume(majority_labels(labels, sub_voxels) if fine is not grid else labels, grid.spacing_mm,
                          grid.origin_mm, grid.direction.copy())
        sub_voxel_ml = float(np.prod(fine.spacing_mm)) / 1000.0
        notes = [*renamed_segments(segmentation_node), *_converted_from_another_representation(segmentation_node),
                 *([f"not counted, outside the input volume (moved off it by a transform, or drawn on a series that "
                    f"covers more?): {', '.join(off_grid)}"] if off_grid else []),
                 *(f"{note} (counted in sub-voxels of {'×'.join(map(str, sub_voxels))})" if fine is not grid else note
                   for note in blood_pool_hidden_by_overlap(drawn, labels, sub_voxel_ml))]
    # Finer than the volume in a way whose part-voxel edits cannot be told apart: taken as edited, so a run asks
    # before replacing it, rather than risk losing edits it cannot see.
    return SegmentationOnGrid(labelmap, counted, not_counted,
                              digest.hexdigest()[:32] if factor else UNRESOLVED_FINGERPRINT, notes)


def _converted_from_another_representation(segmentation_node) -> list[str]:
    """A line when the segmentation is kept as something else than voxels (closed surfaces): it is counted as Slicer
    turns that into voxels of the input, which between slices far apart (LGE: 8-13 mm) loses part of thin segments
    such as scar and MVO. Without it the report changed (scar halved) with no word but wall warnings."""
    segmentation = segmentation_node.GetSegmentation()
    source = segmentation.GetSourceRepresentationName() if hasattr(segmentation, "GetSourceRepresentationName") \
        else segmentation.GetMasterRepresentationName()
    if not source or source == BINARY_LABELMAP:
        return []
    return [f"segmentation '{segmentation_node.GetName()}' is kept as {source.lower()}s: counted as Slicer turns them "
            "into voxels of the input, which between slices far apart loses part of thin segments (scar, MVO); "
            "check the voxels shown in the slice views"]


def labelmap_from_segmentation(segmentation_node, reference_volume_node) -> Volume:
    """The ScarNet labelmap (0–4) of the segmentation as it is now, on the reference volume's grid.

    Where segments overlap (Segment Editor allows it when told to), the higher label wins:
    MVO over scar over myocardium over blood pool — the reading that keeps every enhanced voxel
    counted as infarct. A segmentation finer than the volume is read on sub-voxels
    (:func:`subdivision`), and each voxel takes the label of at least half of them as the report counts
    tissue (:func:`majority_labels`).
    Raises :class:`~scarnet.errors.InputError` when no segment is recognised, ``RuntimeError`` when a segment
    cannot be read.
    """
    return read_segmentation(segmentation_node, reference_volume_node, require_recognised=True).labelmap


def fingerprint(segmentation_node, reference_volume_node, grid: Volume | None = None) -> str:
    """A short hash of everything a run would replace: every segment's ID, name and voxels.

    Each segment is read on its own (:func:`segment_mask`), so overlapping segments and segments
    this module does not know (e.g. a painted "RV") are covered, whatever the source
    representation. The voxels are taken on the reference volume's grid (on sub-voxels of it for a
    finer segmentation, :func:`subdivision`), so re-gridding the segmentation (Segment Editor's
    geometry, oversampling 2-4 included) or a parent transform shared with the volume is not an
    edit, while painting part of a voxel of an oversampled segmentation is. A segmentation finer in
    a way that cannot be resolved (oversampling 1.5 or 8) gets :data:`UNRESOLVED_FINGERPRINT`, so
    it counts as edited whatever was done to it. ``grid``: the reference
    volume already read (saves a copy of its voxels). Raises :class:`~scarnet.errors.InputError`
    when the reference volume is unusable (2D, 4D, ...) and ``RuntimeError`` when a segment cannot
    be read.
    """
    return read_segmentation(segmentation_node, reference_volume_node, grid, with_labelmap=False).fingerprint


def store_fingerprint(segmentation_node, reference_volume_node) -> str:
    """Record the segmentation's current content as "written by ScarNetSlicer"; return the hash.

    The hash is taken from the segmentation read back, not from the labelmap that was written,
    so it compares like with like in :func:`was_edited`.
    """
    value = fingerprint(segmentation_node, reference_volume_node)
    segmentation_node.SetAttribute(FINGERPRINT_ATTRIBUTE, value)
    return value


def has_segments(segmentation_node) -> bool:
    """True when the node exists and holds at least one segment (empty or not)."""
    return segmentation_node is not None and segmentation_node.GetSegmentation().GetNumberOfSegments() > 0


def was_edited(segmentation_node, reference_volume_node, current: str | None = None) -> bool:
    """True when replacing the segmentation's segments would lose someone's work.

    That is: it has segments and either this module did not write them (no fingerprint: a user's
    or another tool's segmentation) or they changed since (fingerprint differs: Segment Editor
    edits, added/renamed/removed segments). An empty or missing segmentation is never "edited".
    An unusable reference volume raises its :class:`~scarnet.errors.InputError`: that is the
    message the user needs, not a question about edits. ``current``: the :func:`fingerprint`
    the caller already took, not taken again.
    """
    if not has_segments(segmentation_node):
        return False
    stored = segmentation_node.GetAttribute(FINGERPRINT_ATTRIBUTE)
    if not stored:
        check_volume_node(reference_volume_node)
        return True
    if current is None:
        try:
            current = fingerprint(segmentation_node, reference_volume_node)
        except RuntimeError:
            return True  # a segment cannot be read back: assume someone changed it rather than replace it
    # Unresolved: whether it changed cannot be told, even from a stored value that says the same.
    return current == UNRESOLVED_FINGERPRINT or current != stored


__all__ = [
    "ANATOMIC_REGION",
    "SegmentationOnGrid",
    "SegmentOnGrid",
    "SegmentReadError",
    "BINARY_LABELMAP",
    "CREATED_BY_ATTRIBUTE",
    "FINGERPRINT_ATTRIBUTE",
    "MAX_SUBDIVISION",
    "MAX_SUB_VOXELS",
    "SUBDIVISION_TOLERANCE",
    "UNRESOLVED_FINGERPRINT",
    "TERMINOLOGY_CONTEXT",
    "fingerprint",
    "has_segments",
    "labelmap_from_segmentation",
    "majority_labels",
    "parse_terminology_entry",
    "read_segmentation",
    "recognised_segments",
    "renamed_segments",
    "read_segment",
    "segment_mask",
    "segment_terminology",
    "segments_not_counted",
    "set_segment_mask",
    "subdivided_grid",
    "subdivision",
    "store_fingerprint",
    "terminology_entry",
    "was_edited",
    "write_labelmap",
]
