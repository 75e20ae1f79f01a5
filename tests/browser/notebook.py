"""Page object: one JupyterLab notebook in a real browser.

Every wait is bounded (``timeout`` seconds, 30 by default) and waits for a
condition, never for a fixed time, so a broken bridge fails a test instead of
hanging it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from playwright.sync_api import Locator, Page

from .lab import LabServer

#: True once the notebook's kernel is connected and idle (needs expose_app_in_browser).
KERNEL_STATUS_JS = """() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  const session = panel && panel.sessionContext && panel.sessionContext.session;
  const kernel = session && session.kernel;
  return kernel ? kernel.connectionStatus + ":" + kernel.status : "none";
}"""

KERNEL_ID_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return kernel ? kernel.id : null;
}"""

#: The outputs of cell ``index`` of the notebook on show, as nbformat JSON.
OUTPUTS_JS = "(index) => window.jupyterapp.shell.currentWidget.content.widgets[index].model.outputs.toJSON()"

#: Whether the notebook has unsaved changes.
DIRTY_JS = "() => window.jupyterapp.shell.currentWidget.context.model.dirty"

#: Record the session's kernel status changes in window.__kernelStatuses.
RECORD_STATUSES_JS = """() => {
  window.__kernelStatuses = [];
  window.jupyterapp.shell.currentWidget.sessionContext.statusChanged.connect(
    (_, status) => window.__kernelStatuses.push(status));
}"""

#: The notebook panel on show (other tabs stay in the DOM, hidden).
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

#: How ipywidgets shows a view it could not render (a missing model, a failed module).
WIDGET_ERROR = ".jupyter-widgets-error-widget, .jupyter-widgets:has-text('Error displaying widget')"

_NUMBERED = re.compile(r"^\[(\d+)\]:$")


class BrowserTimeout(AssertionError):
    """A bounded wait ran out."""


@contextmanager
def step(what: str) -> Iterator[None]:
    """Name a step of a long test: a failure inside says which step it was in."""
    try:
        yield
    except BaseException as error:
        error.add_note(f"in step: {what}")
        raise


class Notebook:
    """A notebook open in ``page``, on ``lab``; cells are addressed by index."""

    def __init__(self, page: Page, lab: LabServer, path: str, timeout: float = 30.0) -> None:
        self.page = page
        self.lab = lab
        self.path = path
        self.timeout = timeout

    # --- opening, waiting -------------------------------------------------------------

    @classmethod
    def create(cls, page: Page, lab: LabServer, name: str, cells: list[str], timeout: float = 30.0) -> Notebook:
        """Write a notebook with ``cells`` through the contents API and open it."""
        notebook = cls(page, lab, lab.create_notebook(name, cells), timeout)
        notebook.open()
        return notebook

    @property
    def url(self) -> str:
        """The lab URL of this notebook, token included."""
        # a workspace of its own: the page restores this notebook only, not other tests' tabs
        workspace = self.path.rsplit(".", 1)[0]
        return f"{self.lab.url}lab/workspaces/{workspace}/tree/{self.path}?token={self.lab.token}"

    def open(self) -> None:
        """Load the notebook's page and wait for its cells and an idle kernel (started
        through the API first: it boots while the page loads)."""
        self.lab.start_session(self.path)
        self.page.goto(self.url, timeout=self.timeout * 1000)
        self._wait_loaded()

    def save(self) -> None:
        """Save with Ctrl+S (outputs too, widget views included) and wait until saved."""
        self.page.locator(f"{PANEL} .jp-Notebook").first.focus()
        self.page.keyboard.press("Control+s")
        self.wait_until(lambda: self.page.evaluate(DIRTY_JS) is False, "the notebook to be saved")

    def reload(self, save: bool = True) -> None:
        """Reload the page (same kernel) and wait as after opening. Saves first, as a user
        would: the page reloads the notebook from disk, outputs (and widget views) included."""
        if save:
            self.save()
        self.page.reload(timeout=self.timeout * 1000)
        self._wait_loaded()

    def _wait_loaded(self) -> None:
        self.page.locator(f"{PANEL} .jp-Cell").first.wait_for(timeout=self.timeout * 1000)
        self.wait_kernel_idle()

    def wait_kernel_idle(self, timeout: float | None = None) -> None:
        """Wait until the kernel is connected and idle."""
        self.wait_until(lambda: self.kernel_status() == "connected:idle", "kernel connected and idle",
                        timeout, detail=self.kernel_status)

    def kernel_status(self) -> str:
        """``connectionStatus:status`` of the notebook's kernel, as the page sees it."""
        return str(self.page.evaluate(KERNEL_STATUS_JS))

    def kernel_id(self) -> str | None:
        """The id of the notebook's kernel on the lab server."""
        return self.page.evaluate(KERNEL_ID_JS)

    def wait_until(self, condition: Callable[[], Any], what: str, timeout: float | None = None,
                   detail: Callable[[], Any] | None = None, interval: float = 0.05) -> Any:
        """Poll ``condition`` until it is truthy; return it, or fail after ``timeout`` s."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserTimeout(f"timed out waiting for {what}" + (f" (now: {detail()!r})" if detail else ""))
            self.page.wait_for_timeout(interval * 1000)  # lets the page's events run

    # --- cells -------------------------------------------------------------------------

    def cell(self, index: int) -> Locator:
        """The ``index``-th cell of the notebook."""
        return self.page.locator(f"{PANEL} .jp-Notebook .jp-Cell").nth(index)

    def cell_count(self) -> int:
        """How many cells the page shows."""
        return self.page.locator(f"{PANEL} .jp-Notebook .jp-Cell").count()

    def prompt(self, index: int) -> str:
        """The cell's input prompt: ``[ ]:``, ``[*]:`` or ``[n]:``."""
        return self.cell(index).locator(".jp-InputPrompt").inner_text(timeout=self.timeout * 1000).strip()

    def run_cell(self, index: int, timeout: float | None = None) -> str:
        """Select the cell, press Shift+Enter, wait until it has run; return its output text."""
        before = self.prompt(index)
        self.cell(index).locator(".jp-InputPrompt").click(timeout=self.timeout * 1000)  # command mode
        self.page.keyboard.press("Shift+Enter")
        self._wait_ran(index, before, timeout)
        return self.output_text(index)

    def run_all(self, timeout: float | None = None) -> None:
        """Run → Run All Cells from the menu bar; wait until every cell has run."""
        before = [self.prompt(index) for index in range(self.cell_count())]
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click(timeout=self.timeout * 1000)
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click(timeout=self.timeout * 1000)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout) * max(1, len(before)) / 2
        for index, prompt in enumerate(before):
            self._wait_ran(index, prompt, max(1.0, deadline - time.monotonic()), started=True)

    def _wait_ran(self, index: int, before: str, timeout: float | None, started: bool = False) -> None:
        """Wait for the cell's prompt to show a number after having run (``[*]`` seen,
        or a number other than ``before``). A same-number rerun is accepted once the
        kernel has been idle for a second."""
        seen_running = False
        idle_since: float | None = None

        def ran() -> bool:
            nonlocal seen_running, idle_since
            prompt = self.prompt(index)
            if prompt == "[*]:":
                seen_running = True
                return False
            if not _NUMBERED.match(prompt):
                return False
            if seen_running or prompt != before:
                return True
            if self.kernel_status() == "connected:idle":
                idle_since = idle_since or time.monotonic()
                return time.monotonic() - idle_since > 1.0
            idle_since = None
            return False

        self.wait_until(ran, f"cell {index} to run", timeout, detail=lambda: self.prompt(index))

    def output_text(self, index: int) -> str:
        """The visible text of the cell's outputs, one output per line."""
        return "\n".join(text.strip() for text in self.cell(index).locator(".jp-OutputArea-output").all_inner_texts())

    def wait_output(self, index: int, pattern: str | re.Pattern[str], timeout: float | None = None) -> str:
        """Wait until the cell's output text matches ``pattern`` (re.search); return the text."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        return self.wait_until(lambda: regex.search(self.output_text(index)) and self.output_text(index),
                               f"cell {index} output to match {regex.pattern!r}", timeout,
                               detail=lambda: self.output_text(index))

    def outputs(self, index: int) -> list[dict[str, Any]]:
        """The cell's outputs as the notebook model holds them (nbformat JSON)."""
        return self.page.evaluate(OUTPUTS_JS, index)

    def errors(self, index: int) -> str:
        """``ename: evalue`` of the cell's error outputs, one a line (empty when none;
        stderr is not an error)."""
        return "\n".join(f"{o['ename']}: {o['evalue']}" for o in self.outputs(index) if o["output_type"] == "error")

    # --- widgets -----------------------------------------------------------------------

    def widget(self, index: int, selector: str = ".jupyter-widgets") -> Locator:
        """Rendered widget elements in the cell's output area matching ``selector``."""
        return self.cell(index).locator(f".jp-OutputArea-output {selector}")

    def wait_widget(self, index: int, selector: str = ".jupyter-widgets", timeout: float | None = None) -> Locator:
        """Wait until a widget matching ``selector`` is visible in the cell's output;
        fail at once if the page shows a widget error instead (e.g. model not found)."""
        locator = self.widget(index, selector).first
        if locator.is_visible():
            return locator

        def shown() -> bool:
            error = self.widget(index, WIDGET_ERROR)
            if error.count():
                raise AssertionError(f"cell {index} shows a widget error: {error.first.inner_text()!r}")
            return locator.is_visible()

        self.wait_until(shown, f"a widget {selector!r} in cell {index}", timeout, detail=lambda: self.output_text(index))
        return locator

    def slider_readout(self, index: int) -> str:
        """The readout text of the first slider in the cell's output."""
        return self.wait_widget(index, ".widget-slider .widget-readout").inner_text().strip()

    def wait_readout(self, index: int, value: str, timeout: float | None = None) -> None:
        """Wait until the first slider of the cell reads ``value``."""
        self.wait_until(lambda: self.slider_readout(index) == value, f"slider in cell {index} to read {value!r}",
                        timeout, detail=lambda: self.slider_readout(index))

    def press_slider(self, index: int, key: str = "ArrowRight", times: int = 1) -> None:
        """Focus the slider's handle and press ``key`` (the keyboard moves it one step)."""
        handle = self.wait_widget(index, ".widget-slider .noUi-handle")
        handle.focus()
        for _ in range(times):
            handle.press(key)

    def drag_slider(self, index: int, fraction: float) -> None:
        """Drag the slider's handle to ``fraction`` (0..1) of its track with the mouse."""
        track = self.wait_widget(index, ".widget-slider .noUi-target").bounding_box()
        handle = self.wait_widget(index, ".widget-slider .noUi-handle").bounding_box()
        assert track and handle, "slider not laid out"
        mouse = self.page.mouse
        mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
        mouse.down()
        mouse.move(track["x"] + track["width"] * fraction, handle["y"] + handle["height"] / 2, steps=8)
        mouse.up()

    def click_button(self, index: int, text: str | None = None) -> None:
        """Click the (first, or labelled ``text``) button widget in the cell's output."""
        buttons = self.widget(index, "button.jupyter-button")
        button = buttons.filter(has_text=text).first if text else buttons.first
        button.click(timeout=self.timeout * 1000)

    def type_text(self, index: int, text: str, submit: bool = True) -> None:
        """Type into the (first) text widget of the cell's output; Enter submits."""
        field = self.wait_widget(index, ".widget-text input, .widget-textarea textarea")
        field.fill(text, timeout=self.timeout * 1000)
        if submit:
            field.press("Enter")

    # --- kernel ------------------------------------------------------------------------

    def restart_kernel(self) -> None:
        """Kernel → Restart Kernel… and confirm, as a user does; wait until the kernel
        has gone through ``restarting`` and is idle again."""
        self.page.evaluate(RECORD_STATUSES_JS)
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Kernel$")).click(timeout=self.timeout * 1000)
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Restart Kernel")).first.click(timeout=self.timeout * 1000)
        self.page.locator(".jp-Dialog button.jp-mod-accept").click(timeout=self.timeout * 1000)
        self.wait_until(lambda: "restarting" in self.page.evaluate("() => window.__kernelStatuses"),
                        "kernel to restart", detail=lambda: self.page.evaluate("() => window.__kernelStatuses"))
        self.wait_kernel_idle()
