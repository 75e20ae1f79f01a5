"""The nbclient that runs a notebook for ``binder-autorun run``, and its per-cell progress lines.

The client's local ipykernel (always Python: it hosts the extension) attaches
to the remote kernel before the first cell; it owns Ctrl-C, ``--timeout`` and
``--log-output`` because only it sees cells start, end and print.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from queue import Empty
from typing import Any

import nbformat
from traitlets import Bool, Callable, Float, Unicode

from .autorun import TOKEN_ENV
from .errors import BinderAutorunError
from .launch.gateway import TOKEN_ENV as GATEWAY_TOKEN_ENV

try:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from nbclient.util import ensure_async
except ImportError:  # pragma: no cover - the CLI needs the [cli] extra
    NotebookClient = object  # type: ignore[assignment,misc]
    CellExecutionError = CellTimeoutError = DeadKernelError = Exception  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

#: the local kernel hosts the extension, so it is Python whatever the notebook's language
LOCAL_KERNEL = "python3"
#: exit status after Ctrl-C (128 + SIGINT) and after SIGTERM (128 + SIGTERM), as shells report them
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
#: seconds a cell may take to stop after the first Ctrl-C before the run is cut short
INTERRUPT_GRACE = 10.0
#: longest wait on the shell socket between two direct looks at it (see :func:`poll_shell_in_slices`)
SHELL_POLL_SLICE = 0.25


def poll_shell_in_slices(kc: Any, slice_seconds: float = SHELL_POLL_SLICE) -> None:
    """Make ``kc``'s shell ``get_msg`` look at its socket at least every ``slice_seconds``.

    nbclient waits for a cell's reply on the shell socket while it sends an Output
    widget's ``comm_msg`` on that same socket (jupyter/nbclient#312). A send can take
    the socket's wake-up for a reply arriving at that moment: the reply then sits
    unseen until the wait times out — the whole cell timeout, or forever without one
    (measured: one routed widget notebook in ten, and native ones alike, stalled 60 s
    on a loaded machine). A wait that ends looks at the socket itself, so waiting in
    slices bounds such a stall to one slice.
    """
    channel = kc.shell_channel
    get_msg = channel.get_msg

    async def sliced(timeout: float | None = None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = slice_seconds if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                return await ensure_async(get_msg(timeout=min(slice_seconds, left)))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    channel.get_msg = sliced


class RunInterrupted(Exception):
    """The run was stopped by Ctrl-C or SIGTERM (raised out of the client, never shown as a traceback)."""

    @property
    def status(self) -> int:
        """The command's exit status for this stop."""
        return EXIT_TERMINATED if str(self) == "terminated" else EXIT_INTERRUPTED


class RoutedNotebookClient(NotebookClient):  # type: ignore[misc,valid-type]
    """nbclient whose kernel routes every cell to the Jupyter server at ``server_url``.

    The saved ``execution_count`` of each cell is the remote one (nbclient on
    its own numbers cells by position). ``cell_timeout`` interrupts any cell,
    local or remote, that runs longer (a second expiry stops the run). Run by
    :meth:`run`, the first Ctrl-C interrupts the running cell and stops after
    it, a second one (or a cell that ignores the first) stops at once, as
    SIGTERM does.
    """

    server_url = Unicode(help="Jupyter server to route cells to (its token comes from BINDER_AUTORUN_TOKEN).").tag(config=True)
    remote_kernel_name = Unicode("", help="Kernel spec to start on the remote server.").tag(config=True)
    remote_kernel_id = Unicode("", help="Attach to this running remote kernel instead of starting one.").tag(config=True)
    remote_gateway = Bool(False, help="server_url is a kernel gateway (its token comes from JUPYTER_GATEWAY_AUTH_TOKEN).").tag(config=True)
    cell_timeout = Float(0.0, help="Interrupt any cell that runs longer than this (seconds; 0: never).").tag(config=True)
    on_output = Callable(default_value=None, allow_none=True, help="Called with each output as it arrives (--log-output).")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: "interrupted" once Ctrl-C was pressed, "terminated" after SIGTERM
        self.stop_reason = ""
        #: 1-based number of the code cell that runs (or ran last); 0 before the first
        self.code_cell = 0
        self.code_cells = sum(cell.cell_type == "code" for cell in self.nb.cells)
        #: True while a cell (or the connect) runs in the local kernel
        self.busy = False
        #: whether a cell was running when Ctrl-C was pressed (else it came between cells)
        self.stopped_busy = False
        #: the code cell number whose --timeout expired (0: none)
        self.timed_out = 0
        self._task: asyncio.Task[Any] | None = None
        self._cleaning = False

    # -- connecting -------------------------------------------------------------

    async def async_start_new_kernel(self, **kwargs: Any) -> None:
        self._take_sigint()  # nbclient's own handler would kill the kernel under a running cell
        await super().async_start_new_kernel(**kwargs)

    async def async_start_new_kernel_client(self) -> Any:
        self._take_sigint()
        kc = await super().async_start_new_kernel_client()
        poll_shell_in_slices(kc)
        if not self.server_url:
            return kc  # the notebook connects itself with its own %binder_on cell
        where = f"--gateway {self.server_url}" if self.remote_gateway else f"--url {self.server_url}"
        if self.remote_kernel_id:
            options = f"{where} --kernel-id {self.remote_kernel_id}"
        else:
            options = where + (f" --kernel-name {self.remote_kernel_name}" if self.remote_kernel_name else "")
        code = (
            f"%load_ext binder_autorun\n%binder_on {options}\n%config BinderAutorun.managed = True\n"
            f"__import__('os').environ.pop({TOKEN_ENV!r}, None)\n"  # connected: no cell needs to see it
        )
        if self.remote_gateway:
            code += f"__import__('os').environ.pop({GATEWAY_TOKEN_ENV!r}, None)\n"
        self._check_stop()
        self.busy = True
        try:
            msg_id = kc.execute(code, silent=True, store_history=False, allow_stdin=False)
            reply = await self.async_wait_for_reply(msg_id)
        finally:
            self.busy = False
        self._check_stop()
        content = (reply or {}).get("content", {})
        if content.get("status") != "ok":
            raise BinderAutorunError(str(content.get("evalue") or "Could not switch the kernel to remote mode."))
        return kc

    # -- cells ----------------------------------------------------------------------

    async def async_execute_cell(self, cell: Any, cell_index: int, *args: Any, **kwargs: Any) -> Any:
        self._check_stop()
        if cell.cell_type == "code":
            self.code_cell += 1
        self.busy = True
        try:
            result = await super().async_execute_cell(cell, cell_index, *args, **kwargs)
        finally:
            self.busy = False
        self._check_stop()  # a cell that caught the interrupt (or --allow-errors) still ends the run
        return result

    def output(self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int) -> Any:
        """Each output as it arrives, not at the cell's end (None: an Output widget took it)."""
        out = super().output(outs, msg, display_id, cell_index)
        if out is not None and self.on_output is not None:
            self.on_output(out)
        return out

    def _get_timeout(self, cell: Any) -> Any:
        if self.cell_timeout and cell is not None:
            return self.cell_timeout
        return super()._get_timeout(cell)

    async def _async_handle_timeout(self, timeout: Any, cell: Any = None) -> dict[str, Any] | None:
        """Interrupt the cell (local or remote alike) and say so in its output; stop if it goes on."""
        if cell is None or not self.cell_timeout:
            return await super()._async_handle_timeout(timeout, cell)
        if self.timed_out == self.code_cell:
            self.shutdown_kernel = "immediate"  # a busy kernel would not answer a polite shutdown
            raise CellTimeoutError.error_from_timeout_and_cell("Cell execution timed out (and ignored the interrupt)", timeout, cell)
        self.timed_out = self.code_cell
        log.info("cell %d ran longer than %g s; interrupting it", self.code_cell, timeout)
        cell.outputs.append(nbformat.v4.new_output(
            "stream", name="stderr", text=f"binder-autorun: the cell ran longer than {timeout:g} s (--timeout) and was interrupted.\n",
        ))
        await self._interrupt_kernel()
        return None

    # -- Ctrl-C ---------------------------------------------------------------------

    async def async_run(self) -> None:
        """Execute the notebook in this task, taking over Ctrl-C (see the class docstring)."""
        self._task = asyncio.current_task()
        self._take_sigint()
        try:
            await self.async_execute()
        except BaseException:
            if self.stop_reason:
                raise RunInterrupted(self.stop_reason) from None
            raise
        if self.stop_reason:  # pressed while the last cell ended
            raise RunInterrupted(self.stop_reason)

    def run(self) -> None:
        """Execute the notebook on a fresh event loop; raises RunInterrupted after Ctrl-C."""
        asyncio.run(self.async_run())

    async def _async_cleanup_kernel(self) -> None:
        self._cleaning = True  # a Ctrl-C now must not cut the local kernel's shutdown short
        try:
            await super()._async_cleanup_kernel()
        finally:
            self._cleaning = False

    def _take_sigint(self) -> None:
        if self._task is None:
            return  # not started by run(): leave signals to whoever runs us
        with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGINT, self._on_sigint)
            loop.add_signal_handler(signal.SIGTERM, self._on_sigterm)

    def _on_sigint(self) -> None:
        if self._cleaning:
            return
        if self.stop_reason:
            self._stop_now()
            return
        self.stop_reason = "interrupted"
        self.stopped_busy = self.busy
        log.info("Ctrl-C: interrupting cell %d and stopping after it", self.code_cell)
        if self.busy:
            asyncio.ensure_future(self._interrupt_kernel())
            asyncio.get_running_loop().call_later(INTERRUPT_GRACE, self._stop_now)

    def _on_sigterm(self) -> None:
        if not self.stop_reason:
            self.stop_reason = "terminated"
            self.stopped_busy = self.busy
        self._stop_now()

    def _stop_now(self) -> None:
        if self._cleaning or self._task is None or self._task.done():
            return
        self.shutdown_kernel = "immediate"  # its cell did not stop: do not wait for it
        self._task.cancel()

    async def _interrupt_kernel(self) -> None:
        if self.km is not None:
            try:
                await ensure_async(self.km.interrupt_kernel())
            except Exception:  # noqa: BLE001 - a kernel that is gone needs no interrupt
                log.info("could not interrupt the local kernel", exc_info=True)

    def _check_stop(self) -> None:
        if self.stop_reason:
            raise RunInterrupted(self.stop_reason)


def _remote_count(cell: Any, execute_reply: dict[str, Any] | None, **_: Any) -> None:
    count = (execute_reply or {}).get("content", {}).get("execution_count")
    if count:
        cell["execution_count"] = count


class Progress:
    """One line per code cell on stderr: index, first source line, status, time.

    Output logged meanwhile (``--log-output``) breaks the line; the status then
    comes on a line of its own, with the cell's index.
    """

    def __init__(self, total: int, stream: Any = sys.stderr) -> None:
        self.total = total
        self.stream = stream
        self.started = 0.0
        self.done_cells = 0
        self.open_line = False
        #: the cell's line was broken by its output: its status needs the index again
        self.broken = False
        #: set by the client: the number of the cell whose --timeout expired
        self.timed_out = lambda: 0

    def start(self, cell: Any, cell_index: int, **_: Any) -> None:
        if cell.cell_type != "code":
            return
        self.end_line("skipped")  # the previous cell never ran (empty, or tagged skip-execution)
        self.started = time.monotonic()
        self.done_cells += 1
        head = (cell.source.strip().splitlines() or [""])[0][:60]
        self.stream.write(f"[{self.done_cells}/{self.total}] {head} ... ")
        self.stream.flush()
        self.open_line = True

    def done(self, cell: Any, execute_reply: dict[str, Any] | None = None, **_: Any) -> None:
        status = (execute_reply or {}).get("content", {}).get("status", "?")
        if self.timed_out() == self.done_cells:
            status = "timed out"
        count = cell.get("execution_count")
        self.end_line(f"{status} (In [{count}], {time.monotonic() - self.started:.1f} s)")

    def break_line(self) -> None:
        """End the open line early, so output written now starts on a line of its own."""
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()
            self.open_line = False
            self.broken = True

    def end_line(self, text: str) -> None:
        """Finish the cell's line (e.g. "interrupted" when it never ended)."""
        if self.open_line or self.broken:
            prefix = f"[{self.done_cells}/{self.total}] ... " if self.broken else ""
            self.stream.write(prefix + text + "\n")
            self.stream.flush()
            self.open_line = self.broken = False


class OutputLog:
    """``--log-output``, as papermill logs: stream text to stdout or stderr, errors to stderr,
    anything else as its text/plain (to stdout)."""

    def __init__(self, progress: Progress | None, stdout: Any = sys.stdout, stderr: Any = sys.stderr) -> None:
        self.progress = progress
        self.stdout = stdout
        self.stderr = stderr

    def __call__(self, output: Any) -> None:
        kind = output.get("output_type")
        if kind == "stream":
            text, stream = output.get("text", ""), self.stderr if output.get("name") == "stderr" else self.stdout
        elif kind == "error":
            text, stream = "\n".join(output.get("traceback") or [f"{output.get('ename')}: {output.get('evalue')}"]), self.stderr
        else:
            text, stream = output.get("data", {}).get("text/plain", ""), self.stdout
        if not text:
            return
        if self.progress is not None:
            self.progress.break_line()
        stream.write(text if kind == "stream" or text.endswith("\n") else text + "\n")
        stream.flush()
