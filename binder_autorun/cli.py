"""``binder-autorun run``: execute a whole notebook with every cell on a remote kernel.

A local ipykernel (always Python: it hosts the extension) runs the notebook
through nbclient, so ``%%local`` cells, tags and errors behave as in nbclient.
The notebook's kernelspec chooses the *remote* kernel, which the command starts
itself, before any cell, in the notebook's folder for ``--local`` (``--cwd``
otherwise); the local kernel then attaches to it silently, so no cell of the
saved notebook holds the connection, and the token only travels in the
kernel's environment.

Like ``jupyter nbconvert --execute``: ``--timeout`` covers every cell, local
ones included; Ctrl-C stops after saying where, writes what ran and stops
what it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from traitlets import Bool, Float, Unicode

from .autorun import TOKEN_ENV
from .errors import BinderAutorunError, LaunchError, ServerError
from .launch import GatewayConfig, Launched, Target, default_binderhub, launch
from .launch.gateway import TOKEN_ENV as GATEWAY_TOKEN_ENV
from .launch.gateway import GatewayInfo, gateway_session
from .sync import RunFiles
from .server import JupyterServer, ServerInfo, token_in_url

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
    """One line per code cell on stderr: index, first source line, status, time."""

    def __init__(self, total: int, stream: Any = sys.stderr) -> None:
        self.total = total
        self.stream = stream
        self.started = 0.0
        self.done_cells = 0
        self.open_line = False
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

    def end_line(self, text: str) -> None:
        """Finish the cell's line (e.g. "interrupted" when it never ended)."""
        if self.open_line:
            self.stream.write(text + "\n")
            self.stream.flush()
            self.open_line = False


def build_parser() -> argparse.ArgumentParser:
    """The ``binder-autorun`` command line."""
    parser = argparse.ArgumentParser(prog="binder-autorun", description="Run notebooks on a remote Jupyter kernel.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="Execute a notebook with every cell on a remote kernel.")
    run.add_argument("notebook", type=Path)
    target = run.add_mutually_exclusive_group()
    target.add_argument("--url", help="A running Jupyter server, as Jupyter prints it (a ?token=... in it is used; "
                        "else --token or BINDER_AUTORUN_TOKEN). Without a target, the notebook's own %%binder_on cell connects.")
    target.add_argument("--local", nargs="?", const="", metavar="DIR",
                        help="Start a private local jupyter_server serving DIR (default: the notebook's folder).")
    target.add_argument("-r", "--repo", help="Build and launch this repository through a BinderHub first.")
    target.add_argument("--jupyterhub", metavar="HUB", help="Start (or reuse) your server on this JupyterHub first.")
    target.add_argument("--gateway", nargs="?", const="", metavar="URL",
                        help="Start the kernel on this Enterprise Gateway or Kernel Gateway (default: JUPYTER_GATEWAY_URL; "
                        "token: --token, else JUPYTER_GATEWAY_AUTH_TOKEN; --cwd sets KERNEL_WORKING_DIR).")
    run.add_argument("--ref", default=None, help="Branch, tag or commit of --repo.")
    run.add_argument("--binderhub", default=default_binderhub(), help="BinderHub for --repo (default: %(default)s).")
    run.add_argument("--show-log", action="store_true", help="Print the full build log of --repo.")
    run.add_argument("--server", default="", help="Named server on --jupyterhub.")
    run.add_argument("--token", default=None, help="Token of --url (prefer the BINDER_AUTORUN_TOKEN variable).")
    run.add_argument("--kernel-name", default="", help="Remote kernel spec (default: the notebook's kernelspec, "
                     "else the server's default).")
    run.add_argument("--cwd", default=None, metavar="DIR", help="Working directory of the remote kernel, relative to the "
                     "server's root (default: the notebook's folder with --local, else the server's root).")
    run.add_argument("-o", "--output", type=Path, help="Where to write the executed notebook (default: NAME.remote.ipynb).")
    run.add_argument("--allow-errors", action="store_true", help="Go on after a cell fails.")
    run.add_argument("--timeout", type=float, default=0, help="Interrupt any cell (local ones too) after this many "
                     "seconds (default: never).")
    run.add_argument("-q", "--quiet", action="store_true", help="No per-cell progress.")
    run.add_argument("--push", nargs="+", action="extend", default=[], metavar="PATH", help="Copy these local files, folders "
                     "or globs (relative to the notebook's folder) to the remote kernel's folder before the first cell.")
    run.add_argument("--pull", nargs="+", action="extend", default=[], metavar="PATH", help="Copy these remote files, "
                     "folders or globs into the notebook's folder after the last cell.")
    run.add_argument("--sync", action="store_true", help="Push the notebook's folder before the run (unchanged files "
                     "skipped) and pull back what the run created or changed there.")
    return parser


def run_notebook(args: argparse.Namespace) -> int:
    """Execute ``args.notebook``; return the process exit status."""
    notebook = _read_notebook(args.notebook)
    output = _checked_output(args.output or args.notebook.with_name(args.notebook.stem + ".remote.ipynb"))
    if args.cwd is not None and not _has_target(args):
        raise BinderAutorunError("--cwd needs a target (--url, --local, -r or --jupyterhub): without one the notebook connects itself.")
    folder = args.notebook.resolve().parent
    target = _target(args, folder)
    launched: Launched | None = None
    remote: _RemoteKernel | None = None
    try:
        try:
            if target is not None:
                launched = launch(target)
                if target.kind == "gateway":
                    remote = _RemoteKernel.start_gateway(target.options["config"], _remote_kernel_name(args, notebook), args.cwd or "")
                else:
                    remote = _RemoteKernel.start(launched.info, _remote_kernel_name(args, notebook), _kernel_path(args, target, folder))
        except KeyboardInterrupt:
            return _interrupted_before_cells(target)
        except BinderAutorunError as exc:
            if isinstance(exc.__context__, KeyboardInterrupt):  # a launcher that cleaned up after Ctrl-C
                print(f"binder-autorun: {exc}", file=sys.stderr)
                return EXIT_INTERRUPTED
            raise
        return _execute(args, notebook, output, folder, launched, remote)
    finally:
        with _sigint_ignored():  # cleaning up is short and must not be cut
            if remote is not None:
                remote.shutdown()
            if launched is not None and launched.local_server is not None:
                launched.local_server.stop()


def _execute(
    args: argparse.Namespace, notebook: Any, output: Path, folder: Path, launched: Launched | None, remote: _RemoteKernel | None,
) -> int:
    """Run the cells (the server and remote kernel are ready); write the notebook; return the exit status."""
    if launched is not None:
        os.environ[TOKEN_ENV] = launched.info.token  # the local kernel inherits it; no cell holds it
        if isinstance(launched.info, GatewayInfo):
            os.environ[GATEWAY_TOKEN_ENV] = launched.info.token  # ahead of any other gateway token in the environment
    kernelspec = notebook.metadata.get("kernelspec")
    progress = Progress(sum(cell.cell_type == "code" for cell in notebook.cells))
    client = RoutedNotebookClient(
        notebook,
        kernel_name=LOCAL_KERNEL,
        server_url=launched.info.url if launched else "",
        remote_kernel_name=args.kernel_name,
        remote_kernel_id=remote.kernel_id if remote else "",
        remote_gateway=launched is not None and isinstance(launched.info, GatewayInfo),
        cell_timeout=args.timeout,
        interrupt_on_timeout=True,
        allow_errors=args.allow_errors,
        resources={"metadata": {"path": str(folder)}},
        on_cell_start=None if args.quiet else progress.start,
        on_cell_executed=_executed(progress, args.quiet),
    )
    progress.timed_out = lambda: client.timed_out
    files = None
    if args.push or args.pull or args.sync:
        if remote is None:
            raise BinderAutorunError("--push, --pull and --sync need a target (--url, --local, -r, --jupyterhub or --gateway).")
        files = RunFiles(remote.server, remote.kernel_id, folder, args.push, args.pull, args.sync)
        files.before()
    status = 0
    try:
        client.run()
    except (RunInterrupted, KeyboardInterrupt) as exc:
        progress.end_line(client.stop_reason or "interrupted")
        status = exc.status if isinstance(exc, RunInterrupted) else EXIT_INTERRUPTED
    except CellTimeoutError:
        progress.end_line("timed out")
        print(f"binder-autorun: cell {client.code_cell} of {client.code_cells} ran longer than the --timeout of "
              f"{args.timeout:g} s and went on after the interrupt; the run was stopped.", file=sys.stderr)
        status = 1
    except DeadKernelError:
        progress.end_line("kernel died")
        print(f"binder-autorun: the local kernel died during cell {client.code_cell} of {client.code_cells}.", file=sys.stderr)
        status = 1
    except CellExecutionError as exc:
        if client.timed_out and client.timed_out == client.code_cell:
            print(f"binder-autorun: cell {client.code_cell} of {client.code_cells} ran longer than the --timeout of "
                  f"{args.timeout:g} s and was interrupted.", file=sys.stderr)
        else:
            print(f"binder-autorun: a cell failed: {_error_line(exc)} (use --allow-errors to go on).", file=sys.stderr)
        status = 1
    except BinderAutorunError as exc:
        progress.end_line("failed")
        print(f"binder-autorun: {exc}", file=sys.stderr)
        status = 1
    if files is not None and status not in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        try:
            files.after()
        except BinderAutorunError as exc:
            print(f"binder-autorun: {exc}", file=sys.stderr)
            status = status or 1
    with _sigint_ignored():
        if kernelspec is not None:
            notebook.metadata["kernelspec"] = kernelspec  # the notebook's own, not the local helper's
        if remote is not None and remote.language_info:
            notebook.metadata["language_info"] = remote.language_info  # as the remote kernel reports it, like natively
        stopped = status in (EXIT_INTERRUPTED, EXIT_TERMINATED)
        how = client.stop_reason or "interrupted"
        if stopped and client.code_cell == 0:
            print(f"binder-autorun: {how} before the first cell; nothing ran, nothing was written.", file=sys.stderr)
            return status
        _write(notebook, output)
        if stopped:
            where = f"{'in' if client.stopped_busy else 'after'} cell {client.code_cell}"
            print(f"binder-autorun: {how} {where} of {client.code_cells}; wrote {output} with what ran.", file=sys.stderr)
        else:
            print(f"binder-autorun: wrote {output}", file=sys.stderr)
    return status


class _RemoteKernel:
    """The remote kernel the command starts (and shuts down): the notebook's language, its folder."""

    def __init__(self, server: JupyterServer, kernel_id: str, language_info: dict[str, Any]) -> None:
        self.server = server
        self.kernel_id = kernel_id
        self.language_info = language_info

    @classmethod
    def start_gateway(cls, config: GatewayConfig, kernel_name: str, working_dir: str) -> _RemoteKernel:
        """Start the kernel on a gateway (progress while it is slow; ``working_dir`` is KERNEL_WORKING_DIR)."""
        session = gateway_session(config, kernel_name or None, working_dir=working_dir)
        session.close()  # the local kernel attaches to it; we shut it down at the end
        return cls(session.server, session.kernel_id, dict(session.kernel_info.get("language_info") or {}))

    @classmethod
    def start(cls, info: ServerInfo, kernel_name: str, path: str) -> _RemoteKernel:
        """Check the server, the kernel name and the folder (one sentence each), then start the kernel."""
        server = JupyterServer(info)
        server.api_info()  # a clear sentence for a wrong URL or token
        if kernel_name:
            specs = server.kernelspecs().get("kernelspecs", {})
            if kernel_name not in specs:
                known = ", ".join(sorted(specs)) or "none"
                raise ServerError(
                    f"The server at {server.url} has no kernel {kernel_name!r} (it has: {known}); "
                    "choose one with --kernel-name."
                )
        if path:
            server.require_folder(path)
        kernel_id = str(server.start_kernel(kernel_name or None, path)["id"])
        kernel = cls(server, kernel_id, {})
        try:
            kernel.language_info = _language_info(server, kernel_id)
        except BaseException:
            kernel.shutdown()
            raise
        log.info("started remote kernel %s (%s) in %r", kernel_id, kernel_name or "default", path or "/")
        return kernel

    def shutdown(self) -> None:
        """Shut the kernel down (it is ours); a server already gone is fine."""
        try:
            self.server.shutdown_kernel(self.kernel_id)
        except BinderAutorunError:
            log.info("could not shut down remote kernel %s (server gone?)", self.kernel_id)
        self.server.close()


def _language_info(server: JupyterServer, kernel_id: str) -> dict[str, Any]:
    """The remote kernel's ``language_info`` (what a native run saves in the notebook)."""
    from .session import KernelSession

    session = KernelSession.attach(server, kernel_id)
    try:
        return dict(session.kernel_info.get("language_info") or {})
    finally:
        session.close()


def _read_notebook(path: Path) -> Any:
    """The notebook at ``path``, or one sentence saying why it cannot be run."""
    if not path.exists():
        raise BinderAutorunError(f"{path} does not exist; give the path of a notebook (.ipynb).")
    if path.is_dir():
        raise BinderAutorunError(f"{path} is a folder; give the path of a notebook (.ipynb).")
    try:
        with path.open(encoding="utf-8") as handle:
            return nbformat.read(handle, as_version=4)
    except OSError as exc:
        raise BinderAutorunError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds for a file that is not a notebook
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise BinderAutorunError(f"{path} is not a Jupyter notebook ({reason.rstrip('.')}).") from None


def _checked_output(path: Path) -> Path:
    """``path`` if the executed notebook can be written there, checked before anything runs."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise BinderAutorunError(f"-o {path} is a folder; give a file name, like {path / 'out.ipynb'}.")
    if not folder.is_dir():
        raise BinderAutorunError(f"Cannot write {path}: the folder {folder} does not exist.")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise BinderAutorunError(f"Cannot write {path}: permission denied.")
    return path


def _write(notebook: Any, output: Path) -> None:
    """Write through a temporary file, so a failed write leaves any earlier output intact."""
    partial = output.with_name(f".{output.name}.partial")
    try:
        nbformat.write(notebook, partial)
        os.replace(partial, output)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise BinderAutorunError(f"Cannot write {output}: {exc.strerror or exc}.") from None


def _interrupted_before_cells(target: Target | None) -> int:
    what = target.label if target is not None else "the server"
    print(f"binder-autorun: interrupted while starting {what}; nothing ran, nothing was written.", file=sys.stderr)
    return EXIT_INTERRUPTED


@contextlib.contextmanager
def _sigint_ignored() -> Any:
    """Ignore Ctrl-C (main thread only) for a short step that must finish: cleanup, writing."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _has_target(args: argparse.Namespace) -> bool:
    return bool(args.local is not None or args.url or args.repo or args.jupyterhub or args.gateway is not None)


def _token(args: argparse.Namespace) -> str:
    """--token, else a token in the pasted URL, else BINDER_AUTORUN_TOKEN."""
    if args.token is not None:
        return str(args.token)
    return token_in_url(args.url or "") or os.environ.get(TOKEN_ENV, "")


def _target(args: argparse.Namespace, folder: Path) -> Target | None:
    """What the command line asks to connect to (None: the notebook connects itself)."""
    if args.local is not None:
        return Target.local(args.local or str(folder))
    if args.url:
        return Target.url(ServerInfo(args.url, _token(args)))
    if args.repo:
        return Target.binder(args.repo, args.ref, args.binderhub, args.show_log)
    if args.jupyterhub:
        return Target.jupyterhub(args.jupyterhub, _token(args), args.server)
    if args.gateway is not None:
        return Target.gateway(GatewayConfig.from_env(args.gateway, args.token))
    return None


def _remote_kernel_name(args: argparse.Namespace, notebook: Any) -> str:
    """--kernel-name, else the notebook's kernelspec (which names the remote kernel), else the server's default."""
    return str(args.kernel_name or notebook.metadata.get("kernelspec", {}).get("name") or "")


def _kernel_path(args: argparse.Namespace, target: Target, folder: Path) -> str:
    """The remote kernel's working directory relative to the server's root.

    --cwd when given; with --local the notebook's folder (as nbconvert runs a
    notebook there) when the server's root holds it; else the root.
    """
    if args.cwd is not None:
        return str(args.cwd).strip("/")
    if target.kind == "local":
        root = Path(target.options["root_dir"]).resolve()
        if folder.is_relative_to(root):
            relative = folder.relative_to(root).as_posix()
            return "" if relative == "." else relative
        log.info("the notebook is outside %s; its remote kernel runs in that root", root)
    return ""


def _executed(progress: Progress, quiet: bool) -> Any:
    def hook(cell: Any, cell_index: int, execute_reply: dict[str, Any] | None = None, **_: Any) -> None:
        _remote_count(cell, execute_reply)
        if not quiet:
            progress.done(cell, execute_reply)

    return hook


def _error_line(exc: BaseException) -> str:
    ename, evalue = getattr(exc, "ename", ""), getattr(exc, "evalue", "")
    return f"{ename}: {evalue}" if ename else str(exc).strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``binder-autorun``; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return run_notebook(args)
    except BinderAutorunError as exc:
        print(f"binder-autorun: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # between the steps above
        print("binder-autorun: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
