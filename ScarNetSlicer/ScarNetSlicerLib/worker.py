"""Run one job in a background thread and talk to it through a queue (pure Python, no Qt).

Why a thread in Slicer's own process rather than a separate process:

* **Warm model.** The engine caches the loaded model per process (``scarnet.inference.get_model``).
  In Slicer's process it stays loaded between clicks, so the second "Segment scar" pays no
  start-up or weight loading; a subprocess would pay both on every run, and the speed targets
  are for a warm in-process model.
* **Responsive GUI.** PyTorch, numpy and scipy release the GIL while they compute, so the Qt
  event loop keeps running: the progress bar moves and Cancel can be clicked.
* **Safe scene.** The job gets numpy arrays only and never touches MRML. Its result is applied to
  the scene on the main thread (Qt timer → :meth:`BackgroundTask.poll` → apply). A cancelled or
  failed job's result is dropped, so Cancel leaves the scene exactly as it was.

This is the pattern of Slicer's own SimpleFilters module (a ``threading.Thread`` plus a queue that a
Qt timer drains on the main thread). A ``QThread`` would add nothing here: the job never talks to Qt.

The same :class:`BackgroundTask` runs synchronously with :meth:`BackgroundTask.run_here` for
scripts (``waitForCompletion=True``), so both paths share one code path.
"""

from __future__ import annotations

import enum
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

ProgressCallback = Callable[[float, str], None]
CancelCheck = Callable[[], bool]
#: A job: ``job(progress, should_cancel) -> result``. It must not touch MRML or Qt.
Job = Callable[[ProgressCallback, CancelCheck], T]


class TaskState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Progress:
    """One progress message from the job: ``fraction`` in [0, 1] and what it is doing."""

    fraction: float
    message: str


class BackgroundTask(Generic[T]):
    """One job, run once: in a daemon thread (:meth:`start`) or in the caller's thread (:meth:`run_here`).

    The main thread calls :meth:`poll` (from a QTimer in the GUI) to collect progress messages
    and learns the outcome from :attr:`state`, :attr:`result` and :attr:`error` once
    :attr:`finished` is true. :meth:`cancel` only sets a flag: the job sees it through
    ``should_cancel()`` and stops at its next check (the engine raises ``Cancelled`` there).
    """

    def __init__(self, job: Job, name: str = "ScarNetSlicer job") -> None:
        self._job = job
        self._name = name
        self._queue: queue.SimpleQueue[Progress] = queue.SimpleQueue()
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = TaskState.PENDING
        self.result: T | None = None
        self.error: BaseException | None = None

    # -- called from the job's thread -------------------------------------------------------
    def _progress(self, fraction: float, message: str) -> None:
        self._queue.put(Progress(max(0.0, min(1.0, float(fraction))), str(message)))

    def should_cancel(self) -> bool:
        """True once :meth:`cancel` was called (the job's ``should_cancel``)."""
        return self._cancel.is_set()

    def _run(self) -> None:
        self.state = TaskState.RUNNING
        try:
            result = self._job(self._progress, self.should_cancel)
        except BaseException as error:  # handed to the main thread, never lost
            if self._cancel.is_set():
                self.state = TaskState.CANCELLED
            else:
                self.error = error
                self.state = TaskState.FAILED
        else:
            if self._cancel.is_set():
                # Finished after Cancel was clicked: the user asked for nothing to change.
                self.state = TaskState.CANCELLED
            else:
                self.result = result
                self.state = TaskState.SUCCEEDED
        finally:
            self._finished.set()

    # -- called from the main thread --------------------------------------------------------
    def start(self) -> None:
        """Run the job in a background (daemon) thread; returns at once."""
        if self.state is not TaskState.PENDING:
            raise RuntimeError(f"{self._name}: already started")
        self.state = TaskState.RUNNING
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    @property
    def ran_in_background(self) -> bool:
        """True when the job was started in a thread (:meth:`start`): the scene could change while it ran. A job
        run here (:meth:`run_here`) held the calling thread, and so the scene, until it ended."""
        return self._thread is not None

    def run_here(self) -> T | None:
        """Run the job in the calling thread; return its result or raise its error (None if cancelled)."""
        if self.state is not TaskState.PENDING:
            raise RuntimeError(f"{self._name}: already started")
        self._run()
        if self.state is TaskState.FAILED and self.error is not None:
            raise self.error
        return self.result

    def cancel(self) -> None:
        """Ask the job to stop; its result, if any arrives, will be dropped.

        That holds even when the job has already finished but its outcome was not collected yet
        (the GUI polls on a timer): :meth:`outcome` then returns None.
        """
        self._cancel.set()
        if self.finished:  # the job's thread has stopped writing: say what will happen to the result
            self.state = TaskState.CANCELLED
            self.result = None

    def poll(self) -> list[Progress]:
        """Progress messages since the last call, oldest first (never blocks)."""
        messages = []
        while True:
            try:
                messages.append(self._queue.get_nowait())
            except queue.Empty:
                return messages

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (or ``timeout`` seconds); True when finished.

        The wait releases the GIL. Slicer's GUI waits a little in every poll: its main thread
        otherwise holds the GIL while idle, and the job's thread would barely run.
        """
        return self._finished.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    @property
    def running(self) -> bool:
        return self.state is TaskState.RUNNING and not self.finished

    def outcome(self) -> Any:
        """After the job finished: its result (SUCCEEDED), None (CANCELLED), or raise its error (FAILED).

        Once :meth:`cancel` was called it is None whatever the job did: the user asked for nothing
        to change, and a job may finish between its last ``should_cancel()`` and the click.
        """
        if not self.finished:
            raise RuntimeError(f"{self._name}: still running")
        if self._cancel.is_set():
            return None
        if self.state is TaskState.FAILED and self.error is not None:
            raise self.error
        return self.result if self.state is TaskState.SUCCEEDED else None


__all__ = ["BackgroundTask", "CancelCheck", "Job", "Progress", "ProgressCallback", "TaskState"]
