"""Showing a launch while it happens: builds take minutes and users must see why.

In a notebook (an ipykernel shell) one display updates in place and ends as a
short summary; anywhere else (terminal IPython, the CLI, no IPython at all) a
single line on stderr is rewritten with ``\\r``. With ``show_log`` every build
log line is printed as it arrives.
"""

from __future__ import annotations

import html
import re
import shutil
import sys
import time
from types import TracebackType
from typing import Any, TextIO

from .binderhub import BinderLaunch, BuildEvent, BuildLog
from .spec import RepoSpec

_SHA = re.compile(r"[0-9a-f]{40}")


class LaunchProgress:
    """Callback for BinderHubLauncher.launch that renders progress; use as a context manager.

    ``with LaunchProgress(spec, hub) as progress: progress.done(launcher.launch(spec, progress))``
    ends with a summary, or with a "failed" line when the launch raises.
    """

    def __init__(
        self,
        spec: RepoSpec,
        hub: str,
        show_log: bool = False,
        stream: TextIO | None = None,
        min_interval: float = 0.2,
    ) -> None:
        self.spec = spec
        self.hub = hub
        self.show_log = show_log
        self.min_interval = min_interval  # a build sends thousands of events; redraw at most this often
        self.started = time.monotonic()
        self.phase = "starting"
        self.build_log = BuildLog()
        self._view: _View = _NotebookView() if _in_notebook() else _TerminalView(stream or sys.stderr)
        self._shown_at = 0.0

    def __enter__(self) -> LaunchProgress:
        self._draw(force=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if error is not None:
            self.failed(error)

    def __call__(self, event: BuildEvent) -> None:
        """Take one event of the launch."""
        force = event.phase not in ("", "failed", self.phase)  # a failure is told by failed(), in the phase it hit
        if force:
            self.phase = event.phase
        lines = self.build_log.feed(event.message)
        if self.show_log:
            for line in lines:
                self._view.log(line)
        self._draw(force or (self.show_log and bool(lines)))

    def done(self, launch: BinderLaunch) -> None:
        """End with a short summary: repo, ref, hub, launch time."""
        if self.show_log:
            for line in self.build_log.close():
                self._view.log(line)
        self._view.close(*summary(launch))

    def failed(self, error: BaseException) -> None:
        """End with a short line; the error itself is shown by whoever catches it."""
        why = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        text = f"Binder launch of {self.spec.label} {why} after {self.elapsed:.0f} s ({self.phase})."
        self._view.close(text, html.escape(text))

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _draw(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._shown_at < self.min_interval:
            return
        self._shown_at = now
        latest = self.build_log.latest
        text = f"Binder [{self.phase} {self.elapsed:.0f} s] {self.spec.label}"
        markup = (
            f"Binder <code>{html.escape(self.spec.label)}</code> on {html.escape(self.hub)}: "
            f"<b>{html.escape(self.phase)}</b> {self.elapsed:.0f} s"
        )
        if latest:
            text += f": {latest}"
            markup += f"<br><code style=\"opacity:0.7\">{html.escape(latest[:200])}</code>"
        self._view.show(text, markup)


def summary(launch: BinderLaunch) -> tuple[str, str]:
    """``Binder ready in 12 s: org/repo @ HEAD (1479e02) on https://hub/`` as text and HTML."""
    spec = launch.spec
    resolved = launch.binder_persistent_request.rstrip("/").rsplit("/", 1)[-1]
    commit = f" ({resolved[:7]})" if _SHA.fullmatch(resolved) and resolved != spec.ref else ""
    what = f"{spec.label}{commit}"
    text = f"Binder ready in {launch.launch_seconds:.1f} s: {what} on {launch.hub}"
    markup = (
        f"<b>Binder ready</b> in {launch.launch_seconds:.1f} s: <code>{html.escape(what)}</code> "
        f"on <a href=\"{html.escape(launch.hub)}\" target=\"_blank\">{html.escape(launch.hub)}</a>"
    )
    return text, markup


def _in_notebook() -> bool:
    """True inside an ipykernel shell, the only place where a display can update in place."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class _View:
    def show(self, text: str, markup: str) -> None:
        raise NotImplementedError

    def log(self, line: str) -> None:
        raise NotImplementedError

    def close(self, text: str, markup: str) -> None:
        raise NotImplementedError


class _NotebookView(_View):
    """One output that updates in place (``display_id``); log lines go to stdout below it."""

    def __init__(self) -> None:
        self._handle: Any = None

    def show(self, text: str, markup: str) -> None:
        from IPython.display import display

        bundle = {"text/plain": text, "text/html": markup}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)

    def log(self, line: str) -> None:
        sys.stdout.write(line + "\n")

    def close(self, text: str, markup: str) -> None:
        self.show(text, markup)


class _TerminalView(_View):
    """A single status line on ``stream``, rewritten in place with ``\\r``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._width = 0  # what is on screen now, to blank it out

    def show(self, text: str, markup: str) -> None:
        columns = shutil.get_terminal_size().columns - 1
        line = text[:columns]
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def log(self, line: str) -> None:
        self.stream.write("\r" + line.ljust(self._width) + "\n")
        self._width = 0

    def close(self, text: str, markup: str) -> None:
        self.stream.write("\r" + text.ljust(self._width) + "\n")
        self.stream.flush()
        self._width = 0
