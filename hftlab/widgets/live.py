"""The live loop: a view redraws itself in a background thread, and stops by itself.

A live view runs `Live`, which calls its ``step`` every ``interval`` seconds in a daemon
thread, so the learner can keep working in the notebook meanwhile. The loop has a stop
button and stops itself after `DURATION` seconds; with ``HFTLAB_HEADLESS=1`` (the test
runs, where nobody watches) it stops after `HEADLESS_FRAMES` frames instead.

A background thread never prints (the output would land in whichever cell runs at the
time): an error ends the loop and is shown in the loop's status line, and kept in
``.error``. While a loop runs it alone sets its widgets' values: values set from two
threads can reach the browser out of order, and the page then keeps showing the older one.
"""

from __future__ import annotations

import html
import os
import threading
import time

import ipywidgets as W

__all__ = ["Live", "DURATION", "HEADLESS_FRAMES", "headless"]

DURATION = 180.0  # seconds a live view runs in JupyterLab before it stops itself
HEADLESS_FRAMES = 8  # frames a live view draws when HFTLAB_HEADLESS=1, then stops


def headless() -> bool:
    """True in test runs (HFTLAB_HEADLESS=1): nobody watches, so loops are bounded."""
    return os.environ.get("HFTLAB_HEADLESS", "") not in ("", "0")


class Live:
    """Call `step` every `interval` seconds in a daemon thread, until stopped.

    The loop ends by itself after `duration` seconds (or `HEADLESS_FRAMES` frames when
    headless), when the stop button is pressed, when `stop()` is called, or when `step`
    raises (the error is kept in `.error` and shown in the status line, never printed).
    `on_stop` is called in the loop's thread once it has ended (a view releases the book).
    """

    def __init__(self, step, interval: float, name: str = "live view", on_stop=None):
        self.step, self.interval, self.name, self.on_stop = step, interval, name, on_stop
        self.frames = 0
        self.error = None
        self._thread = None
        self._stopping = threading.Event()
        self.button = W.Button(description="stop", icon="stop", button_style="warning",
                               tooltip=f"stop the {name}", layout=W.Layout(width="80px"))
        self.button.on_click(lambda _: self.stop())
        self.status = W.HTML()
        self.box = W.HBox([self.button, self.status])

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, duration: float | None = None, frames: int | None = None) -> "Live":
        """Run for `duration` seconds (default DURATION), at most `frames` frames."""
        if self.running:
            return self
        if frames is None and headless():
            frames = HEADLESS_FRAMES
        duration = DURATION if duration is None else duration
        self._stopping.clear()
        self.error = None
        self.frames = 0
        self.button.disabled = False
        self.status.value = f"live for {duration:g} s" + (f" or {frames} frames" if frames else "")
        self._thread = threading.Thread(target=self._run, args=(duration, frames),
                                        name=f"hftlab {self.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self, duration, frames) -> None:
        end = time.monotonic() + duration
        why = f"stopped after {duration:g} s"
        while True:
            if self._stopping.is_set():
                why = "stopped"
                break
            if frames is not None and self.frames >= frames:
                why = f"stopped after {frames} frames (headless)"
                break
            if time.monotonic() >= end:
                break
            began = time.monotonic()
            try:
                self.step()
            except Exception as exc:  # shown, not printed: this is a background thread
                self.error = exc
                why = f"stopped by an error: {html.escape(str(exc))}"
                break
            self.frames += 1
            self._stopping.wait(max(0.0, self.interval - (time.monotonic() - began)))
        self.button.disabled = True
        self.status.value = f"<i>{why} ({self.frames} frames)</i>"
        if self.on_stop is not None:
            try:
                self.on_stop()
            except Exception as exc:
                self.error = self.error or exc

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to end and wait for it (at most `timeout` seconds)."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the loop ends by itself; True if it has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running
