"""The ``scarnet`` process as a user, a scheduler or a terminal ends it: Ctrl-C and SIGTERM at any moment end it
with one line and 130 or 143 (never a traceback, never an interrupt lost), a training run's loading processes
leave no ``pymp-*`` folder, and a home matplotlib cannot write in puts no matplotlib warning into the output.

Real processes, started as the console script pip writes for pyproject.toml's entry point (or ``python -m
scarnet``), so that what runs before the command line is imported is what a user runs."""

from __future__ import annotations

import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import scarnet

PACKAGE = Path(scarnet.__file__).resolve().parent
PYPROJECT = PACKAGE.parents[1] / "pyproject.toml"
PHANTOM = ("phantom", "--seed", "3", "--slices", "4", "--out", "p.nii.gz")
#: The one line of each signal, and the status a shell reports a process it ended with (128 + its number).
ENDINGS = {signal.SIGINT: (130, "scarnet: interrupted"), signal.SIGTERM: (143, "scarnet: interrupted (SIGTERM)")}


def console_script() -> str:
    """The ``scarnet`` console script as pip writes it for the entry point pyproject.toml names (the installed one
    may be older than the checkout)."""
    match = re.search(r'^scarnet\s*=\s*"([\w.]+):(\w+)"', PYPROJECT.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, "pyproject.toml names no 'scarnet' console script"
    module, function = match.groups()
    return (f"import re\nimport sys\nfrom {module} import {function}\nif __name__ == '__main__':\n"
            f"    sys.argv[0] = 'scarnet'\n    sys.exit({function}())\n")


#: Code run first in the process: signal ``number`` to the process itself when ``target`` starts to be imported,
#: from a ``__del__`` where ``in_del`` (Python runs the handler there, and can only print what it raises).
SIGNAL_ON_IMPORT = """
import os, sys

class _SignalInDel:
    def __del__(self):
        os.kill(os.getpid(), {number})
        for _ in range(100_000):  # the handler runs in this loop, inside __del__
            pass

class _SignalOnImport:
    done = False

    def find_spec(self, name, path=None, target=None):
        if name == {target!r} and not self.done:
            self.done = True
            if {in_del}:
                _SignalInDel()  # dropped at once: __del__ runs here
            else:
                os.kill(os.getpid(), {number})
        return None

sys.meta_path.insert(0, _SignalOnImport())
"""


def _ctrl_c_as_in_a_terminal() -> None:
    """``preexec_fn`` of the processes started here: SIGINT at its default, whatever this test run inherited (a
    shell's background job ignores it, and so would the processes started from it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


#: How the processes are started: with Ctrl-C as in a terminal (POSIX; Windows has no preexec_fn).
START = {} if sys.platform == "win32" else {"preexec_fn": _ctrl_c_as_in_a_terminal}


def _outcome(result: subprocess.CompletedProcess) -> str:
    return f"status {result.returncode}\nstderr:\n{result.stderr}\nstdout:\n{result.stdout[-2000:]}"


@pytest.mark.skipif(sys.platform == "win32", reason="os.kill with SIGTERM ends a Windows process outright")
@pytest.mark.parametrize("number, target, in_del, entry", [
    # While the command line is imported (argparse, rich…): the first tens of milliseconds of every run.
    (signal.SIGINT, "scarnet.cli", False, "script"),
    (signal.SIGTERM, "scarnet.cli", False, "script"),
    (signal.SIGINT, "scarnet.cli", False, "-m"),
    # While the command imports its libraries.
    (signal.SIGINT, "numpy", False, "script"),
    (signal.SIGTERM, "numpy", False, "script"),
    # Inside a __del__ (as in an import's module-lock callback): Python printed "Exception ignored in ...
    # KeyboardInterrupt" and the command went on to write its files.
    (signal.SIGINT, "scarnet.phantom", True, "script"),
    (signal.SIGTERM, "scarnet.phantom", True, "script"),
])
def test_a_signal_while_the_command_is_imported_ends_it_in_one_line(tmp_path, number, target, in_del, entry):
    prelude = SIGNAL_ON_IMPORT.format(number=int(number), target=target, in_del=in_del)
    if entry == "script":
        code = prelude + console_script()
    else:
        code = prelude + "import runpy\nrunpy.run_module('scarnet', run_name='__main__', alter_sys=True)\n"
    result = subprocess.run([sys.executable, "-c", code, *PHANTOM], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, **START)
    status, line = ENDINGS[number]
    assert (result.returncode, result.stderr.splitlines()) == (status, [line]), _outcome(result)
    assert not (tmp_path / "p.nii.gz").exists()


#: Code run first in the process: write "started" to stdout when the command line starts to be imported, from then
#: on the run's (before, Python's start-up and the console script's first lines take a signal as Python does).
STARTED_ON_IMPORT = """
import os, sys

class _StartedOnImport:
    done = False

    def find_spec(self, name, path=None, target=None):
        if name == "scarnet.cli" and not self.done:
            self.done = True
            os.write(1, b"started\\n")
        return None

sys.meta_path.insert(0, _StartedOnImport())
"""


def _started(process: subprocess.Popen, timeout_s: float = 120) -> None:
    """Wait for the run's "started" line (:data:`STARTED_ON_IMPORT`)."""
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    assert ready and process.stdout.readline() == "started\n", "the console script did not start"


@pytest.mark.skipif(sys.platform == "win32", reason="signals to another process are POSIX's")
@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_at_any_moment_of_a_run_ends_it_in_one_line_or_not_at_all(tmp_path, number):
    """A signal after a delay from the start of the command line's import, from 0 to past the command's end: the
    run ends with the signal's one line and status, or, once over, as it would have (a Ctrl-C ignored; SIGTERM
    ends the process at once, which a shell reports as 143 too). The delays are random around fixed steps (the
    seed is in the message), so that runs on a slow or fast machine reach every stage of the command."""
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    code = STARTED_ON_IMPORT + console_script()
    status, line = ENDINGS[number]
    # Once the command is over (its result printed): Ctrl-C ignored (status 0), SIGTERM's default (the process ends).
    statuses_when_over = {0} if number == signal.SIGINT else {0, -signal.SIGTERM}
    outcomes = []
    for step_ms in (0, 1, 3, 10, 30, 100, 300, 1000):
        delay_s = rng.uniform(0.5, 1.5) * step_ms / 1000
        output = tmp_path / f"{step_ms}"
        output.mkdir()
        process = subprocess.Popen([sys.executable, "-c", code, *PHANTOM], cwd=output, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, **START)
        try:
            _started(process)
            time.sleep(delay_s)
            process.send_signal(number)
            stdout, stderr = process.communicate(timeout=300)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        interrupted = process.returncode == status and stderr.splitlines() == [line]
        over = "phantom seed 3:" in stdout and not stderr and process.returncode in statuses_when_over
        outcomes.append(f"{delay_s * 1000:.1f} ms: status {process.returncode}, stderr {stderr!r}")
        assert interrupted or over, f"seed {seed}, after {delay_s * 1000:.1f} ms: status {process.returncode}\n" \
                                    f"{stderr}\n{stdout}"
    # The signal met the command in some runs, not only its end (numpy's and SimpleITK's imports alone take tens of
    # milliseconds on a fast machine).
    assert any(f"status {status}," in outcome for outcome in outcomes), "\n".join(outcomes)


def _blocked_home(tmp_path: Path) -> Path:
    """A home no one can make folders in, root included (it lies below a file)."""
    (tmp_path / "a-file").write_text("")
    return tmp_path / "a-file" / "home"


def _without_matplotlib_settings(**changes: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    return {**environment, **changes}


#: The console script of a command that imports matplotlib (as ``scarnet train`` does through MONAI) and says
#: which folders it uses.
DRAWING_PHANTOM = """
import scarnet.phantom
_make_phantom = scarnet.phantom.make_phantom

def _drawing(*args, **kwargs):
    import matplotlib
    print("matplotlib folders:", matplotlib.get_configdir(), matplotlib.get_cachedir(), flush=True)
    return _make_phantom(*args, **kwargs)

scarnet.phantom.make_phantom = _drawing
"""


@pytest.mark.skipif(sys.platform == "win32", reason="Windows' home is USERPROFILE, not HOME")
@pytest.mark.parametrize("home", ["below a file", "read-only"])
def test_a_home_matplotlib_cannot_write_in_puts_no_warning_into_the_output(tmp_path, home):
    """matplotlib wrote "mkdir -p failed for path ..." and "Matplotlib created a temporary cache directory ..."
    to stderr, unprefixed, as if they were the command's; the run now gives it a folder of its own, removed after."""
    pytest.importorskip("matplotlib")
    if home == "read-only":
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            pytest.skip("root writes in a read-only folder: the home below a file stands for it")
        blocked = tmp_path / "home"
        blocked.mkdir()
        blocked.chmod(0o555)
    else:
        blocked = _blocked_home(tmp_path)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    result = subprocess.run([sys.executable, "-c", DRAWING_PHANTOM + console_script(), *PHANTOM], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, **START,
                            env=_without_matplotlib_settings(HOME=str(blocked), TMPDIR=str(temporary)))
    assert (result.returncode, result.stderr) == (0, ""), _outcome(result)
    folders = result.stdout.split("matplotlib folders:")[1].split()[:2]
    assert all(Path(folder).parent == temporary for folder in folders), result.stdout
    assert list(temporary.iterdir()) == []  # removed at the end of the run


@pytest.mark.skipif(sys.platform == "win32", reason="Windows' home is USERPROFILE, not HOME")
def test_a_home_matplotlib_can_write_in_stays_its_folder(tmp_path):
    """Where matplotlib can keep its configuration and font cache (the usual case), they stay where they are."""
    pytest.importorskip("matplotlib")
    home = tmp_path / "home"
    home.mkdir()
    result = subprocess.run([sys.executable, "-c", DRAWING_PHANTOM + console_script(), *PHANTOM], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300,
                            env=_without_matplotlib_settings(HOME=str(home)))
    assert (result.returncode, result.stderr) == (0, ""), _outcome(result)
    folders = result.stdout.split("matplotlib folders:")[1].split()[:2]
    assert folders == [str(home / ".config" / "matplotlib"), str(home / ".cache" / "matplotlib")]


@pytest.mark.skipif(sys.platform == "win32", reason="process groups and SIGTERM are POSIX's")
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_a_training_run_and_its_loading_processes_leaves_no_pymp_folder(tmp_path, number):
    """A scheduler's end of job (SIGTERM to every process of the run) or Ctrl-C in a terminal (SIGINT to the
    process group) during ``scarnet train --workers 2``: one line, 130 or 143, and no ``pymp-*`` folder of the
    loading processes left in $TMPDIR (after SIGTERM both stayed, and the run ended as an internal
    error, status 3, or with a traceback at its exit). The home is one matplotlib cannot write in (MONAI imports
    it): no matplotlib warning either."""
    pytest.importorskip("torch")
    pytest.importorskip("monai", reason="training needs the train extra (MONAI)")
    pytest.importorskip("PIL", reason="training needs the train extra (pillow)")
    from scarnet.train.loop import SMOKE_CONFIG

    config = {**SMOKE_CONFIG.to_dict(), "steps": 100_000, "val_every": 100_000, "log_every": 100_000}
    (tmp_path / "smoke.json").write_text(json.dumps(config))
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "scarnet", "train", "--config", "smoke.json", "--out", "run", "--quiet", "--workers",
         "2"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env=_without_matplotlib_settings(HOME=str(_blocked_home(tmp_path)), TMPDIR=str(temporary)), **START)
    try:
        deadline = time.monotonic() + 300
        # A loading process makes its folder when it sends its first batch: both at work.
        while len(list(temporary.glob("pymp-*"))) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if process.poll() is not None:
            pytest.fail(f"the run ended before its loading processes sent a batch:\n{process.communicate()[1]}")
        assert len(list(temporary.glob("pymp-*"))) == 2, "the loading processes sent no batch in 5 minutes"
        time.sleep(1.0)
        os.killpg(process.pid, number)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == ENDINGS[number][0], stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scarnet: interrupted"), stderr
    # A loading process the training process stopped may end a moment after it.
    deadline = time.monotonic() + 30
    while list(temporary.glob("pymp-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(path.name for path in temporary.glob("pymp-*")) == []
