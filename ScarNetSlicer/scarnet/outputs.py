"""A command's output files, checked before any work and moved into place all together or not at all.

A command that writes several files (``segment --labelmap --seg --report``, ``phantom --out
--labelmap``, ``demo --out``) must not leave some of them written when a later one fails:
a user would take a half-written set for a finished run. :class:`OutputSet` therefore

1. checks every output before any work: the ending of each name for its kind (an image
   cannot be a ``.seg.nrrd``), existing files without ``--overwrite``, the folder (exists,
   is a folder, writable), the name's length;
2. creates and removes a file beside each target right away (the surest test that the folder
   is writable: ``os.access`` says yes to root in a read-only or immutable folder);
3. writes each output, after the work, to a temporary file beside it that keeps the target's
   ending (so the writers in :mod:`scarnet.io` choose the same format) and, only when all are
   written, renames them onto the targets (``os.replace``, atomic per file in the same
   folder). Any failure before that removes every temporary file: nothing is written, and with
   ``--overwrite`` the previous files stay intact;
4. while renaming, moves a file being replaced aside first (a hidden ``.NAME.….tmp.old`` beside
   it, removed once the set is in place), so that a rename that fails undoes the others: the new
   files go and the replaced ones come back. Ctrl-C is held for the few milliseconds the renames
   and their undoing take (on the main thread; delivered right after), so an interrupt never
   leaves half a set either.

Every problem is an :class:`~scarnet.errors.ScarNetError` with one clear line.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError, OutputError, OutputExistsError, ScarNetError
from .io import (
    ITK_WINDOWS_NAMES,
    ONE_FILE_ON_WINDOWS_AND_MACOS,
    _on_windows,
    check_outputs,
    itk_cannot_open,
    output_key,
    remove_temporary,
    replace_failure_reason,
    replace_file,
    replaced_file,
)
from .io import os_error_reason as _reason


@dataclass(frozen=True)
class OutputKind:
    """What an output holds and the file endings it may be written as (first one: the one to suggest)."""

    name: str
    suffixes: tuple[str, ...]


#: Greyscale images: single-file formats only (a detached .nhdr/.mhd header would name its data
#: file after the temporary name). A .seg.nrrd is refused: it would store intensities as labels.
IMAGE = OutputKind("an image", (".nii.gz", ".nii", ".nrrd", ".mha"))
#: Labelmaps 0-4: the image formats, or a Slicer segmentation (io.write_labelmap writes both).
LABELMAP = OutputKind("a labelmap", (".nii.gz", ".nii", ".nrrd", ".mha", ".seg.nrrd"))
SEGMENTATION = OutputKind("a Slicer segmentation", (".seg.nrrd",))
REPORT = OutputKind("a report", (".json", ".csv"))
#: The AHA bullseye picture (scarnet.bullseye).
PICTURE = OutputKind("an SVG picture", (".svg",))
#: The printable report page (scarnet.report_html).
HTML_REPORT = OutputKind("an HTML report", (".html",))
#: A DICOM Segmentation object (scarnet.dicom_seg).
DICOM_SEG = OutputKind("a DICOM segmentation", (".dcm",))
#: Figures as JSON (evaluate --json, bench --json) and as a Markdown table (evaluate --markdown).
JSON_FIGURES = OutputKind("a JSON file", (".json",))
MARKDOWN = OutputKind("a Markdown table", (".md",))

#: Every ending any kind knows, longest first, so that "x.seg.nrrd" is a .seg.nrrd and not a .nrrd.
_KNOWN_SUFFIXES = tuple(sorted({s for kind in (IMAGE, LABELMAP, SEGMENTATION, REPORT, PICTURE, HTML_REPORT, DICOM_SEG,
                                                MARKDOWN) for s in kind.suffixes}, key=len, reverse=True))
#: Characters of the target's name kept in its temporary name: enough to recognise a leftover,
#: short enough that the temporary name (and the writers' own temporary name beside it) never
#: exceeds the file system's limit when the target's name does not.
_TEMP_NAME_CHARS = 40


def _suffix_of(path: Path) -> str:
    """The file ending the format is chosen by (lower case), '' for an unknown one."""
    name = path.name.lower()
    return next((suffix for suffix in _KNOWN_SUFFIXES if name.endswith(suffix) and len(name) > len(suffix)), "")


def check_output_name(path: str | Path, kind: OutputKind, option: str) -> str:
    """Raise :class:`InputError` unless ``path`` ends in one of ``kind``'s endings; return that ending."""
    path = Path(path)
    suffix = _suffix_of(path)
    if suffix not in kind.suffixes:
        allowed = kind.suffixes[0] if len(kind.suffixes) == 1 else \
            f"{', '.join(kind.suffixes[:-1])} or {kind.suffixes[-1]}"
        why = " (a .seg.nrrd is a Slicer segmentation)" if suffix == ".seg.nrrd" else ""
        raise InputError(f"{path}: {option} is {kind.name} and must end in {allowed}{why}")
    return suffix


def _name_max(folder: Path) -> int:
    """The longest file name (in bytes) the file system holding ``folder`` accepts."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows) or no answer: the common limit
        return 255


@functools.lru_cache(maxsize=1)
def _new_file_mode() -> int:
    """Permissions of a newly created file under the process umask (read once: os.umask is process-wide)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@dataclass
class _Output:
    path: Path
    suffix: str
    temp: Path | None = None
    written: bool = False
    #: Where the file goes: ``path``, or the file a link at ``path`` points to (set by :meth:`OutputSet.prepare`).
    target: Path | None = None

    @property
    def destination(self) -> Path:
        return self.target if self.target is not None else self.path


@dataclass
class _Move:
    """One output of :meth:`OutputSet.commit`: its new file (``temp``), its target, and the name the file it
    replaces is moved aside to (None when there was none). What has happened is read from the files
    themselves, so that a failure at any point between two steps is undone correctly."""

    target: Path
    temp: Path
    aside: Path | None = None


def _aside_name(target: Path) -> Path:
    """A new hidden name beside ``target`` for the file it replaces (not created: a rename makes it)."""
    return target.with_name(f".{target.name[:_TEMP_NAME_CHARS]}.{secrets.token_hex(6)}.tmp.old")


def _take_back(moves: list[_Move]) -> tuple[list[Path], list[Path]]:
    """Undo a commit's moves, last first: remove the new files, put the replaced ones back. Returns the files
    moved aside that could not be put back (the user's earlier outputs) and the new files that could not be
    removed, both to be named in the error."""
    kept, left = [], []
    for move in reversed(moves):
        placed = os.path.lexists(move.target) and not os.path.lexists(move.temp)
        try:
            if move.aside is not None and os.path.lexists(move.aside):
                replace_file(move.aside, move.target)  # the earlier file back (over the new one, if placed)
            elif placed:
                move.target.unlink()  # a new file where there was none
        except OSError:
            if move.aside is not None and os.path.lexists(move.aside):
                kept.append(move.aside)
            elif placed:
                left.append(move.target)
    return kept, left


def _stop_signals() -> tuple[int, ...]:
    """The signals that stop a command: Ctrl-C, SIGTERM and, on Windows, Ctrl-Break (SIGBREAK, which the CLI takes
    as it takes SIGTERM)."""
    return (signal.SIGINT, signal.SIGTERM, *((signal.SIGBREAK,) if hasattr(signal, "SIGBREAK") else ()))


class _Held(list):
    """The signals received while :func:`_ctrl_c_held` held them (their numbers), and their handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.handlers: dict[int, Any] = {}

    def pass_on(self) -> None:
        """Call the first signal's handler, as it would have been called unheld (the list is emptied): Python's
        Ctrl-C handler raises KeyboardInterrupt, the CLI's SIGTERM handler its ``Terminated`` (exit status 143)."""
        number = self[0]
        self.clear()
        self.handlers[number](number, None)


@contextlib.contextmanager
def _ctrl_c_held() -> Any:
    """Hold SIGINT (Ctrl-C), and SIGTERM where a Python handler takes it (the CLI's: ``kill``, a scheduler's end of
    job, raise as Ctrl-C does), while the block runs; yields the list the signals received are added to (a
    :class:`_Held`), for the block to act on, and raises at its end for one that came after the block looked.
    Only on the main thread (the only one Python delivers signals to) and where Python's own Ctrl-C handler or a
    SIGTERM handler is installed; elsewhere the list stays empty."""
    received = _Held()
    if threading.current_thread() is threading.main_thread():
        for number in _stop_signals():
            handler = signal.getsignal(number)
            if handler is signal.default_int_handler or (number != signal.SIGINT and callable(handler)):
                received.handlers[number] = handler
    if not received.handlers:
        yield received
        return
    for number in received.handlers:
        signal.signal(number, lambda number, frame: received.append(number))
    try:
        yield received
    finally:
        for number, handler in received.handlers.items():
            signal.signal(number, handler)
    if received:
        received.pass_on()


def _remove_replaced(aside: Path) -> None:
    """Remove a replaced file once the new set is in place; one that cannot be removed (read-only on Windows)
    is said, not an error: the run's outputs are written."""
    try:
        aside.unlink()
    except OSError:
        try:
            os.chmod(aside, 0o600)
            aside.unlink()
        except OSError as error:
            warnings.warn(f"{aside}: the file this run replaced could not be removed ({_reason(error)})",
                          RuntimeWarning, stacklevel=3)


def same_file(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name one file: the same path (after links, in the file system's case), or (both existing)
    the same file on disk. The file number is trusted only where the file system gives one: some network and
    cloud drives on Windows give 0 for every file (CPython issue 78116), which would make all files one."""
    if os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b)):
        return True
    try:
        first, second = os.stat(a), os.stat(b)
    except (OSError, ValueError):
        return False
    return first.st_ino != 0 and (first.st_ino, first.st_dev) == (second.st_ino, second.st_dev)


def check_not_inputs(outputs: Iterable[str | Path | None], inputs: Iterable[str | Path | None]) -> None:
    """Raise :class:`InputError` when an output is one of ``inputs`` (the same file, by any path): even with
    ``overwrite``, which replaces earlier outputs, never what the run reads (an image, one DICOM file of the
    series, a labelmap, weights)."""
    sources = [Path(source) for source in inputs if source is not None]
    for output in (Path(output) for output in outputs if output is not None):
        for source in sources:
            if same_file(output, source):
                named = "" if os.path.abspath(output) == os.path.abspath(source) else f" ({source})"
                raise InputError(f"{output}: is an input of this run{named}, and an output never replaces an input, "
                                 "--overwrite or not: write it elsewhere")


class OutputSet:
    """The files one command writes; use as a context manager (leaving it without :meth:`commit` discards all).

    ``folder``: a folder the outputs go into that the command may create (``demo --out``).
    It is checked up front (its nearest existing parent must be a writable folder) but only
    created by the first :meth:`write`, so a run that fails leaves no empty folder behind.
    """

    def __init__(self, overwrite: bool = False, folder: str | Path | None = None) -> None:
        self.overwrite = overwrite
        self.folder = Path(folder) if folder is not None else None
        self._outputs: list[_Output] = []
        self._created_folders: list[Path] = []
        self._prepared = False

    # ---- before any work -------------------------------------------------------------------
    def add(self, path: str | Path | None, kind: OutputKind, option: str) -> Path | None:
        """Register an output (None: not asked for) after checking its name's ending for ``kind``."""
        if path is None:
            return None
        path = Path(path)
        suffix = check_output_name(path, kind, option)
        if any(os.path.abspath(o.path) == os.path.abspath(path) for o in self._outputs):
            raise InputError(f"{path}: given twice as an output")
        if any(output_key(o.path) == output_key(path) for o in self._outputs):
            raise InputError(f"{path}: given twice as an output ({ONE_FILE_ON_WINDOWS_AND_MACOS})")
        self._outputs.append(_Output(path, suffix))
        return path

    def check_not_inputs(self, inputs: Iterable[str | Path | None]) -> None:
        """:func:`check_not_inputs` for this set's outputs. Call once the inputs are known, before anything is
        written."""
        check_not_inputs([output.path for output in self._outputs], inputs)

    def prepare(self) -> None:
        """Check every output and that its folder is writable; call before any work.

        Raises :class:`OutputExistsError` for an existing file without ``overwrite`` and
        :class:`InputError`/:class:`OutputError` for anything else that would stop the write.
        """
        paths = [output.path for output in self._outputs]
        # Names first: looking up a name longer than the file system allows raises OSError.
        for path in paths:
            self._check_name_length(path)
        for output in self._outputs:  # written by SimpleITK (NIfTI goes through nibabel then; .seg.nrrd never uses it)
            if output.suffix in (".nrrd", ".mha") and itk_cannot_open(output.path):
                raise OutputError(f"{output.path}: cannot be written here: {ITK_WINDOWS_NAMES}")
        if self.folder is not None and not self.folder.is_dir():
            # Nothing more to check in a folder that does not exist yet; probed on the first write.
            self._check_folder_can_be_created(self.folder)
            return
        # Existing files, folders that are files, and a file created and removed in each folder (the
        # surest test that it is writable; the temporary files themselves are made only when
        # written, so a run killed while the model works leaves nothing in the user's folders).
        try:
            check_outputs(paths, self.overwrite)
        except OutputError:
            self.discard()  # a folder made for the first write goes again
            raise
        for output in self._outputs:  # fixed now: the temporary file is made beside it
            output.target = replaced_file(output.path)
        self._prepared = True

    def _check_name_length(self, path: Path) -> None:
        """Every name in ``path`` must fit (the temporary names are kept short on purpose). Windows' file systems
        count a name's UTF-16 units (255), the others its bytes (255 on APFS, ext4)."""
        limit = _name_max(self._nearest_folder(path.parent))
        windows = _on_windows()
        for part in path.parts:
            length = len(part.encode("utf-16-le")) // 2 if windows else len(os.fsencode(part))
            if length > limit:
                what = "file name" if part == path.name else "folder name"
                unit = "characters" if windows else "bytes"
                raise OutputError(f"{path}: {what} too long ({length} {unit}; the file system allows {limit})")

    @staticmethod
    def _nearest_folder(folder: Path) -> Path:
        """``folder`` or its nearest parent that exists (a folder, or a file where a folder was expected)."""
        existing = folder.absolute()
        while existing != existing.parent:
            try:
                if existing.exists():
                    break
            except OSError:  # a name too long to look up: its parent is what exists
                pass
            existing = existing.parent
        return existing

    def _check_folder_can_be_created(self, folder: Path) -> None:
        """``folder`` does not exist (or is not a folder): raise unless it can be made."""
        if folder.exists():
            raise OutputError(f"{folder}: is a file, not a folder")
        existing = self._nearest_folder(folder)
        if not existing.is_dir():
            raise OutputError(f"{folder}: cannot create the folder: {existing} is a file")
        try:  # a real test: os.access says yes to root in a read-only or immutable folder
            os.rmdir(tempfile.mkdtemp(prefix=".scarnet-check.", dir=existing))
        except OSError as error:
            raise OutputError(f"{folder}: cannot create the folder in {existing} ({_reason(error)})") from None

    def _temporary_file(self, output: _Output) -> Path:
        """A new empty file beside ``output``, keeping its ending (the writers choose the format by it)."""
        destination = output.destination
        prefix = f".{destination.name[:_TEMP_NAME_CHARS]}."
        suffix = ".tmp" + output.path.name[-len(output.suffix):]
        try:  # beside the file it becomes: a rename does not cross file systems
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=destination.parent)
        except OSError as error:
            raise OutputError(f"{output.path}: cannot write in {destination.parent} ({_reason(error)})") from None
        os.close(fd)
        return Path(name)

    # ---- after the work ----------------------------------------------------------------------
    def write(self, path: str | Path | None, writer: Callable[[Path], Any]) -> None:
        """Write one registered output: ``writer(temp)`` writes it to its temporary file.

        ``writer`` is called with a file that exists (the empty temporary file), so writers taking an
        ``overwrite`` flag must be given ``overwrite=True``. An :class:`OSError` while writing
        (disk full, quota) becomes an :class:`OutputError`; the commit never happens then.
        """
        if path is None:
            return
        output = next(o for o in self._outputs if o.path == Path(path))
        if not self._prepared:
            self._create_folder()
            self.prepare()
        if output.temp is None:
            output.temp = self._temporary_file(output)
        try:
            writer(output.temp)
        except OSError as error:
            if isinstance(error, OutputExistsError):
                raise
            if isinstance(error, ScarNetError):  # already one clear line (disk full), but about the temporary name
                raise OutputError(str(error).replace(str(output.temp), str(output.path))) from None
            raise OutputError(f"{output.path}: could not be written ({_reason(error)})") from None
        output.written = True

    def _create_folder(self) -> None:
        if self.folder is None or self.folder.is_dir():
            return
        missing = []
        folder = self.folder.absolute()
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                continue  # made meanwhile by someone else: not ours to remove
            except OSError as error:
                raise OutputError(f"{self.folder}: cannot create the folder ({_reason(error)})") from None
            self._created_folders.append(folder)

    def commit(self) -> list[Path]:
        """Move every written output onto its target, all or none; return the targets.

        A file being replaced is first moved aside, so that when a move fails every target is put back
        as it was: the files this run created are removed and the replaced ones restored. Ctrl-C is held
        while the files are moved and undoes the moves too (raising KeyboardInterrupt after).
        """
        unwritten = [str(o.path) for o in self._outputs if not o.written]
        if unwritten:  # a bug in the command, not a user error
            raise RuntimeError(f"outputs never written: {', '.join(unwritten)}")
        if not self.overwrite:
            for output in self._outputs:
                if os.path.lexists(output.path):
                    raise OutputExistsError(f"{output.path}: appeared while running "
                                            "(pass --overwrite to replace it; overwrite=True in Python)")
        moves: list[_Move] = []
        output = None
        with _ctrl_c_held() as interrupted:
            try:
                for output in self._outputs:
                    target = output.destination
                    if target.is_dir() and not target.is_symlink():
                        raise OutputError(f"{output.path}: is a folder (appeared while running)")
                    if not self.overwrite and os.path.lexists(output.path):
                        raise OutputExistsError(f"{output.path}: appeared while running (pass --overwrite to replace "
                                                "it)")
                    # mkstemp makes owner-only (0600) files; give the output the mode a plain open()
                    # would (or keep the mode of the file it replaces).
                    mode = (target.stat().st_mode & 0o7777) if target.exists() else _new_file_mode()
                    os.chmod(output.temp, mode)
                    move = _Move(target, output.temp)
                    moves.append(move)
                    if os.path.lexists(target):
                        move.aside = _aside_name(target)
                        replace_file(target, move.aside)
                    replace_file(output.temp, target)
                if interrupted:  # Ctrl-C while the files were moved: none of them, as the user asked to stop
                    interrupted.pass_on()
            except BaseException as error:  # also a KeyboardInterrupt raised inside: never a half set
                kept, left = _take_back(moves)
                if not isinstance(error, OSError) or isinstance(error, ScarNetError):  # said already
                    raise
                where = (f"; the earlier files are kept as {', '.join(map(str, kept))}" if kept else "") + \
                        (f"; new files left: {', '.join(map(str, left))}" if left else "")
                raise OutputError(f"{output.path}: could not be moved into place "
                                  f"({replace_failure_reason(error, output.destination)}){where}") from None
            for move in moves:  # still held: an interrupt now would leave a replaced file hidden beside its target
                if move.aside is not None:
                    _remove_replaced(move.aside)
        written = [output.path for output in self._outputs]  # the names given, links included
        self._outputs.clear()
        self._created_folders.clear()
        return written

    def discard(self) -> None:
        """Remove every temporary file, and the folders this set created (when empty)."""
        for output in self._outputs:
            if output.temp is not None:
                remove_temporary(output.temp)  # also one made read-only (Windows refuses to delete it as it is)
                output.temp = None
            output.written = False
        self._prepared = False
        for folder in reversed(self._created_folders):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (someone else's file): keep it and its parents
        self._created_folders.clear()

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()
