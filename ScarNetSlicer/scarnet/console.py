"""The ``scarnet`` console script and ``python -m scarnet``: the process around :func:`scarnet.cli.main`.

Apart from :mod:`scarnet.cli` so that it is in place before the command line is imported. Ctrl-C and SIGTERM
(``kill``, ``timeout``, a scheduler's end of job) end a run with one line and the status a shell gives the signal,
130 or 143, never a traceback, at any moment:

- while the command line is imported and its options read (argparse, rich: the first 50 ms or so of every run),
  where a Ctrl-C printed a traceback and SIGTERM ended the process without a word;
- in a weakref callback or a ``__del__`` (an import's module lock: numpy's, torch's imports run many), where
  Python cannot raise the interrupt: it printed "Exception ignored in: ... KeyboardInterrupt" and the command went
  on as if nothing had happened. The interrupt is raised again in the code that called them
  (:func:`_on_unraisable`);
- once the command is over (its result written and printed), a Ctrl-C is ignored and SIGTERM ends the process
  at once, rather than break into Python's shutdown halfway (a traceback from an ``atexit`` function).

What it cannot take: a signal before this module runs (Python's start-up and the console script's first lines,
about 25 ms on the 2-core test machine) is Python's: before Python has set its handler the signal ends the process
without a word (a shell still reports 130 or 143), after it Ctrl-C is a KeyboardInterrupt traceback.

It also keeps matplotlib (which MONAI imports: ``scarnet train``) from writing its warnings about a configuration
folder it cannot make (a read-only or missing home) into the command's output: :func:`_private_matplotlib_folder`.
"""

from __future__ import annotations

import os
import signal
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: this module must load in no time (see above)
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, NoReturn

#: The exit statuses after Ctrl-C (SIGINT) and SIGTERM: 128 + the signal's number, as a shell reports a process the
#: signal ended (docs/cli.md), so that a workflow manager tells "killed" from "failed".
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a batch scheduler's end of job), raised where Ctrl-C raises
    KeyboardInterrupt, so that the same clean-up runs; the command then ends with :data:`EXIT_TERMINATED`,
    which a scheduler or workflow manager (Nextflow's ``errorStrategy``) reads as killed, not as failed."""


def interrupted_status(interrupt: KeyboardInterrupt) -> int:
    """The exit status after ``interrupt``: 143 for SIGTERM, 130 for Ctrl-C."""
    return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED


def interrupted_text(interrupt: KeyboardInterrupt) -> str:
    """The start of the line an interrupted run prints: "scarnet: interrupted", "(SIGTERM)" added for SIGTERM."""
    return f"scarnet: interrupted{' (SIGTERM)' if isinstance(interrupt, Terminated) else ''}"


def terminate_signals() -> tuple[int, ...]:
    """The signals taken as :class:`Terminated`: SIGTERM and, on Windows, Ctrl-Break (SIGBREAK; Windows never
    delivers SIGTERM: its ``kill`` ends a process outright)."""
    return (signal.SIGTERM, *((signal.SIGBREAK,) if hasattr(signal, "SIGBREAK") else ()))


def raise_terminated(signum: int, frame: FrameType | None) -> None:
    """The handler of :func:`terminate_signals`: raises :class:`Terminated`, as Python's raises KeyboardInterrupt."""
    raise Terminated


#: The interrupts (their classes) that struck where Python could not raise them, to raise again (_on_unraisable).
_lost_interrupts: list[type[KeyboardInterrupt]] = []
_previous_unraisablehook = sys.unraisablehook


def _on_unraisable(unraisable: Any) -> None:
    """``sys.unraisablehook`` of a run. A Ctrl-C or SIGTERM whose handler ran inside a weakref callback or a
    ``__del__`` raised its exception there, where Python can only print it (a traceback) and go on: the command
    would not stop. Raised again instead, by :func:`_raise_lost_interrupt`, at the next call or return outside this
    function. A signal that came as its handler was being changed (:func:`_command_over`: Python's "Signal 2
    ignored due to race condition") is ignored quietly, as meant. Anything else goes to Python's hook."""
    error = unraisable.exc_value
    if isinstance(error, KeyboardInterrupt) and sys.getprofile() in (None, _raise_lost_interrupt):
        _lost_interrupts.append(type(error))
        sys.setprofile(_raise_lost_interrupt)  # this thread's: signals come to the main one
        return
    if isinstance(error, OSError) and "ignored due to race condition" in str(error):
        return
    _previous_unraisablehook(unraisable)


def _raise_lost_interrupt(frame: FrameType, event: str, arg: object) -> None:
    """A profile function (``sys.setprofile``) set by :func:`_on_unraisable`: raises the interrupt it kept at the
    first call or return outside it, once. Should that be in a callback again, it comes back there and tries anew."""
    if frame.f_code is _on_unraisable.__code__ or not _lost_interrupts:
        return
    sys.setprofile(None)
    raise _lost_interrupts.pop()()


def _command_over() -> None:
    """From here the command is over: a Ctrl-C is ignored and SIGTERM ends the process at once (the status a
    shell reports is still 143), rather than interrupt Python's shutdown (torch's takes most of a second) halfway."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where it was ignored from the start
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    for number in terminate_signals():
        signal.signal(number, signal.SIG_DFL)


def _writable_or_makeable(folder: str) -> bool:
    """Whether ``folder`` is one this process may write in, or may make (``mkdir -p``, as matplotlib does): its
    nearest existing ancestor is a folder it may write in. Nothing is made."""
    path = os.path.abspath(folder)
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def _matplotlib_folders() -> list[str]:
    """The configuration and cache folders matplotlib would use (``matplotlib.get_configdir``, ``get_cachedir``),
    found as it finds them, without importing it."""
    if os.environ.get("MPLCONFIGDIR"):
        return [os.environ["MPLCONFIGDIR"]]
    home = os.path.expanduser("~")
    if home == "~":  # no home at all: matplotlib would fail to find one
        return []
    if sys.platform.startswith(("linux", "freebsd")):
        return [os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"), "matplotlib"),
                os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"), "matplotlib")]
    return [os.path.join(home, ".matplotlib")]


def _private_matplotlib_folder() -> str | None:
    """Where matplotlib could not write its configuration and font cache (a read-only or missing home, a read-only
    ``~/.config``), a temporary folder of the run's own as ``MPLCONFIGDIR``: matplotlib made one too, but said so in
    two warnings to stderr ("mkdir -p failed for path ...", "Matplotlib created a temporary cache directory ...")
    that read as the command's. Returns the folder (removed by the run at its end), or None where nothing was set."""
    folders = _matplotlib_folders()
    if folders and all(_writable_or_makeable(folder) for folder in folders):
        return None
    import tempfile

    try:
        folder = tempfile.mkdtemp(prefix="scarnet-matplotlib-")
    except OSError:  # no temporary folder either: matplotlib's own message then says what to set
        return None
    os.environ["MPLCONFIGDIR"] = folder
    return folder


def _print_interrupted(interrupt: KeyboardInterrupt) -> None:
    """The one line of an interrupt the command did not report itself (before it or after it)."""
    import contextlib

    with contextlib.suppress(OSError, ValueError, AttributeError):  # no stderr (pythonw), or its reader gone
        print(interrupted_text(interrupt), file=sys.stderr)


def run() -> NoReturn:
    """The ``scarnet`` console script and ``python -m scarnet``: :func:`scarnet.cli.main`, then exit with its code.

    After ``segment`` the process ends with ``os._exit`` once stdout and stderr are flushed: Python's shutdown with
    torch loaded takes 0.6–0.8 s on the 2-core test machine, 6–9 % of a cold ``scarnet segment``, and by then every
    output is written and closed. Other commands end the usual way (training's data-loader processes, the
    benchmark's temporary folders), as does any program that calls :func:`scarnet.cli.main` itself.
    """
    global _previous_unraisablehook
    if sys.unraisablehook is not _on_unraisable:
        _previous_unraisablehook = sys.unraisablehook
        sys.unraisablehook = _on_unraisable
    for number in terminate_signals():
        signal.signal(number, raise_terminated)  # until the command line's own (cli._terminate_as_interrupt)
    matplotlib_folder = None
    at_once = False
    try:
        try:
            matplotlib_folder = _private_matplotlib_folder()
            from . import cli  # the command line's imports: a Ctrl-C here is caught below

            code: Any = cli.main()
            at_once = cli._nothing_left_to_do
            _command_over()  # in the try: a signal before it has taken effect is still an interrupt
        except KeyboardInterrupt as interrupt:  # not reported by the command (before or after it ran)
            _command_over()
            _print_interrupted(interrupt)
            code = interrupted_status(interrupt)
            at_once = False
        except SystemExit as exit_:  # argparse's: --help, --version, a bad option
            _command_over()
            code = exit_.code
    finally:
        if matplotlib_folder is not None:
            import shutil

            shutil.rmtree(matplotlib_folder, ignore_errors=True)
    if at_once:
        import contextlib

        for stream in (sys.stdout, sys.stderr):
            # A reader gone (`| head`) or no console (pythonw): nothing more can reach it anyway.
            with contextlib.suppress(OSError, ValueError, AttributeError):
                stream.flush()
        os._exit(code)
    sys.exit(code)
