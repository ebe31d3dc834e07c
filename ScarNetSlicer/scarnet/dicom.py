"""Reading LGE short-axis stacks from DICOM folders.

A folder may hold a whole exam (localizers, cines, T1 maps, LGE magnitude and PSIR, ...).
:func:`list_series` scans it; :func:`read_dicom_series` picks the LGE series (or the one the
user names) and builds a :class:`~scarnet.volume.Volume` with the geometry taken from the
DICOM plane positions:

* slices are sorted by their position along the slice normal (never by InstanceNumber or
  file order, which scanners and anonymisers reorder freely);
* the slice spacing is the median distance between neighbouring slice positions, never
  SliceThickness (LGE stacks usually have gaps: 8 mm slices every 10 mm); a stack whose
  distances stray more than 20 % from it (a missing slice) is refused, since a regular grid
  would misplace the slices after the gap;
* several images at one position: a whole stack told apart by one attribute (image type,
  echo, inversion time, ...) is kept, or, where only some slices were acquired again, the
  last acquisition of each;
* images in planes crossing the stack's (long-axis 2/3/4-chamber views filed with it, as files
  of its series or as frames of its enhanced file) are left out, said; views alone are refused;
* DICOM ImageOrientationPatient's first triplet is the direction of increasing column index
  (i), its second that of increasing row index (j); PixelSpacing is (row spacing, column
  spacing), i.e. (spacing along j, spacing along i);
* RescaleSlope/RescaleIntercept are applied; a MONOCHROME1 series (lowest value shown white) is
  then inverted, one mapping for the whole series, so that brighter is higher as in MONOCHROME2.

Single-frame files (MR Image Storage and the like) and enhanced multi-frame files (per-frame
functional groups) are supported. Everything a user can fix raises
:class:`~scarnet.errors.InputError` with one line.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import struct
import warnings
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .io import check_voxel_count
from .text import person_name
from .volume import Volume

#: Files with these endings are never DICOM; skipping them saves parsing e.g. big NIfTI files.
_NOT_DICOM_SUFFIXES = (
    ".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".raw", ".png", ".jpg", ".jpeg", ".gif",
    ".bmp", ".tif", ".tiff", ".txt", ".md", ".json", ".csv", ".xml", ".html", ".pdf", ".zip", ".gz",
    ".py", ".pyc", ".exe", ".dll", ".ini", ".log", ".seg.nrrd", ".safetensors", ".pt", ".pth",
)

#: Endings that say a file is DICOM: one of them empty or shorter than a preamble is a damaged DICOM file.
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")

#: Cosines of two slices closer than this count as the same orientation.
ORIENTATION_TOLERANCE = 1e-3
#: Images of one series whose direction cosines differ by less than this (about 0.6°) are one stack's: slices
#: planned one by one may be tilted a little; the stack takes the most common orientation (and says so).
ORIENTATION_GROUP_TOLERANCE = 0.01
#: An ImageOrientationPatient vector whose length strays further than this from 1 is no direction
#: (all zeros, garbage); values rounded to the 4+ digits scanners write stay far inside it.
UNIT_LENGTH_TOLERANCE = 0.01
#: Slices closer than this along the normal (mm) are at the same position (duplicates). Far
#: below any slice spacing (3D LGE: ≥ 0.6 mm), above the jitter of a repeat planned again.
POSITION_TOLERANCE_MM = 0.1
#: Neighbour distances differing from the median by more than max(this, 1 % of it) are irregular (mm).
SPACING_TOLERANCE_MM = 0.05
#: A distance further than this fraction from the median is refused, not approximated: a missing
#: slice (twice the median) or two stacks interleaved would put slices and volumes far off.
MAX_SPACING_DEVIATION = 0.2

# -- LGE heuristics ---------------------------------------------------------------------------
# Text cues are searched in SeriesDescription, ProtocolName, SequenceName and ImageType.
# Substring cues are distinctive enough to be found inside other words ("de_tfi_psir_sax");
# token cues are short and must stand alone ("DE", "IR", "MAG").
_LGE_SUBSTRINGS = ("LGE", "DELAY", "VIABILITY", "VIABILITAET", "HYPERENH", "LATE_GAD", "LATEGAD")
_LGE_TOKENS = ("DE", "MDE", "LATE", "SCAR", "DCE_LATE")
_PSIR_SUBSTRINGS = ("PSIR",)
_MAGNITUDE_TOKENS = ("MAG", "MAGN", "MAGNITUDE")
_IR_TOKENS = ("IR", "IRFGRE", "FGRE_IR", "IR_FGRE", "TFL_IR")
# Any of these makes a series "not LGE": localizers, cines, mapping, TI scouts, perfusion,
# flow, T2/STIR oedema imaging and early gadolinium enhancement all look alike to a model
# but are not what it was trained on.
_NEGATIVE_SUBSTRINGS = (
    "LOCALIZER", "LOCALISER", "SCOUT", "SURVEY", "3PLANE", "3-PLANE", "CINE", "MOLLI", "T1MAP", "T1_MAP",
    "T2MAP", "T2_MAP", "T2STAR", "T2*", "MAPPING", "TISCOUT", "TI_SCOUT", "LOOKLOCKER", "LOOK_LOCKER",
    "LOOK-LOCKER", "TIFIND", "TI_FIND", "PERFUSION", "FLOW", "STIR", "TRUFI_LOC", "AUTOALIGN",
    "AAHSCOUT", "EARLY", "SCREEN SAVE", "SCREENSAVE",
)
# Short words only count standing alone: "T2" but not "T2W_LGE"-style parts of other words.
_NEGATIVE_TOKENS = ("LOC", "T2", "MAP", "PERF", "PC", "EGE", "RETRO")
_LOCALIZER_IMAGE_TYPES = ("LOCALIZER",)

_SCORE_PSIR = 4
_SCORE_LGE = 3
_SCORE_MAGNITUDE = 2
_SCORE_IR = 1
_SCORE_INVERSION_TIME = 1
_SCORE_NEGATIVE = -10


@dataclass
class DicomSeries:
    """One DICOM series found in a folder (headers only; pixels are read by :func:`read_dicom_series`)."""

    series_instance_uid: str
    series_number: int | None
    description: str
    modality: str
    files: list[Path]
    num_slices: int  # images in the series: files × frames (duplicates at one position count twice)
    rows: int
    columns: int
    is_lge: bool
    image_type: tuple[str, ...] = ()
    sequence_name: str = ""
    protocol_name: str = ""
    inversion_time_ms: float | None = None
    sop_class_uid: str = ""
    study_instance_uid: str = ""
    study_date: str = ""  # StudyDate (DA, YYYYMMDD) as written
    #: PatientID and PatientName, only to tell whether listed series come from several patients; never shown
    #: (messages and reports name a study by its date and UID, not by who the patient is).
    patient_key: str = ""
    lge_score: int = 0
    lge_cues: list[str] = field(default_factory=list)
    #: The most slice positions in one plane (an enhanced file's frames counted each by its own plane and position;
    #: the image count where a header does not say): under 2, the series is views in several planes (long-axis
    #: 2/3/4-chamber, perhaps as magnitude and PSIR at each), never a stack.
    most_slices_in_one_plane: int = 0

    @property
    def is_psir(self) -> bool:
        """The series looks like a phase-sensitive IR (PSIR) reconstruction, the preferred LGE image."""
        return "PSIR" in self.lge_cues

    def record(self) -> dict[str, Any]:
        """What a report keeps of the series it was made from, so that it can be found in a PACS viewer."""
        return {"series_number": self.series_number, "description": self.description,
                "series_instance_uid": self.series_instance_uid}

    def summary(self, details: Iterable[str] = ()) -> str:
        """A short one-line description: ``#5 'LGE PSIR SAX' (12 slices)``; ``details`` are added in the brackets
        (``#5 'LGE PSIR SAX' (12 slices, SeriesInstanceUID 1.2.3)``)."""
        number = f"#{self.series_number}" if self.series_number is not None else f"UID {self.series_instance_uid}"
        plural = "" if self.num_slices == 1 else "s"
        return f"{number} '{self.description}' ({', '.join([f'{self.num_slices} slice{plural}', *details])})"


# --------------------------------------------------------------------------------------------
# Scanning
# --------------------------------------------------------------------------------------------
def list_series(folder: str | Path) -> list[DicomSeries]:
    """Scan ``folder`` recursively and return its DICOM image series, sorted by series number.

    Files that are not DICOM, DICOM files without pixels (DICOMDIR, structured reports,
    presentation states) and derived objects that are not images (a DICOM SEG, e.g. ScarNet's
    own from an earlier run, RT structures) are skipped quietly. Raises :class:`InputError` when
    ``folder`` is not a folder.
    """
    import pydicom

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    by_uid: dict[str, list[tuple[Path, Any]]] = {}
    damaged: list[str] = []
    for path in _walk_files(folder):
        name = path.name.lower()
        if name.endswith(_NOT_DICOM_SUFFIXES) or name == "dicomdir":
            continue
        # One read serves the pre-check (its first 132 bytes) and the file meta's transfer syntax.
        file_head = _file_head(path)
        head = file_head[:132]
        if not _may_be_dicom(head):
            if len(head) < 132 and name.endswith(_DICOM_SUFFIXES):
                damaged.append(path.relative_to(folder).as_posix())  # empty or cut short: an interrupted copy
            continue
        deflated_start = _deflated_dataset_start(file_head)
        if deflated_start is not None and _inflates_past_limit(path, deflated_start):
            damaged.append(path.relative_to(folder).as_posix())  # a decompression bomb: never given to pydicom
            continue
        try:
            with warnings.catch_warnings():
                # pydicom's notices on a foreign or damaged file name no file ("Expected implicit VR, but found
                # explicit VR"): a file that is not read is named below, one that is read needs no notice.
                warnings.simplefilter("ignore")
                header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            uid = str(header.get("SeriesInstanceUID", "") or "")
            rows = int(header.get("Rows", 0) or 0)
            columns = int(header.get("Columns", 0) or 0)
        except Exception:  # noqa: BLE001 - pydicom raises many types on foreign files
            header = None
        # Unreadable, or cut off after its file meta (nothing of the image), though it says it is DICOM: damaged.
        if header is None or len(header) == 0:
            if _has_preamble(head):
                damaged.append(path.relative_to(folder).as_posix())  # said below
            continue
        if not uid or rows <= 0 or columns <= 0:
            # An image cut short in its header (the file meta says image, or nothing says what it is) is damaged;
            # a DICOM object without pixels (a report, a presentation state) or a foreign file parsed into
            # nonsense under force=True is not an image.
            if _has_preamble(head) and not _not_an_image(header) and _may_be_an_image(header):
                damaged.append(path.relative_to(folder).as_posix())
            continue
        if _not_an_image(header):
            continue
        by_uid.setdefault(uid, []).append((path, header))
    if damaged:
        # A slice may be missing because of them: say which files, whatever the stack's own checks find.
        warnings.warn(f"{folder}: {len(damaged)} DICOM file(s) could not be read (empty, cut short or damaged) "
                      "and were left out (a slice is missing if one belongs to the exam): "
                      f"{', '.join(damaged[:5])}{', ...' if len(damaged) > 5 else ''}", stacklevel=2)
    series = [_describe_series(uid, members) for uid, members in by_uid.items()]
    series.sort(key=lambda s: (s.series_number is None, s.series_number or 0, s.description, s.series_instance_uid))
    return series


#: What :func:`scarnet.dicom.list_series` reads of each file: a file meta group is a few hundred bytes.
_FILE_META_BYTES = 1 << 16


def _file_head(path: Path) -> bytes:
    """The first :data:`_FILE_META_BYTES` of ``path`` (fewer for a shorter file; none when it cannot be read)."""
    try:
        with path.open("rb") as stream:
            return stream.read(_FILE_META_BYTES)
    except OSError:
        return b""


#: pydicom inflates a deflated data set (transfer syntax 1.2.840.10008.1.2.1.99) whole in memory, even to read its
#: header: a file whose data set inflates to more than this (no MR image file comes near) is left out unread, a
#: decompression bomb (or damage) that a few MB on disk would turn into many GB of memory.
MAX_DEFLATED_DATASET_BYTES = 1 << 29
_DEFLATED_SYNTAX = "1.2.840.10008.1.2.1.99"
#: File meta elements (group 0002, explicit VR little endian) whose length takes 4 bytes after 2 reserved ones.
_LONG_LENGTH_VRS = (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT")


def _deflated_dataset_start(head: bytes) -> int | None:
    """Where the deflated data set of a file whose file meta names the deflated transfer syntax starts (bytes), from
    the file's first :data:`_FILE_META_BYTES` (``head``); None for any other file (and for one whose file meta cannot
    be walked: pydicom then reads it as it would)."""
    if _DEFLATED_SYNTAX.encode() not in head:
        return None
    position = 132 if _has_preamble(head[:132]) else 0
    syntax = ""
    while position + 8 <= len(head):
        group, element = struct.unpack_from("<HH", head, position)
        if group != 0x0002:
            break
        vr = head[position + 4: position + 6]
        if vr in _LONG_LENGTH_VRS:
            if position + 12 > len(head):
                return None
            (length,) = struct.unpack_from("<I", head, position + 8)
            value_start = position + 12
        else:
            (length,) = struct.unpack_from("<H", head, position + 6)
            value_start = position + 8
        if element == 0x0010:  # TransferSyntaxUID
            syntax = head[value_start: value_start + length].decode("ascii", "replace").strip("\0 ")
        position = value_start + length
    return position if syntax == _DEFLATED_SYNTAX else None


def _inflates_past_limit(path: Path, start: int) -> bool:
    """Whether the raw deflate data from ``start`` in ``path`` inflates to more than :data:`MAX_DEFLATED_DATASET_BYTES`
    (measured piece by piece: nothing of it is kept)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    length = 0
    try:
        with path.open("rb") as stream:
            stream.seek(start)
            while not inflater.eof and (piece := stream.read(1 << 14)):
                while piece and not inflater.eof:
                    length += len(inflater.decompress(piece, 1 << 24))
                    if length > MAX_DEFLATED_DATASET_BYTES:
                        return True
                    piece = inflater.unconsumed_tail
    except (OSError, zlib.error):
        return False  # unreadable or damaged: pydicom says so as for any other file
    return False


def _has_preamble(head: bytes) -> bool:
    """The file says it is DICOM ("DICM" after the 128-byte preamble), so failing to read it is damage."""
    return len(head) == 132 and head[128:132] == b"DICM"


#: Modalities of derived objects that may hold pixels but are not images to segment.
_NOT_IMAGE_MODALITIES = frozenset({"SEG", "RTSTRUCT", "RTDOSE", "RTPLAN", "SR", "PR", "KO", "REG", "DOC"})
#: SOP classes of such objects: Segmentation, Label Map Segmentation, Surface Segmentation.
_NOT_IMAGE_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7",
                                    "1.2.840.10008.5.1.4.1.1.66.5"})


def _may_be_an_image(header: Any) -> bool:
    """Whether the file's SOP class (the dataset's or its file meta's) is an image storage class, or is not
    said at all. Either counts: a file cut short inside the dataset's SOPClassUID holds a stub of it (no class),
    while its file meta, read whole before it, still says MR Image Storage."""
    from pydicom.uid import UID

    meta = getattr(header, "file_meta", None)
    sop_classes = [str(value) for value in (header.get("SOPClassUID", ""),
                                            meta.get("MediaStorageSOPClassUID", "") if meta else "") if value]
    return not sop_classes or any(UID(sop_class).name.endswith("Image Storage") for sop_class in sop_classes)


def _not_an_image(header: Any) -> bool:
    modality = str(header.get("Modality", "") or "").upper()
    return modality in _NOT_IMAGE_MODALITIES or str(header.get("SOPClassUID", "") or "") in _NOT_IMAGE_SOP_CLASSES


def _walk_files(folder: Path) -> Iterable[Path]:
    for root, dirs, files in os.walk(folder):
        # Hidden folders (.git, macOS metadata) never hold the exam; sorted for a stable order.
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(files):
            # Regular files only (or links to them): opening a FIFO in the folder would wait for ever for a writer,
            # and a device (a link to /dev/zero) is no image either.
            if not name.startswith(".") and os.path.isfile(os.path.join(root, name)):
                yield Path(root) / name


def _may_be_dicom(head: bytes) -> bool:
    """Cheap pre-check of a file's first 132 bytes (:func:`_file_head`): a DICOM preamble, or a raw dataset
    starting with group 0002/0008."""
    if _has_preamble(head):
        return True
    # Files without the 128-byte preamble (old exports) begin directly with a data element.
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x08")


def _describe_series(uid: str, members: list[tuple[Path, Any]]) -> DicomSeries:
    header = members[0][1]
    number = header.get("SeriesNumber")
    try:
        series_number = int(number) if number not in (None, "") else None
    except (TypeError, ValueError):
        series_number = None
    image_type = tuple(str(v).upper() for v in _as_list(header.get("ImageType")))
    inversion_time = _inversion_time(header)
    frames = sum(_frame_count(h) for _, h in members)
    most_slices, stack_member = _densest_plane(members)
    # The stack's file names the series: of a series that files long-axis views with the stack, the first listed
    # may be a view ('LGE LAX').
    description = _series_description(members[stack_member][1])
    sequence_name = str(header.get("SequenceName", "") or header.get("PulseSequenceName", "") or "").strip()
    protocol_name = str(header.get("ProtocolName", "") or "").strip()
    scanning_sequence = tuple(str(v).upper() for v in _as_list(header.get("ScanningSequence")))
    score, cues, negative = _lge_score(
        [description, protocol_name, sequence_name, " ".join(image_type)], image_type, scanning_sequence,
        inversion_time,
    )
    return DicomSeries(
        series_instance_uid=uid,
        series_number=series_number,
        description=description,
        modality=str(header.get("Modality", "") or ""),
        files=[path for path, _ in members],
        num_slices=frames,
        rows=int(header.Rows),
        columns=int(header.Columns),
        is_lge=not negative and any(c in cues for c in ("PSIR", "LGE", "MAG+IR", "IR")) and score >= 2,
        image_type=image_type,
        sequence_name=sequence_name,
        protocol_name=protocol_name,
        inversion_time_ms=inversion_time,
        sop_class_uid=str(header.get("SOPClassUID", "") or ""),
        study_instance_uid=str(header.get("StudyInstanceUID", "") or ""),
        study_date=str(header.get("StudyDate", "") or "").strip(),
        patient_key=f"{header.get('PatientID', '') or ''}\\{header.get('PatientName', '') or ''}",
        lge_score=score,
        lge_cues=cues,
        most_slices_in_one_plane=most_slices,
    )


def _frame_count(header: Any) -> int:
    """The images a file holds: its NumberOfFrames (enhanced multi-frame), else 1."""
    return max(1, int(header.get("NumberOfFrames", 1) or 1))


def _orientation_groups(orientations: list[np.ndarray]) -> list[list[int]]:
    """The indices of ``orientations`` (ImageOrientationPatient, 6 numbers) grouped by plane: within
    :data:`ORIENTATION_GROUP_TOLERANCE` of a group's first, in the order first seen."""
    groups: list[list[int]] = []
    for index, orientation in enumerate(orientations):
        for group in groups:
            if np.allclose(orientations[group[0]], orientation, atol=ORIENTATION_GROUP_TOLERANCE):
                group.append(index)
                break
        else:
            groups.append([index])
    return groups


def _densest_plane(members: list[tuple[Path, Any]]) -> tuple[int, int]:
    """How many slice positions of a series share the most common orientation (see ``most_slices_in_one_plane``),
    and which of ``members`` holds the most images in that plane (the stack's file, as the reading chooses the
    plane: most positions, then most images); the first where a header does not say."""
    planes = []
    owners = []
    for number, (_, header) in enumerate(members):
        found = _header_planes(header)
        if found is None:
            return sum(_frame_count(header) for _, header in members), 0  # unknown: not ruled out
        planes.extend(found)
        owners.extend([number] * len(found))
    best = (0, 0, 0)  # slice positions, images, member
    for group in _orientation_groups([orientation for orientation, _ in planes]):
        normal = _normal(planes[group[0]][0])
        count = _count_positions([planes[i][1] for i in group], normal)
        if (count, len(group)) > best[:2]:
            member = max(dict.fromkeys(owners[i] for i in group), key=[owners[i] for i in group].count)
            best = (count, len(group), member)
    return best[0], best[2]


def _series_description(header: Any) -> str:
    return str(header.get("SeriesDescription", "") or "").strip()


def _count_positions(positions: list[np.ndarray], normal: np.ndarray) -> int:
    """How many slice positions along ``normal`` ``positions`` (ImagePositionPatient) are at."""
    return len(set(_position_slots(np.array([position @ normal for position in positions]))))


def _header_planes(header: Any) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Each image's (ImageOrientationPatient, ImagePositionPatient) as a file's header says: a single-frame file's
    own, or each frame's from an enhanced file's functional groups. None where any is missing, not numbers or no
    plane (the reading says which)."""
    try:
        if "PerFrameFunctionalGroupsSequence" not in header:
            if _frame_count(header) > 1:
                return None
            items = [(header, header)]
        else:
            per_frame = header.PerFrameFunctionalGroupsSequence
            if len(per_frame) != _frame_count(header):
                return None
            shared = _shared_group(header)
            items = [(_functional_group(group, shared, "PlaneOrientationSequence"),
                      _functional_group(group, shared, "PlanePositionSequence")) for group in per_frame]
        planes = [(_header_numbers(orientation.get("ImageOrientationPatient"), 6),
                   _header_numbers(position.get("ImagePositionPatient"), 3)) for orientation, position in items]
    except (AttributeError, KeyError, TypeError, ValueError):  # AttributeError: a group without its item (None)
        return None
    if any(np.linalg.norm(np.cross(orientation[:3], orientation[3:])) < 0.5 for orientation, _ in planes):
        return None  # all zeros, or rows along the columns
    return planes


def _header_numbers(value: Any, count: int) -> np.ndarray:
    """``count`` finite numbers of a header value (ValueError if it is not that)."""
    result = np.array([float(v) for v in _as_list(value)], dtype=float)
    if result.shape != (count,) or not np.isfinite(result).all():
        raise ValueError(value)
    return result


def _shared_group(dataset: Any) -> Any:
    """An enhanced file's shared functional groups item (None without one)."""
    shared = dataset.get("SharedFunctionalGroupsSequence")
    return shared[0] if shared else None


def _functional_group(per_frame: Any, shared: Any, sequence: str) -> Any:
    """A frame's functional group item ``sequence``: its own or, when equal for all frames, the shared one."""
    for source in (per_frame, shared):
        if source is not None and sequence in source and len(source[sequence].value):
            return source[sequence].value[0]
    return None


def _normal(orientation: np.ndarray) -> np.ndarray:
    """The unit normal (row × column direction) of an ImageOrientationPatient."""
    normal = np.cross(orientation[:3], orientation[3:])
    return normal / max(float(np.linalg.norm(normal)), 1e-12)  # no plane (rows along columns): refused when read


def _inversion_time(header: Any) -> float | None:
    value = header.get("InversionTime")
    if value in (None, ""):
        # Enhanced MR keeps it in a functional group, shared or the first frame's.
        try:
            first = (header.get("PerFrameFunctionalGroupsSequence") or [None])[0]
            value = _functional_group(first, _shared_group(header), "MRModifierSequence").InversionTimes[0]
        except (AttributeError, IndexError, KeyError, TypeError):
            return None
    try:
        inversion = float(value)
    except (TypeError, ValueError):
        return None
    return inversion if inversion > 0 else None


def _lge_score(
    texts: list[str], image_type: tuple[str, ...], scanning_sequence: tuple[str, ...], inversion_time: float | None
) -> tuple[int, list[str], bool]:
    """Score how much a series looks like an LGE stack; return (score, cues, has a negative cue)."""
    text = " ".join(texts).upper()
    tokens = set(re.split(r"[^A-Z0-9*]+", text)) - {""}
    cues: list[str] = []
    score = 0
    negative = [w for w in _NEGATIVE_SUBSTRINGS if w in text] + [w for w in _NEGATIVE_TOKENS if w in tokens]
    negative += [t for t in image_type if t in _LOCALIZER_IMAGE_TYPES]
    if negative:
        score += _SCORE_NEGATIVE
        cues.append("not LGE: " + "/".join(sorted(set(negative))))
    magnitude = any(t in tokens for t in _MAGNITUDE_TOKENS)
    # Siemens names both reconstructions of a PSIR scan "..._psir_..."; the magnitude one ends in
    # "_MAG". Only the phase-sensitive one earns the PSIR bonus.
    if any(w in text for w in _PSIR_SUBSTRINGS) and not magnitude:
        score += _SCORE_PSIR
        cues.append("PSIR")
    if any(w in text for w in _LGE_SUBSTRINGS) or any(w in tokens for w in _LGE_TOKENS):
        score += _SCORE_LGE
        cues.append("LGE")
    ir = any(w in tokens for w in _IR_TOKENS) or "IR" in scanning_sequence
    if magnitude and (ir or "LGE" in cues or any(w in text for w in _PSIR_SUBSTRINGS)):
        score += _SCORE_MAGNITUDE
        cues.append("MAG+IR")
    if ir:
        score += _SCORE_IR
        cues.append("IR")
    if inversion_time is not None:
        score += _SCORE_INVERSION_TIME
        cues.append(f"TI={inversion_time:g}")
    return score, cues, bool(negative)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


# --------------------------------------------------------------------------------------------
# Choosing a series
# --------------------------------------------------------------------------------------------
#: Picture files: slices saved as PNG, JPEG or TIFF (no geometry).
_PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _image_files_hint(folder: Path) -> str:
    """Where a folder without DICOM holds image files (a folder of NIfTI exams given as one input): name one, and
    that such files are given themselves (a folder is read as DICOM)."""
    from .io import IMAGE_SUFFIXES

    try:
        files = sorted(path for path in folder.rglob("*") if path.is_file())
    except OSError:
        return ""
    found = [path for path in files if path.name.lower().endswith(IMAGE_SUFFIXES)]
    if not found:
        pictures = [path for path in files if path.suffix.lower() in _PICTURE_SUFFIXES]
        if pictures:
            # Slices saved as pictures (EMIDEC's PNGs, screenshots) keep no pixel spacing, slice gap or orientation.
            return (f"; it holds {len(pictures)} picture file(s) ({pictures[0].relative_to(folder).as_posix()}, ...), "
                    "which keep no pixel spacing, slice gap or orientation: give the stack as NIfTI/NRRD with its "
                    "spacing, or as DICOM")
        return ""
    more = f" and {len(found) - 1} more" if len(found) > 1 else ""
    return (f"; it holds {found[0].relative_to(folder).as_posix()}{more}: give such files themselves (a folder is "
            "read as DICOM)")


def select_series(all_series: list[DicomSeries], series: str | None, folder: Path) -> DicomSeries:
    """Pick the series named by ``series`` or, with ``None``, the one LGE series of the folder."""
    if not all_series:
        raise InputError(f"{folder}: no DICOM images found (searched all sub-folders){_image_files_hint(folder)}")
    if series is not None:
        return _series_by_name(all_series, series, folder)
    if len(all_series) == 1:
        only = all_series[0]
        # What the series says of itself (its description and image type): a protocol name is the exam's (GE writes
        # "CARDIAC STRESS PERF" into every series of it), and says nothing of this one.
        _, own_cues, negative = _lge_score([only.description, " ".join(only.image_type)], only.image_type, (), None)
        marked = next((cue.removeprefix("not LGE: ") for cue in own_cues if cue.startswith("not LGE: ")), "")
        if negative and not {"PSIR", "LGE"} & set(own_cues):
            # A folder exported one series each: a map or cine there would be segmented as if it were LGE.
            number = only.series_number if only.series_number is not None else only.series_instance_uid
            raise InputError(f"{folder}: its only series, {only.summary()}, is marked {marked} in its description or "
                             "image type (a localizer, cine, map or other series that is not LGE); pass --series "
                             f"{number} (series='{number}' from Python) if it is LGE")
        if negative:  # "LGE_T2_PREP" (dark-blood LGE): LGE by name, and something else too
            warnings.warn(f"{folder}: its only series, {only.summary()}, is marked LGE and also {marked}; read as "
                          "LGE", stacklevel=3)
        return only
    # Only stacks can be read; single images and views in several planes (long-axis 2/3/4-chamber, screenshots)
    # never qualify.
    stacks = [s for s in all_series if s.num_slices >= 2 and s.most_slices_in_one_plane >= 2]
    lge = sorted((s for s in stacks if s.is_lge), key=lambda s: -s.lge_score)
    if len(lge) == 1 or (len(lge) > 1 and lge[0].lge_score > lge[1].lge_score):
        return lge[0]
    if not lge:
        neutral = [s for s in stacks if s.lge_score >= 0]
        if len(neutral) == 1:
            warnings.warn(f"{folder}: no series is labelled as LGE; using the only multi-slice series that is not "
                          f"a localizer/cine/map: {neutral[0].summary()}", stacklevel=3)
            return neutral[0]
        reason = f"none of its {len(all_series)} series looks like an LGE stack"
    else:
        tied = [s for s in lge if s.lge_score == lge[0].lge_score]  # a less LGE-like one is not in the tie
        reason = f"{len(tied)} of its {len(all_series)} series look equally like LGE stacks{_origins(tied)}"
    raise InputError(f"{folder}: {reason}: {_listing(all_series, all_series)}; pass --series with a series "
                     "number, SeriesInstanceUID or part of the description")


def _series_by_name(all_series: list[DicomSeries], series: str, folder: Path) -> DicomSeries:
    wanted = series.strip()
    by_uid = [s for s in all_series if s.series_instance_uid == wanted]
    if by_uid:
        return by_uid[0]
    number = wanted[1:] if wanted.startswith("#") else wanted
    by_number = [s for s in all_series if s.series_number is not None and str(s.series_number) == number]
    if len(by_number) == 1:
        return by_number[0]
    if len(by_number) > 1:
        # The message asks for a SeriesInstanceUID, so every entry shows its own.
        raise InputError(f"{folder}: series number {number} is used by {len(by_number)} series"
                         f"{_origins(by_number)}: {_listing(by_number, all_series, uids=True)}; pass the "
                         "SeriesInstanceUID instead")
    needle = wanted.lower()
    exact = [s for s in all_series if s.description.lower() == needle]
    if len(exact) == 1:
        return exact[0]
    by_text = exact or [s for s in all_series if needle and needle in s.description.lower()]
    if len(by_text) == 1:
        return by_text[0]
    if len(by_text) > 1:
        raise InputError(f"{folder}: --series '{series}' matches {len(by_text)} series{_origins(by_text)}: "
                         f"{_listing(by_text, all_series)}; pass a series number or SeriesInstanceUID")
    raise InputError(f"{folder}: no series matches --series '{series}'; the folder holds: "
                     f"{_listing(all_series, all_series)}")


def _listing(listed: list[DicomSeries], all_series: list[DicomSeries], uids: bool = False) -> str:
    """``listed`` as :meth:`DicomSeries.summary` entries, one line.

    An entry that --series could not pick by its number or description among ``all_series`` (two studies of
    one folder both with a series #7 'LGE PSIR SAX') also shows its SeriesInstanceUID, which --series accepts,
    and, when such entries come from several studies, the study's date and the end of its StudyInstanceUID, so
    the user can tell which is which without the message naming the patient. ``uids``: every entry shows its
    SeriesInstanceUID.
    """
    unclear = [s for s in listed if s.series_number is not None and (uids or not _selectable(s, all_series))]
    studies = sorted({s.study_instance_uid for s in unclear})
    study_names = _study_names(studies) if len(studies) > 1 else {}
    entries = []
    for s in listed:
        details = []
        if s in unclear:
            if study_names:
                date = s.study_date
                shown = f"{date[:4]}-{date[4:6]}-{date[6:]}" if len(date) == 8 and date.isdigit() else date
                details.append(" ".join(["study", *([shown] if shown else []), study_names[s.study_instance_uid]]))
            details.append(f"SeriesInstanceUID {s.series_instance_uid}")
        entries.append(s.summary(details))
    return ", ".join(entries)


def _selectable(chosen: DicomSeries, all_series: list[DicomSeries]) -> bool:
    """--series picks ``chosen`` by its series number or its whole description (as :func:`_series_by_name`)."""
    if chosen.series_number is not None and sum(s.series_number == chosen.series_number for s in all_series) == 1:
        return True
    text = chosen.description.strip()
    # The description is tried only after UIDs and numbers: one that reads as another series' number fails.
    number = text[1:] if text.startswith("#") else text
    taken = any(s.series_instance_uid == text or (s.series_number is not None and str(s.series_number) == number)
                for s in all_series)
    return bool(text) and not taken and sum(s.description.lower() == text.lower() for s in all_series) == 1


def _study_names(study_uids: list[str]) -> dict[str, str]:
    """The shortest ends (at least 6 characters) of ``study_uids`` that tell them apart: ``…498.1``, ``…498.2``."""
    longest = max(len(uid) for uid in study_uids)
    for length in range(min(6, longest), longest + 1):  # distinct UIDs: at the longest, the whole UIDs differ
        if len({uid[-length:] for uid in study_uids}) == len(study_uids):
            break
    # A cut just after a dot would show "….1": the dot goes.
    return {uid: ("…" + uid[-length:].lstrip(".") if len(uid) > length else uid) if uid else
            "without StudyInstanceUID" for uid in study_uids}


def _origins(listed: list[DicomSeries]) -> str:
    """`` (from 2 studies of 2 patients)`` when ``listed`` spans several studies, else "" (patients are counted,
    never named)."""
    studies = len({s.study_instance_uid for s in listed})
    if studies < 2:
        return ""
    patients = len({s.patient_key for s in listed})
    return f" (from {studies} studies" + (f" of {patients} patients)" if patients > 1 else ")")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
@dataclass
class _Frame:
    """One 2D image: a single-frame file or one frame of an enhanced multi-frame file."""

    path: Path
    frame: int | None  # None: single-frame file
    position: np.ndarray  # ImagePositionPatient (LPS, mm)
    orientation: np.ndarray  # ImageOrientationPatient: row cosine (along i), column cosine (along j)
    pixel_spacing: tuple[float, float]  # (between rows = along j, between columns = along i)
    rows: int
    columns: int
    slope: float
    intercept: float
    keys: dict[str, Any]  # what may tell duplicates at one position apart (image type, echo, time)
    dataset: Any
    rescale_varies_in_file: bool = False  # an enhanced file whose frames are scaled differently
    #: PhotometricInterpretation MONOCHROME1: the lowest value is shown white (inverted after the rescale).
    monochrome1: bool = False


def read_dicom_series(folder: str | Path, series: str | None = None) -> Volume:
    """Read one series of a DICOM folder as a 3D :class:`Volume` (float32, rescaled values).

    ``series`` selects a series by SeriesInstanceUID, SeriesNumber (as text) or a
    case-insensitive part of the SeriesDescription; without it the folder's LGE series is
    chosen (PSIR preferred over magnitude; localizers, cines and maps never). Raises
    :class:`InputError` when nothing fits, the choice is ambiguous, or the series is not a
    single regular 3D stack.
    """
    return read_dicom_stack(folder, series).volume


@dataclass
class DicomStack:
    """A series read as a stack (:func:`read_dicom_stack`): the volume and, for each of its slices (k order),
    the image it was made from, so that a result can refer to its source images (DICOM SEG)."""

    volume: Volume
    series: DicomSeries
    #: The header of each slice's file (a copy without its pixel data, which the volume holds; one copy
    #: per file, shared by the frames of an enhanced file).
    datasets: list[Any]
    #: Each slice's frame in an enhanced multi-frame file (0-based); None for a single-frame image.
    frame_indices: list[int | None]

    def identity(self) -> dict[str, str]:
        """Whom and which study the images are of, as their headers say (:func:`identity_from`)."""
        return identity_from(self.datasets[0].get)


def identity_from(value_of: Callable[[str], Any]) -> dict[str, str]:
    """Patient name and ID, birth date, study date and accession number (those present), given how to read a DICOM
    attribute by keyword (a header's ``get``; Slicer's subject hierarchy attributes): for the printed page only, so
    that it cannot be filed under the wrong patient. Messages and the JSON/CSV reports never carry the name, ID,
    birth date or accession number (a message telling two studies of one folder apart names their dates)."""
    fields = {"patient_name": person_name(value_of("PatientName")),
              "patient_id": _text(value_of("PatientID")),
              "birth_date": _date(value_of("PatientBirthDate")),
              "study_date": _date(value_of("StudyDate")),
              "accession_number": _text(value_of("AccessionNumber"))}
    return {key: value for key, value in fields.items() if value}


def _text(value: Any) -> str:
    return " ".join(str(value or "").split())


def _date(value: Any) -> str:
    """A DICOM date (YYYYMMDD) as YYYY-MM-DD; anything else as written."""
    text = _text(value)
    return f"{text[:4]}-{text[4:6]}-{text[6:]}" if len(text) == 8 and text.isdigit() else text


def read_dicom_stack(folder: str | Path, series: str | None = None) -> DicomStack:
    """As :func:`read_dicom_series`, with the image each slice comes from."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: no such folder")
    chosen = select_series(list_series(folder), series, folder)
    name = f"{folder} series {chosen.summary()}"
    volume, frames = _build_volume(_read_frames(chosen, name), name)
    # The series as the stack's own images describe it (the most of them), whatever other images of its series say.
    descriptions = [_series_description(frame.dataset) for frame in frames]
    own = max(dict.fromkeys(descriptions), key=descriptions.count)
    if own != chosen.description:
        chosen = dataclasses.replace(chosen, description=own)
    headers: dict[int, Any] = {}
    for frame in frames:
        headers.setdefault(id(frame.dataset), _without_pixels(frame.dataset))
    return DicomStack(volume, chosen, [headers[id(f.dataset)] for f in frames], [f.frame for f in frames])


def _without_pixels(dataset: Any) -> Any:
    """A copy of ``dataset`` (and its file meta) without the pixel data, so a stack keeps no second copy of the
    images while the model runs."""
    import copy

    import pydicom

    header = pydicom.Dataset()
    for element in dataset:
        if element.tag != PIXEL_DATA_TAG:
            header.add(copy.deepcopy(element))
    if getattr(dataset, "file_meta", None) is not None:
        header.file_meta = copy.deepcopy(dataset.file_meta)
    return header


#: (7FE0,0010) Pixel Data.
PIXEL_DATA_TAG = 0x7FE00010


def _read_frames(chosen: DicomSeries, name: str) -> list[_Frame]:
    import pydicom

    frames: list[_Frame] = []
    seen_instances: set[str] = set()
    for path in chosen.files:
        try:
            dataset = pydicom.dcmread(path, force=True)
        except Exception as error:  # noqa: BLE001 - a file that listed fine but cannot be read fully
            raise InputError(f"{name}: cannot read {path.name} ({_one_line(error)})") from None
        instance = str(dataset.get("SOPInstanceUID", "") or "")
        if instance and instance in seen_instances:
            continue  # the same image copied twice into the folder
        seen_instances.add(instance)
        if int(dataset.get("SamplesPerPixel", 1) or 1) != 1:
            raise InputError(f"{name}: {path.name} is a colour image (SamplesPerPixel "
                             f"{dataset.SamplesPerPixel}); expected greyscale MR")
        monochrome1 = _is_monochrome1(dataset, path, name)
        if "PerFrameFunctionalGroupsSequence" in dataset:
            read = _enhanced_frames(path, dataset, name)  # PhotometricInterpretation is top-level there too
        else:
            if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
                raise InputError(f"{name}: {path.name} is a multi-frame file without per-frame positions "
                                 "(cine or legacy multi-frame); export the stack as single-frame images")
            read = [_single_frame(path, dataset, name)]
        # Before any pixels are decoded: pydicom decodes a file's every frame, to what Rows × Columns × NumberOfFrames
        # declare (a compressed file's few bytes may declare gigabytes).
        check_voxel_count(f"{name}: {path.name}", (read[0].columns, read[0].rows, _frame_count(dataset)))
        for frame in read:
            frame.monochrome1 = monochrome1
        frames.extend(read)
    return frames


def _is_monochrome1(dataset: Any, path: Path, name: str) -> bool:
    """Whether the file's greyscale is MONOCHROME1 (lowest value white); any other than MONOCHROME1/2 is refused.

    A file without PhotometricInterpretation (old or stripped exports) is taken as MONOCHROME2, as MR always is
    in practice. Colour and palette images (RGB, YBR_*, PALETTE COLOR) have no greyscale the model can use.
    """
    photometric = str(dataset.get("PhotometricInterpretation", "") or "").strip().upper()
    if photometric not in ("", "MONOCHROME1", "MONOCHROME2"):
        raise InputError(f"{name}: {path.name} has PhotometricInterpretation {photometric}; expected greyscale MR "
                         "(MONOCHROME2 or MONOCHROME1)")
    return photometric == "MONOCHROME1"


def _single_frame(path: Path, dataset: Any, name: str) -> _Frame:
    position = dataset.get("ImagePositionPatient")
    orientation = dataset.get("ImageOrientationPatient")
    spacing = dataset.get("PixelSpacing")
    if position is None or orientation is None or spacing is None:
        raise InputError(f"{name}: {path.name} lacks ImagePositionPatient, ImageOrientationPatient or PixelSpacing; "
                         "cannot place it in space")
    return _Frame(
        path=path,
        frame=None,
        position=_floats(position, 3, "ImagePositionPatient", path, name),
        orientation=_orientation(orientation, path, name),
        pixel_spacing=_pixel_spacing(spacing, path, name),
        rows=int(dataset.Rows),
        columns=int(dataset.Columns),
        slope=_rescale(dataset, "RescaleSlope", 1.0, path, name),
        intercept=_rescale(dataset, "RescaleIntercept", 0.0, path, name),
        keys={
            "ImageType": tuple(str(v).upper() for v in [*_as_list(dataset.get("ImageType")),
                                                        *_as_list(dataset.get("ComplexImageComponent"))]),
            "EchoNumbers": _number(dataset.get("EchoNumbers")),
            "EchoTime": _number(dataset.get("EchoTime")),
            "InversionTime": _number(dataset.get("InversionTime")),
            "AcquisitionNumber": _number(dataset.get("AcquisitionNumber")),
            "TemporalPositionIdentifier": _number(dataset.get("TemporalPositionIdentifier")),
            "TriggerTime": _number(dataset.get("TriggerTime")),
            # Not attributes to split by: they order repeats of one slice (the last one is kept).
            "AcquisitionTime": _seconds_of_day(dataset.get("AcquisitionTime")),
            "InstanceNumber": _number(dataset.get("InstanceNumber")),
        },
        dataset=dataset,
    )


def _enhanced_frames(path: Path, dataset: Any, name: str) -> list[_Frame]:
    """Frames of an enhanced (functional-group) multi-frame file."""
    shared = _shared_group(dataset)
    per_frame = dataset.PerFrameFunctionalGroupsSequence
    if len(per_frame) != _frame_count(dataset):
        # The groups place the frames in order: with one missing, every later frame would be put where the next
        # one lies (or left out).
        raise InputError(f"{name}: {path.name} has NumberOfFrames {dataset.get('NumberOfFrames')} but "
                         f"{len(per_frame)} per-frame functional groups; cannot tell where each frame lies")
    frames = []
    for index, group in enumerate(per_frame):

        def item(sequence: str, group: Any = group) -> Any:
            return _functional_group(group, shared, sequence)

        plane_position = item("PlanePositionSequence")
        plane_orientation = item("PlaneOrientationSequence")
        measures = item("PixelMeasuresSequence")
        if plane_position is None or plane_orientation is None or measures is None:
            raise InputError(f"{name}: {path.name} frame {index + 1} lacks plane position, orientation or pixel "
                             "spacing; cannot place it in space")
        transform = item("PixelValueTransformationSequence")
        frame_type = item("MRImageFrameTypeSequence")
        content = item("FrameContentSequence")
        echo = item("MREchoSequence")
        modifier = item("MRModifierSequence")
        inversion = _as_list(modifier.get("InversionTimes")) if modifier is not None else []
        frames.append(_Frame(
            path=path,
            frame=index,
            position=_floats(plane_position.ImagePositionPatient, 3, "ImagePositionPatient", path, name),
            orientation=_orientation(plane_orientation.ImageOrientationPatient, path, name),
            pixel_spacing=_pixel_spacing(measures.PixelSpacing, path, name),
            rows=int(dataset.Rows),
            columns=int(dataset.Columns),
            slope=_rescale(transform, "RescaleSlope", 1.0, path, name),
            intercept=_rescale(transform, "RescaleIntercept", 0.0, path, name),
            keys={
                # With the frame's ComplexImageComponent (MAGNITUDE, REAL, PHASE...): the standard attribute that
                # tells a PSIR file's magnitude and phase-sensitive frames apart when FrameType does not.
                "ImageType": tuple(str(v).upper() for v in [*_as_list(
                    frame_type.get("FrameType") if frame_type is not None else dataset.get("ImageType")),
                    *_as_list(frame_type.get("ComplexImageComponent") if frame_type is not None
                              else dataset.get("ComplexImageComponent"))]),
                "EchoTime": _number(echo.get("EffectiveEchoTime")) if echo is not None else None,
                "InversionTime": _number(inversion[0]) if inversion else None,
                "StackID": str(content.get("StackID", "")) if content is not None else None,
                "TemporalPositionIndex": _number(content.get("TemporalPositionIndex")) if content is not None else None,
            },
            dataset=dataset,
        ))
    if len({(f.slope, f.intercept) for f in frames}) > 1:
        for f in frames:
            f.rescale_varies_in_file = True
    return frames


def _floats(value: Any, count: int, tag: str, path: Path, name: str) -> np.ndarray:
    try:
        result = np.array([float(v) for v in _as_list(value)], dtype=float)
    except (TypeError, ValueError):
        result = np.array([])
    if result.size != count or not np.all(np.isfinite(result)):
        raise InputError(f"{name}: {path.name} has an invalid {tag} ({value!r})")
    return result


def _orientation(value: Any, path: Path, name: str) -> np.ndarray:
    """ImageOrientationPatient: the row and column directions, each a unit vector (all zeros places nothing)."""
    orientation = _floats(value, 6, "ImageOrientationPatient", path, name)
    lengths = np.linalg.norm(orientation.reshape(2, 3), axis=1)
    if np.any(np.abs(lengths - 1.0) > UNIT_LENGTH_TOLERANCE):
        raise InputError(f"{name}: {path.name} has an invalid ImageOrientationPatient ({_fmt_list(orientation)}): "
                         f"its row and column directions must be unit vectors, not of length {_fmt_list(lengths)}")
    return orientation


def _pixel_spacing(value: Any, path: Path, name: str) -> tuple[float, float]:
    """PixelSpacing (between rows, between columns) in mm, both positive."""
    spacing = _floats(value, 2, "PixelSpacing", path, name)
    if np.any(spacing <= 0):
        raise InputError(f"{name}: {path.name} has a non-positive PixelSpacing ({_fmt_list(spacing)} mm)")
    return float(spacing[0]), float(spacing[1])


def _rescale(source: Any, tag: str, default: float, path: Path, name: str) -> float:
    """RescaleSlope or RescaleIntercept of ``source`` (a dataset or functional group item, or None).

    ``default`` when absent or empty. Not a finite number, or a slope of 0 (every pixel would be the
    intercept), is refused: the rescaled values would be NaN, infinite or meaningless.
    """
    value = source.get(tag) if source is not None else None
    if value is None or str(value).strip() == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or (tag == "RescaleSlope" and number == 0):
        # str: the header's text (pydicom 2.4's repr is the parsed number: 'nan', 'inf', '0.0')
        raise InputError(f"{name}: {path.name} has an invalid {tag} ({str(value)!r}); expected a finite number"
                         + (" other than 0" if tag == "RescaleSlope" else ""))
    return number


def _seconds_of_day(value: Any) -> float | None:
    """A DICOM TM value (``HHMMSS.FFFFFF``, parts may be missing) in seconds, or None."""
    text = str(value or "").strip().replace(":", "")
    try:
        hours, minutes, seconds = int(text[0:2]), int(text[2:4] or 0), float(text[4:] or 0)
    except (ValueError, IndexError):
        return None
    return hours * 3600.0 + minutes * 60.0 + seconds


def _number(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(_as_list(value)[0])
    except (TypeError, ValueError, IndexError):
        return None


def _build_volume(frames: list[_Frame], name: str) -> tuple[Volume, list[_Frame]]:
    """The stack of ``frames`` and, in its slice order, the frame each slice is."""
    if not frames:
        raise InputError(f"{name}: holds no images")
    frames = _one_orientation(frames, name)
    first = frames[0]
    for frame in frames[1:]:
        if (frame.rows, frame.columns) != (first.rows, first.columns):
            raise InputError(f"{name}: images of different sizes ({first.columns}×{first.rows} and "
                             f"{frame.columns}×{frame.rows}); not a single stack")
        if not np.allclose(frame.pixel_spacing, first.pixel_spacing, rtol=1e-4, atol=1e-4):
            raise InputError(f"{name}: images with different pixel spacings; not a single stack")
    row_cosine = first.orientation[:3] / np.linalg.norm(first.orientation[:3])
    column_cosine = first.orientation[3:] / np.linalg.norm(first.orientation[3:])
    if abs(float(row_cosine @ column_cosine)) > ORIENTATION_TOLERANCE:
        raise InputError(f"{name}: ImageOrientationPatient row and column directions are not perpendicular")
    normal = np.cross(row_cosine, column_cosine)
    normal /= np.linalg.norm(normal)

    frames = _one_frame_per_position(frames, normal, name)
    _check_one_photometric(frames, name)  # of the images used: reconstructions left out may differ
    positions = np.array([f.position @ normal for f in frames])
    order = np.argsort(positions, kind="stable")
    frames = [frames[i] for i in order]
    positions = positions[order]
    if len(frames) < 2:
        raise InputError(f"{name}: has a single slice (a 2D image); expected a 3D short-axis stack")

    gaps = np.diff(positions)
    spacing = float(np.median(gaps))
    tolerance = max(SPACING_TOLERANCE_MM, 0.01 * spacing)
    if np.any(np.abs(gaps - spacing) > MAX_SPACING_DEVIATION * spacing):
        raise InputError(f"{name}: slices are not evenly spaced (distances {_fmt_list(gaps)} mm): a slice is "
                         "missing or the series mixes stacks; a regular grid would misplace slices and misstate "
                         "volumes. Export the complete stack as one series")
    if np.any(np.abs(gaps - spacing) > tolerance):
        warnings.warn(f"{name}: irregular slice spacing (distances {_fmt_list(gaps)} mm); using the median "
                      f"{spacing:.4g} mm, so slice positions are approximate", stacklevel=3)
    # Slices planned one by one can be shifted within their planes; the regular grid then
    # misplaces them (by the amount reported), though per-slice areas stay exact.
    in_plane = np.array([[(f.position - frames[0].position) @ row_cosine,
                          (f.position - frames[0].position) @ column_cosine] for f in frames])
    shift = float(np.max(np.linalg.norm(in_plane, axis=1)))
    if shift > 0.5 * min(first.pixel_spacing):
        warnings.warn(f"{name}: slices are shifted within their planes by up to {shift:.3g} mm; the volume "
                      "places them on a straight stack from the first slice", stacklevel=3)

    check_voxel_count(name, (first.columns, first.rows, len(frames)), "its images' headers declare")
    array = _inverted_if_monochrome1(np.stack([_pixels(f, name) for f in frames]), frames, name)
    row_spacing, column_spacing = first.pixel_spacing
    volume = Volume(
        array,
        # Volume spacing is in (i, j, k) order: columns (PixelSpacing[1]), rows (PixelSpacing[0]), slices.
        (column_spacing, row_spacing, spacing),
        tuple(frames[0].position),
        np.column_stack([row_cosine, column_cosine, normal]),
        source_slices=[_identifiers(f) for f in frames],
    )
    return volume, frames


#: At most this many images in planes slanted from the stack's (less than CROSSING_PLANE_MIN_DEG from it: slices
#: planned anew) are left out of a series; more, and the series is no one stack.
MAX_IMAGES_IN_OTHER_PLANES = 2
#: Planes whose normals are at least this far apart (degrees) cross: views in another plane than the stack's (long-axis
#: 2-, 3- and 4-chamber views are perpendicular to the short axis; an MPR, a localizer), not its slices planned anew.
#: Such views are left out of a series (an enhanced file of a multi-stack scan holds them with the short-axis stack's
#: frames) as long as the stack has at least twice as many slice positions as they are views.
CROSSING_PLANE_MIN_DEG = 45.0


def _one_orientation(frames: list[_Frame], name: str) -> list[_Frame]:
    """The series' images in its stack's plane: views in planes crossing it (long-axis images exported with the
    short-axis stack, as frames of one enhanced file or as files of its series) and a stray image in a slanted plane
    are left out, said; slices tilted from one another by a fraction of a degree are kept, said. Several stacks, or
    views without a stack, are refused."""
    groups = [[frames[i] for i in group] for group in _orientation_groups([f.orientation for f in frames])]
    stack = _stack_plane(groups, name) if len(groups) > 1 else frames
    if any(not np.allclose(f.orientation, stack[0].orientation, atol=ORIENTATION_TOLERANCE) for f in stack):
        # Tilted or turned in their planes: the largest angle between a slice's row or column direction and the
        # first slice's.
        def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
            return math.degrees(math.acos(min(1.0, abs(float(a @ b)) / float(np.linalg.norm(a) * np.linalg.norm(b)))))

        turn_deg = max(max(angle_deg(f.orientation[:3], stack[0].orientation[:3]),
                           angle_deg(f.orientation[3:], stack[0].orientation[3:])) for f in stack)
        warnings.warn(f"{name}: slices tilted or turned from one another by up to {turn_deg:.2g}°; the stack takes "
                      "the first slice's orientation, so positions far from the centre are approximate", stacklevel=4)
    return stack


def _stack_plane(groups: list[list[_Frame]], name: str) -> list[_Frame]:
    """The images of the plane with the most slice positions (then images) among ``groups`` (a series' images by
    plane), the others left out and said, or an error when they are more than views beside a stack."""
    normals = [_normal(group[0].orientation) for group in groups]
    positions = [_count_positions([f.position for f in group], normal) for group, normal in zip(groups, normals)]
    best = max(range(len(groups)), key=lambda i: (positions[i], len(groups[i])))
    others = [i for i in range(len(groups)) if i != best]
    most_cosine = math.cos(math.radians(CROSSING_PLANE_MIN_DEG))
    crosses = {i: abs(float(normals[i] @ normals[best])) < most_cosine for i in others}
    # A view is a position in a crossing plane, at any number of images there (magnitude and PSIR, two TIs).
    views = sum(positions[i] for i in others if crosses[i])
    slanted = sum(len(groups[i]) for i in others if not crosses[i])
    if positions[best] < 2:
        raise InputError(f"{name}: its {sum(map(len, groups))} images have {len(groups)} different orientations, "
                         "none with images at two slice positions (views such as long-axis 2-, 3- and 4-chamber, or a "
                         "localizer): no short-axis stack to read")
    if slanted > MAX_IMAGES_IN_OTHER_PLANES or positions[best] < 2 * (views + slanted):
        shown = ", ".join(str(count) for count in sorted(positions, reverse=True))
        raise InputError(f"{name}: images with different orientations ({len(groups)} planes, at {shown} slice "
                         "positions: several stacks or views, e.g. a localizer); not a single short-axis stack")
    left_out = [frame for i in others for frame in groups[i]]
    planes = "another plane" if len(others) == 1 else f"{len(others)} other planes"
    what = "a long-axis view" if views + slanted == 1 else "long-axis views"
    warnings.warn(f"{name}: {len(left_out)} image(s) in {planes} than the stack's {len(groups[best])} ({what} filed "
                  f"with it?) left out: {_image_names(left_out)}", stacklevel=5)
    return groups[best]


def _image_names(frames: list[_Frame], limit: int = 8) -> str:
    """``frames`` named by file, and frame number in an enhanced file: ``a.dcm, ENH.dcm frames 8, 9, 10``."""
    by_file: dict[Path, list[int]] = {}
    for frame in frames:
        by_file.setdefault(frame.path, []).extend([] if frame.frame is None else [frame.frame + 1])
    names = []
    for path, numbers in by_file.items():
        shown = ", ".join(str(number) for number in sorted(numbers)[:limit]) + (", …" if len(numbers) > limit else "")
        names.append(path.name + (f" frame{'s' if len(numbers) > 1 else ''} {shown}" if numbers else ""))
    return ", ".join(names[:limit]) + (", …" if len(names) > limit else "")


def _check_one_photometric(frames: list[_Frame], name: str) -> None:
    """The stack's images are all MONOCHROME1 or all MONOCHROME2: mixed, their grey levels run in opposite
    directions, and no one inversion would make the slices comparable."""
    inverted = [f for f in frames if f.monochrome1]
    if inverted and len(inverted) < len(frames):
        plain = next(f for f in frames if not f.monochrome1)
        raise InputError(f"{name}: mixes MONOCHROME1 images ({len(inverted)}, e.g. {inverted[0].path.name}) and "
                         f"MONOCHROME2 images ({len(frames) - len(inverted)}, e.g. {plain.path.name}), whose grey "
                         "levels run in opposite directions; export the series with one PhotometricInterpretation")


def _inverted_if_monochrome1(array: np.ndarray, frames: list[_Frame], name: str) -> np.ndarray:
    """``array`` (rescaled values of ``frames``, one slice each) so that brighter is higher.

    A MONOCHROME1 stack (lowest value shown white) becomes ``max + min − value`` with the minimum and maximum
    of the whole stack: one mapping for every slice keeps them comparable (a per-slice one would not), and the
    range stays as it was. The model was trained on MONOCHROME2 grey levels (higher = brighter), so without it
    scar and blood pool would look dark.
    """
    if not frames[0].monochrome1:  # all or none: _check_one_photometric
        return array
    low, high = float(array.min()), float(array.max())
    warnings.warn(f"{name}: PhotometricInterpretation is MONOCHROME1 (lowest value shown white); grey levels were "
                  f"inverted for the whole series (value -> {high + low:.10g} - value) so that brighter is higher, as "
                  "in MONOCHROME2", stacklevel=4)
    # float64 keeps integer values exact before the cast (as the rescale in _pixels).
    return ((high + low) - array.astype(np.float64)).astype(np.float32)


def _identifiers(frame: _Frame) -> dict[str, Any]:
    """What a PACS viewer shows of this image: InstanceNumber (of the file), frame number (1-based, enhanced
    multi-frame files only) and SliceLocation (a single-frame attribute; vendors differ in its sign and origin)."""
    return _slice_name(frame.dataset.get("InstanceNumber"), None if frame.frame is None else frame.frame + 1,
                       None if frame.frame is not None else frame.dataset.get("SliceLocation"))


def _slice_name(instance_number: Any, frame_number: int | None, slice_location: Any) -> dict[str, Any]:
    """One slice's :attr:`Volume.source_slices` entry; header values that are not finite numbers become None."""
    return {"instance_number": _integer(instance_number), "frame_number": frame_number,
            "slice_location_mm": _finite(slice_location)}


def _integer(value: Any) -> int | None:
    number = _finite(value)
    return int(number) if number is not None and number.is_integer() else None


def _finite(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and math.isfinite(number) else None


def slice_identifiers(volume: Volume, headers: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Per-slice identifiers (as :attr:`Volume.source_slices`) of ``volume`` from its images' headers.

    Each header is a dict with ``position`` (ImagePositionPatient, LPS mm), ``instance_number`` and
    ``slice_location_mm``: e.g. read from Slicer's DICOM database for the instances a volume was
    loaded from. Each image is placed on the slice its position lies on, not by list order. None
    unless every slice gets exactly one image within a quarter of the slice spacing, so that an
    identifier never names the wrong slice.
    """
    if len(headers) != volume.num_slices:
        return None
    normal = volume.slice_normal
    step_mm = volume.slice_distance_mm
    identifiers: list[dict[str, Any] | None] = [None] * volume.num_slices
    for header in headers:
        try:
            position = np.asarray(header["position"], dtype=float).reshape(3)
        except (KeyError, TypeError, ValueError):
            return None
        offset = float((position - np.asarray(volume.origin_mm)) @ normal) / step_mm
        if not math.isfinite(offset):
            return None
        k = round(offset)
        if abs(offset - k) > 0.25 or not 0 <= k < volume.num_slices or identifiers[k]:
            return None
        identifiers[k] = _slice_name(header.get("instance_number"), None, header.get("slice_location_mm"))
    return identifiers  # type: ignore[return-value]  # every slot filled: len(headers) == num_slices, no repeats


def _one_frame_per_position(frames: list[_Frame], normal: np.ndarray, name: str) -> list[_Frame]:
    """One image per slice position: a complete stack told apart by one attribute, the latest
    repeat of re-acquired slices, or an error.

    An attribute counts only if one of its values covers every position exactly once (two TIs,
    magnitude and phase, two echoes). Values unique to each image (a trigger time that follows the
    heart rate, one acquisition number per slice) split the series into single images and never
    pick one. Reconstructions of one acquisition (image type, echo, stack) are told apart first.
    Then, when only some positions were acquired again (the usual repeat of a slice spoilt by
    breathing), the last acquired image at each position is kept, whether or not the repeat got
    its own acquisition number or inversion time. Only when every position has several images are
    acquisition attributes (acquisition number, time point, trigger or inversion time) used.
    """
    positions = np.array([f.position @ normal for f in frames])
    slots = _position_slots(positions)
    num_slots = len(set(slots))
    if num_slots == len(frames):
        return frames
    counts = np.bincount(slots)
    for key in _RECONSTRUCTION_KEYS:
        if (stack := _complete_stack(frames, slots, num_slots, key, name)) is not None:
            return stack
    if counts.min() == 1:
        return _latest_per_position(frames, slots, counts, positions, name)
    _check_not_a_cine(frames, slots, counts, name)
    for key in _ACQUISITION_KEYS:
        if (stack := _complete_stack(frames, slots, num_slots, key, name, latest=True)) is not None:
            return stack
    raise InputError(f"{name}: {len(frames)} images at only {num_slots} slice positions (several echoes, "
                     "time points or reconstructions in one series) and nothing tells them apart; export one image "
                     "per slice position or pick another series")


def _check_not_a_cine(frames: list[_Frame], slots: list[int], counts: np.ndarray, name: str) -> None:
    """Refuse a series with several images at every position told apart by the cardiac phase: a cine (LGE is one
    phase per slice; one stack repeated is two), whose one phase would otherwise be segmented as if it were LGE."""
    if counts.min() < MIN_CINE_PHASES:
        return
    inversion_times: dict[int, set[Any]] = {}
    for frame, slot in zip(frames, slots):
        inversion_times.setdefault(slot, set()).add(frame.keys.get("InversionTime"))
    if min(len(values - {None}) for values in inversion_times.values()) >= MIN_TI_SCOUT_TIMES:
        raise InputError(f"{name}: {len(frames) / len(counts):.2g} images per slice position at different "
                         "InversionTimes: a TI scout (Look-Locker), not an LGE stack; pick the LGE series")
    if any(len(values) > 1 for values in inversion_times.values()):
        return  # repeats at other TIs (the first did not null the myocardium): LGE acquired again, not a cine
    for key in ("TriggerTime", "TemporalPositionIdentifier", "TemporalPositionIndex"):
        phases: dict[int, set[Any]] = {}
        for frame, slot in zip(frames, slots):
            if frame.keys.get(key) is not None:
                phases.setdefault(slot, set()).add(frame.keys[key])
        if len(phases) < len(counts) or min(len(values) for values in phases.values()) < MIN_CINE_PHASES:
            continue
        # A repeat's trigger time differs by the heart rate's drift (ms); a cine's phases span the cardiac cycle.
        if key == "TriggerTime" and min(max(values) - min(values) for values in phases.values()) < MIN_CINE_SPAN_MS:
            continue
        raise InputError(f"{name}: {len(frames) / len(counts):.2g} images per slice position at different "
                         f"{key}s: a cine (several cardiac phases), not an LGE stack; pick the LGE series (or "
                         "export the one acquisition to use)")


#: Images per position at as many different trigger times or temporal positions: a cine, not LGE repeats.
MIN_CINE_PHASES = 3
#: ... whose trigger times span at least this much of the cardiac cycle (LGE repeats differ by a few ms).
MIN_CINE_SPAN_MS = 100.0
#: Images per position at as many different inversion times: a TI scout (Look-Locker), not LGE acquired again at a
#: better TI (two or three times at most).
MIN_TI_SCOUT_TIMES = 6


def _complete_stack(frames: list[_Frame], slots: list[int], num_slots: int, key: str,
                    name: str, latest: bool = False) -> list[_Frame] | None:
    """The images of the preferred value of ``key`` that holds one image at every position (None: no such value).
    ``latest``: the stack acquired last is preferred (a whole stack acquired again, as a slice is), by acquisition
    time, then instance number; the value's own preference only breaks a tie."""
    values = [f.keys.get(key) for f in frames]
    if len(set(values)) < 2:
        return None
    groups: dict[Any, list[int]] = {}
    for index, value in enumerate(values):
        groups.setdefault(value, []).append(index)
    complete = {value: members for value, members in groups.items()
                if len(members) == num_slots and len({slots[i] for i in members}) == num_slots}
    if not complete:
        return None  # no value of this attribute is one whole stack
    if latest:
        # Each stack's median acquisition order; the value's own preference (negated, for max) breaks a tie.
        acquired = {value: (sorted(_acquisition_order(frames[i]) for i in members)[len(members) // 2],
                            tuple(-v if isinstance(v, (int, float)) else 0 for v in _preference(key, value)))
                    for value, members in complete.items()}
        value = max(acquired, key=acquired.__getitem__)
        members = complete[value]
        known = len({order for order, _ in acquired.values()}) == len(complete)
        which = " (the last acquired)" if known else ""
    else:
        value, members = min(complete.items(), key=lambda item: _preference(key, item[0]))
        which = ""
    shown = "\\".join(value) if isinstance(value, tuple) else f"{value:g}" if isinstance(value, float) else value
    warnings.warn(f"{name}: {len(frames) / num_slots:.2g} images per slice position (different {key}); using the "
                  f"{len(members)} images with {key} {shown}{which}", stacklevel=5)
    return [frames[i] for i in members]


def _latest_per_position(frames: list[_Frame], slots: list[int], counts: np.ndarray, positions: np.ndarray,
                         name: str) -> list[_Frame]:
    """The last acquired image at each position acquired more than once; the others as they are."""
    repeated = [i for i in range(len(frames)) if counts[slots[i]] > 1]
    latest: dict[int, int] = {}
    for index in sorted(repeated, key=lambda i: _acquisition_order(frames[i])):
        latest[slots[index]] = index
    kept = [i for i in range(len(frames)) if counts[slots[i]] == 1 or latest[slots[i]] == i]
    where = sorted(float(positions[latest[slot]]) for slot in latest)
    warnings.warn(f"{name}: {len(latest)} slice position(s) acquired more than once (at "
                  f"{_fmt_list(np.array(where))} mm along the normal); using the last acquired image at each",
                  stacklevel=5)
    return [frames[i] for i in kept]


def _acquisition_order(frame: _Frame) -> tuple[float, float, int]:
    """Sort key: acquisition time, then instance number, then frame index (missing values first)."""
    time = frame.keys.get("AcquisitionTime")
    instance = frame.keys.get("InstanceNumber")
    return (time if time is not None else -1.0, instance if instance is not None else -1.0, frame.frame or 0)


#: Attributes that tell reconstructions of one acquisition apart (tried first, in this order).
_RECONSTRUCTION_KEYS = ("ImageType", "EchoNumbers", "EchoTime", "StackID")
#: Attributes of the acquisition, tried (in order) only when every position has several images.
_ACQUISITION_KEYS = ("AcquisitionNumber", "TemporalPositionIdentifier", "TemporalPositionIndex", "TriggerTime",
                     "InversionTime")


def _preference(key: str, value: Any) -> tuple[Any, ...]:
    """Lower sorts first: PSIR/real before magnitude before other image types, phase last, and of one kind ORIGINAL
    before DERIVED (filtered, subtracted, reformatted copies); else the lowest value."""
    if key == "ImageType":
        kinds = set(value or ())
        if kinds & {"PSIR", "R", "REAL", "R_IR"}:
            rank = 0
        elif kinds & {"M", "MAG", "MAGNITUDE", "M_IR", "M_FFE", "M_SE"}:
            rank = 1
        elif kinds & {"P", "PHASE", "P_IR", "IMAGINARY"}:
            rank = 3
        else:
            rank = 2
        return rank, "DERIVED" in kinds, "\\".join(value or ())
    if value is None:
        return 1, 0.0
    return 0, value


def _position_slots(positions: np.ndarray) -> list[int]:
    """Slot number for each position; positions within POSITION_TOLERANCE_MM share a slot."""
    order = np.argsort(positions, kind="stable")
    slots = [0] * len(positions)
    slot = 0
    previous = None
    for index in order:
        if previous is not None and positions[index] - previous > POSITION_TOLERANCE_MM:
            slot += 1
        slots[index] = slot
        previous = positions[index]
    return slots


def _pixels(frame: _Frame, name: str) -> np.ndarray:
    """The frame's pixels as float32 with RescaleSlope/Intercept applied."""
    dataset = frame.dataset
    try:
        _ensure_transfer_syntax(dataset)
        pixels = dataset.pixel_array
        rescaled = False
    except Exception as pydicom_error:  # noqa: BLE001 - e.g. a compressed syntax without a pydicom decoder
        short = _is_uncompressed(dataset) and _pixel_data_short(dataset)
        if short:
            # GDCM would read data shorter than Rows × Columns say with the missing pixels as zeros.
            raise InputError(f"{name}: cannot read the pixels of {frame.path.name} ({short})") from None
        # Compressed syntaxes pydicom cannot decode here, and native files it refuses for a missing
        # attribute (PixelRepresentation, BitsStored, ... in old or anonymised files), which GDCM reads.
        if frame.monochrome1:
            # GDCM inverts MONOCHROME1 itself, by a rule of its own (ITK 5.4: 2^BitsStored − 1 − value, then the
            # rescale; it needs the very attributes such files may lack), and whether a given ITK does is not
            # something to rely on: the series-wide inversion could not know what it gets.
            raise InputError(f"{name}: {frame.path.name} is MONOCHROME1 and only GDCM decodes its pixels here "
                             f"({_one_line(pydicom_error)}), which may invert its grey levels by a rule of its "
                             "own; export the series uncompressed with all its pixel attributes, or as MONOCHROME2"
                             ) from None
        pixels, rescaled = _pixels_with_simpleitk(frame, name, pydicom_error)
    if frame.frame is not None:
        if pixels.ndim == 3:
            pixels = pixels[frame.frame]
        elif frame.frame != 0:
            raise InputError(f"{name}: {frame.path.name} has fewer frames than its headers describe")
    pixels = np.asarray(pixels)
    if pixels.shape != (frame.rows, frame.columns):
        raise InputError(f"{name}: {frame.path.name} pixel data has shape {pixels.shape}, expected "
                         f"{frame.rows}×{frame.columns}")
    if rescaled:
        if frame.rescale_varies_in_file:
            # GDCM scales every frame like the first: values of the other frames would be wrong.
            raise InputError(f"{name}: {frame.path.name} is compressed in a syntax only GDCM decodes here, and its "
                             "frames have different RescaleSlope/Intercept, which GDCM does not apply per frame; "
                             "export the series uncompressed")
        return pixels.astype(np.float32)
    # float64 arithmetic keeps e.g. slope 0.5 / intercept -100 exact before the cast.
    with np.errstate(over="ignore", invalid="ignore"):  # checked below, in one line instead of numpy's warnings
        values = (pixels.astype(np.float64) * frame.slope + frame.intercept).astype(np.float32)
    if not np.all(np.isfinite(values)):
        cause = ("its pixel data holds NaN or infinite values" if not np.all(np.isfinite(pixels)) else
                 f"RescaleSlope {frame.slope:g} and RescaleIntercept {frame.intercept:g} make values too large")
        raise InputError(f"{name}: {frame.path.name}: {cause}")
    return values


def _is_uncompressed(dataset: Any) -> bool:
    """The pixel data is stored natively (uncompressed, or deflated as a whole dataset)."""
    syntax = dataset.file_meta.TransferSyntaxUID
    try:
        return not syntax.is_compressed
    except ValueError:  # a private or unknown syntax: perhaps GDCM knows it
        return False


def _pixel_data_short(dataset: Any) -> str:
    """Why native pixel data cannot be whole: shorter than Rows × Columns × BitsAllocated say ("" if not)."""
    data = dataset.get("PixelData")
    try:
        bits = (int(dataset.Rows) * int(dataset.Columns) * int(dataset.get("NumberOfFrames", 1) or 1)
                * int(dataset.get("SamplesPerPixel", 1) or 1) * int(dataset.BitsAllocated))
    except (AttributeError, TypeError, ValueError):
        return ""
    expected = (bits + 7) // 8
    if isinstance(data, bytes) and len(data) < expected:
        return (f"its pixel data holds {len(data)} of the {expected} bytes its Rows, Columns and BitsAllocated "
                "describe: the file is truncated or its header is wrong")
    return ""


def _ensure_transfer_syntax(dataset: Any) -> None:
    """Files without a meta header (read with force=True) lack a transfer syntax pydicom needs to decode."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(dataset, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    if meta is None:
        dataset.file_meta = meta = FileMetaDataset()
    implicit, little = getattr(dataset, "original_encoding", (True, True))
    meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    )


def _pixels_with_simpleitk(frame: _Frame, name: str, pydicom_error: Exception) -> tuple[np.ndarray, bool]:
    """Decode with GDCM (through SimpleITK), which reads most compressed syntaxes and applies the rescale."""
    import SimpleITK as sitk

    from .io import ITK_WINDOWS_NAMES, itk_cannot_open, itk_file_name

    if itk_cannot_open(frame.path):
        raise InputError(f"{name}: cannot decode the pixels of {frame.path.name} ({_one_line(pydicom_error)}), and "
                         f"{ITK_WINDOWS_NAMES}")
    try:
        image = sitk.ReadImage(itk_file_name(frame.path, InputError))
    except RuntimeError:
        raise InputError(f"{name}: cannot decode the pixels of {frame.path.name} "
                         f"({_one_line(pydicom_error)})") from None
    array = sitk.GetArrayFromImage(image)
    if array.ndim == 3 and frame.frame is None:
        array = array[0]
    return array, True


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 160 else text[:159] + "…"


def _fmt_list(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(f"{v:.3g}" for v in values[:limit])
    return shown + (", …" if len(values) > limit else "")

