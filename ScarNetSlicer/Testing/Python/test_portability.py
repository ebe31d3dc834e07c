"""Windows and macOS rules, tested on any system: the functions that tell which rules apply are replaced.

* Outputs whose names differ only in case or Unicode form are one file on Windows and macOS: refused everywhere.
* SimpleITK on Windows cannot open a name outside ASCII (unless the process's code page is UTF-8, as in Slicer):
  NIfTI is then read and written with nibabel, NRRD/MHA refused in one line (before the work, for outputs).
* Windows refuses to replace a file open in another program (retried for a moment, then said so) and to delete a
  read-only file (a temporary file that took a read-only mode is still removed, and the error stays the real one).
* Windows counts a name's length in UTF-16 units; Ctrl-Break (SIGBREAK) stops a command as SIGTERM does.
"""

from __future__ import annotations

import os
import signal
import stat
import unicodedata
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import scarnet.io as sio
from scarnet.errors import InputError, OutputError
from scarnet.io import check_outputs, read_volume, write_text, write_volume
from scarnet.outputs import IMAGE, LABELMAP, REPORT, OutputSet
from scarnet.volume import Volume


def _volume() -> Volume:
    rng = np.random.default_rng(3)
    return Volume(rng.random((3, 8, 9)).astype(np.float32), (1.5, 1.25, 8.0), (10.0, -20.0, 5.0))


@pytest.fixture
def windows_code_page(monkeypatch):
    """Windows' rules for names SimpleITK opens, with python.exe's code page (not UTF-8)."""
    monkeypatch.setattr(sio, "_on_windows", lambda: True)
    monkeypatch.setattr(sio, "_ansi_code_page_is_utf8", lambda: False)


# ---- names one file on Windows and macOS --------------------------------------------------------------------------
@pytest.mark.parametrize("second", ["REPORT.json", unicodedata.normalize("NFD", "rapport-é.json")])
def test_outputs_differing_only_in_case_or_unicode_form_are_refused(tmp_path, second):
    first = "report.json" if second == "REPORT.json" else unicodedata.normalize("NFC", "rapport-é.json")
    with OutputSet() as outputs:
        outputs.add(tmp_path / first, REPORT, "--report")
        with pytest.raises(InputError, match="given twice as an output .*one file on Windows and macOS"):
            outputs.add(tmp_path / second, REPORT, "--json")
    with pytest.raises(InputError, match="given twice as an output .*one file on Windows and macOS"):
        check_outputs([tmp_path / first, tmp_path / second])


def test_labelmap_and_segmentation_differing_in_case_are_refused(tmp_path):
    """`--labelmap A.seg.nrrd --seg a.seg.nrrd`: on macOS the second replaced the first (with --overwrite)."""
    with OutputSet(overwrite=True) as outputs:
        outputs.add(tmp_path / "A.seg.nrrd", LABELMAP, "--labelmap")
        with pytest.raises(InputError, match="a.seg.nrrd: given twice"):
            outputs.add(tmp_path / "a.seg.nrrd", LABELMAP, "--seg")


# ---- SimpleITK and names outside ASCII on Windows -----------------------------------------------------------------
def test_itk_cannot_open_only_names_outside_ascii_on_windows_without_utf8(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an ASCII folder: the path is made absolute
    monkeypatch.setattr(sio, "_ansi_code_page_is_utf8", lambda: False)
    monkeypatch.setattr(sio, "_on_windows", lambda: False)
    assert not sio.itk_cannot_open("Müller.nrrd")
    monkeypatch.setattr(sio, "_on_windows", lambda: True)
    assert sio.itk_cannot_open("Müller.nrrd")
    assert sio.itk_cannot_open(tmp_path / "患者" / "image.nrrd")  # the folder counts too
    assert not sio.itk_cannot_open("image.nrrd")
    monkeypatch.setattr(sio, "_ansi_code_page_is_utf8", lambda: True)  # Slicer's process, or Windows' UTF-8 setting
    assert not sio.itk_cannot_open("Müller.nrrd")


@pytest.mark.skipif(os.name == "nt", reason="off Windows only")
def test_off_windows_the_code_page_probe_says_no_and_nothing_is_refused():
    sio._ansi_code_page_is_utf8.cache_clear()
    assert sio._ansi_code_page_is_utf8() is False  # no ctypes.windll
    assert not sio.itk_cannot_open("Müller.nrrd")


@pytest.mark.usefixtures("windows_code_page")
def test_nifti_named_outside_ascii_goes_through_nibabel_on_windows(tmp_path, monkeypatch):
    import SimpleITK as sitk

    def no_itk(*args, **kwargs):
        raise AssertionError("SimpleITK was given a name it cannot open on Windows")

    for name in ("WriteImage", "ReadImage"):
        monkeypatch.setattr(sitk, name, no_itk)
    monkeypatch.setattr(sitk, "ImageFileReader", no_itk)
    volume = _volume()
    path = write_volume(volume, tmp_path / "Müller.nii.gz")
    read = read_volume(path)
    np.testing.assert_allclose(read.array, volume.array)
    np.testing.assert_allclose(read.spacing_mm, volume.spacing_mm)
    np.testing.assert_allclose(read.origin_mm, volume.origin_mm, atol=1e-5)


@pytest.mark.usefixtures("windows_code_page")
def test_nrrd_named_outside_ascii_is_refused_in_one_line_on_windows(tmp_path, monkeypatch):
    monkeypatch.setattr(sio, "_on_windows", lambda: False)
    path = write_volume(_volume(), tmp_path / "Müller.nrrd")  # written where SimpleITK can
    monkeypatch.setattr(sio, "_on_windows", lambda: True)
    with pytest.raises(InputError, match="Müller.nrrd: cannot be read here: SimpleITK on Windows cannot open"):
        read_volume(path)
    with pytest.raises(OutputError, match="cannot be written here: SimpleITK on Windows"):
        write_volume(_volume(), tmp_path / "Jürgen.mha")
    assert not (tmp_path / "Jürgen.mha").exists()
    with OutputSet() as outputs:  # before any work
        outputs.add(tmp_path / "Jürgen.nrrd", IMAGE, "--out")
        outputs.add(tmp_path / "Jürgen.seg.nrrd", LABELMAP, "--labelmap")  # slicerio: no SimpleITK
        with pytest.raises(OutputError, match="Jürgen.nrrd: cannot be written here"):
            outputs.prepare()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Müller.nrrd"]


@pytest.mark.usefixtures("windows_code_page")
def test_dicom_pixels_pydicom_cannot_decode_name_the_windows_cause(tmp_path, monkeypatch):
    """A compressed DICOM file pydicom cannot decode goes to GDCM through SimpleITK, which cannot open its name."""
    import SimpleITK as sitk

    from scarnet.dicom import _pixels_with_simpleitk

    monkeypatch.setattr(sitk, "ReadImage", lambda *args: pytest.fail("SimpleITK given a name it cannot open"))
    frame = SimpleNamespace(path=tmp_path / "Müller" / "IM0001", frame=None)
    with pytest.raises(InputError, match=r"series 3: cannot decode the pixels of IM0001 \(no JPEG 2000 decoder\), "
                                         r"and SimpleITK on Windows cannot open"):
        _pixels_with_simpleitk(frame, "series 3", RuntimeError("no JPEG 2000 decoder"))


# ---- replacing and removing files as Windows allows ---------------------------------------------------------------
def _windows_error(winerror: int) -> PermissionError:
    error = PermissionError(13, "Access is denied")
    error.winerror = winerror
    return error


def test_a_rename_refused_for_a_moment_is_tried_again_on_windows(tmp_path, monkeypatch):
    """A virus scanner or the indexer opens a file just written for a moment: Windows then refuses the rename."""
    real_replace = os.replace
    calls = []

    def busy_twice(source, target):
        calls.append(target)
        if len(calls) <= 2:
            raise _windows_error(32)
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", busy_twice)
    monkeypatch.setattr(sio.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(sio, "_on_windows", lambda: True)
    write_text("new", tmp_path / "summary.csv")
    assert (tmp_path / "summary.csv").read_text(encoding="utf-8") == "new"
    assert len(calls) == 3


def test_a_file_open_in_another_program_is_named_as_the_reason(tmp_path, monkeypatch):
    """Excel holds the summary.csv it shows: a run writing it again says so, and leaves no temporary file."""
    (tmp_path / "summary.csv").write_text("old", encoding="utf-8")

    def held(source, target):
        raise _windows_error(5)

    monkeypatch.setattr(os, "replace", held)
    monkeypatch.setattr(sio.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(sio, "_on_windows", lambda: True)
    with pytest.raises(OutputError, match=r"summary.csv: could not be written \(Access is denied; is the file open in "
                                          r"another program, such as Excel"):
        write_text("new", tmp_path / "summary.csv", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["summary.csv"]
    assert (tmp_path / "summary.csv").read_text(encoding="utf-8") == "old"


def test_off_windows_a_refused_rename_is_not_tried_again(tmp_path, monkeypatch):
    calls = []

    def refused(source, target):
        calls.append(target)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(OutputError, match=r"out.json: could not be written \(Permission denied\)$"):
        write_text("{}", tmp_path / "out.json")
    assert len(calls) == 1


@pytest.mark.skipif(os.name == "nt", reason="imitates Windows' rule on a POSIX system")
def test_a_read_only_temporary_file_is_removed_and_the_real_error_said(tmp_path, monkeypatch):
    """Replacing a read-only file (--overwrite): the temporary file takes its mode; Windows refuses the rename onto a
    read-only file, and then refused to delete the read-only temporary file, which ended as an internal error."""
    target = tmp_path / "report.json"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o444)
    real_unlink = Path.unlink

    def windows_unlink(self, missing_ok=False):
        if self.exists() and not self.stat().st_mode & stat.S_IWRITE:
            raise PermissionError(13, "Access is denied")
        real_unlink(self, missing_ok=missing_ok)

    def windows_replace(source, target):
        raise _windows_error(5)

    monkeypatch.setattr(Path, "unlink", windows_unlink)
    monkeypatch.setattr(os, "replace", windows_replace)
    monkeypatch.setattr(sio.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(sio, "_on_windows", lambda: True)
    with pytest.raises(OutputError, match=r"report.json: could not be written \(Access is denied; the file is "
                                          r"read-only\)"):
        write_text("new", target, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_name_length_counts_utf16_units_on_windows(tmp_path, monkeypatch):
    """NTFS allows 255 UTF-16 units: 200 'é' (400 bytes in UTF-8) fit on Windows; on Linux and macOS they do not."""
    name = "é" * 200 + ".json"
    outputs = OutputSet()
    with pytest.raises(OutputError, match=r"file name too long \(405 bytes"):
        outputs._check_name_length(tmp_path / name)
    monkeypatch.setattr("scarnet.outputs._on_windows", lambda: True)
    outputs._check_name_length(tmp_path / name)
    with pytest.raises(OutputError, match=r"file name too long \(260 characters"):
        outputs._check_name_length(tmp_path / ("é" * 255 + ".json"))


# ---- Ctrl-Break on Windows ------------------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="SIGUSR1 stands in for Windows' SIGBREAK")
def test_ctrl_break_stops_a_command_as_sigterm_does(tmp_path, monkeypatch):
    """Windows has no SIGTERM to deliver (its kill ends a process outright); Ctrl-Break is SIGBREAK, which by default
    ended the process without its clean-up: hidden temporary files left beside the outputs."""
    from scarnet.cli import Terminated, _terminate_as_interrupt
    from scarnet.outputs import _ctrl_c_held

    monkeypatch.setattr(signal, "SIGBREAK", signal.SIGUSR1, raising=False)
    before = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(Terminated), _terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGUSR1)
    with pytest.raises(Terminated), _terminate_as_interrupt(), _ctrl_c_held() as received:
        os.kill(os.getpid(), signal.SIGUSR1)  # held while files are moved, then passed on
        assert received == [signal.SIGUSR1]
    assert signal.getsignal(signal.SIGUSR1) is before
