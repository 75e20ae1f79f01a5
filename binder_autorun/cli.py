"""``binder-autorun run``: execute a whole notebook with every cell on a remote kernel.

A local ipykernel with the extension loaded runs the notebook through nbclient
(so ``%%local`` cells, tags and errors behave as in nbclient); before the
first cell it is switched to remote mode silently, so no cell of the saved
notebook holds the connection, and the token only travels in the kernel's
environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from traitlets import Float, Unicode

from .autorun import TOKEN_ENV
from .errors import BinderAutorunError
from .launch import Target, default_binderhub, launch
from .server import ServerInfo

try:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
except ImportError:  # pragma: no cover - the CLI needs the [cli] extra
    NotebookClient = object  # type: ignore[assignment,misc]
    CellExecutionError = Exception  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)


class RoutedNotebookClient(NotebookClient):  # type: ignore[misc,valid-type]
    """nbclient whose kernel routes every cell to the Jupyter server at ``server_url``.

    The saved ``execution_count`` of each cell is the remote one (nbclient on
    its own numbers cells by position).
    """

    server_url = Unicode(help="Jupyter server to route cells to (its token comes from BINDER_AUTORUN_TOKEN).").tag(config=True)
    remote_kernel_name = Unicode("", help="Kernel spec to start on the remote server.").tag(config=True)
    cell_timeout = Float(0.0, help="Interrupt a remote cell that runs longer than this (seconds; 0: never).").tag(config=True)

    async def async_start_new_kernel_client(self) -> Any:
        kc = await super().async_start_new_kernel_client()
        if not self.server_url:
            return kc  # the notebook connects itself with its own %binder_on cell
        options = f"--url {self.server_url}" + (f" --kernel-name {self.remote_kernel_name}" if self.remote_kernel_name else "")
        code = (
            f"%load_ext binder_autorun\n%binder_on {options}\n%config BinderAutorun.managed = True\n"
            f"__import__('os').environ.pop({TOKEN_ENV!r}, None)\n"  # connected: no cell needs to see it
        )
        if self.cell_timeout:
            code += f"%config BinderAutorun.cell_timeout = {self.cell_timeout}\n"
        msg_id = kc.execute(code, silent=True, store_history=False, allow_stdin=False)
        reply = await self.async_wait_for_reply(msg_id)
        content = (reply or {}).get("content", {})
        if content.get("status") != "ok":
            raise BinderAutorunError(str(content.get("evalue") or "Could not switch the kernel to remote mode."))
        return kc


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

    def start(self, cell: Any, cell_index: int, **_: Any) -> None:
        if cell.cell_type != "code":
            return
        self.started = time.monotonic()
        self.done_cells += 1
        head = (cell.source.strip().splitlines() or [""])[0][:60]
        self.stream.write(f"[{self.done_cells}/{self.total}] {head} ... ")
        self.stream.flush()

    def done(self, cell: Any, execute_reply: dict[str, Any] | None = None, **_: Any) -> None:
        status = (execute_reply or {}).get("content", {}).get("status", "?")
        count = cell.get("execution_count")
        self.stream.write(f"{status} (In [{count}], {time.monotonic() - self.started:.1f} s)\n")
        self.stream.flush()


def build_parser() -> argparse.ArgumentParser:
    """The ``binder-autorun`` command line."""
    parser = argparse.ArgumentParser(prog="binder-autorun", description="Run notebooks on a remote Jupyter kernel.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="Execute a notebook with every cell on a remote kernel.")
    run.add_argument("notebook", type=Path)
    target = run.add_mutually_exclusive_group()
    target.add_argument("--url", help="A running Jupyter server (token: --token or BINDER_AUTORUN_TOKEN). "
                        "Without a target, the notebook's own %%binder_on cell connects.")
    target.add_argument("--local", nargs="?", const=".", metavar="DIR", help="Start a private local jupyter_server in DIR.")
    target.add_argument("-r", "--repo", help="Build and launch this repository through a BinderHub first.")
    target.add_argument("--jupyterhub", metavar="HUB", help="Start (or reuse) your server on this JupyterHub first.")
    run.add_argument("--ref", default=None, help="Branch, tag or commit of --repo.")
    run.add_argument("--binderhub", default=default_binderhub(), help="BinderHub for --repo (default: %(default)s).")
    run.add_argument("--show-log", action="store_true", help="Print the full build log of --repo.")
    run.add_argument("--server", default="", help="Named server on --jupyterhub.")
    run.add_argument("--token", default=None, help="Token of --url (prefer the BINDER_AUTORUN_TOKEN variable).")
    run.add_argument("--kernel-name", default="", help="Remote kernel spec (default: the server's default).")
    run.add_argument("-o", "--output", type=Path, help="Where to write the executed notebook (default: NAME.remote.ipynb).")
    run.add_argument("--allow-errors", action="store_true", help="Go on after a cell fails.")
    run.add_argument("--timeout", type=float, default=0, help="Interrupt a cell after this many seconds (default: never).")
    run.add_argument("-q", "--quiet", action="store_true", help="No per-cell progress.")
    return parser


def run_notebook(args: argparse.Namespace) -> int:
    """Execute ``args.notebook``; return the process exit status."""
    notebook = nbformat.read(args.notebook, as_version=4)
    output = args.output or args.notebook.with_name(args.notebook.stem + ".remote.ipynb")
    target = _target(args)
    launched = launch(target) if target is not None else None
    info = launched.info if launched is not None else None
    if info is not None:
        os.environ[TOKEN_ENV] = info.token  # the local kernel inherits it; no cell holds it
    progress = Progress(sum(cell.cell_type == "code" for cell in notebook.cells))
    client = RoutedNotebookClient(
        notebook,
        server_url=info.url if info else "",
        remote_kernel_name=args.kernel_name,
        cell_timeout=args.timeout,
        allow_errors=args.allow_errors,
        resources={"metadata": {"path": str(args.notebook.parent.resolve())}},
        on_cell_start=None if args.quiet else progress.start,
        on_cell_executed=_executed(progress, args.quiet),
    )
    status = 0
    try:
        client.execute()
    except CellExecutionError as exc:
        print(f"binder-autorun: a cell failed: {_error_line(exc)} (use --allow-errors to go on).", file=sys.stderr)
        status = 1
    except BinderAutorunError as exc:
        print(f"binder-autorun: {exc}", file=sys.stderr)
        status = 1
    finally:
        if launched is not None and launched.local_server is not None:
            launched.local_server.stop()
    nbformat.write(notebook, output)
    print(f"binder-autorun: wrote {output}", file=sys.stderr)
    return status


def _token(args: argparse.Namespace) -> str:
    return args.token if args.token is not None else os.environ.get(TOKEN_ENV, "")


def _target(args: argparse.Namespace) -> Target | None:
    """What the command line asks to connect to (None: the notebook connects itself)."""
    if args.local is not None:
        return Target.local(args.local)
    if args.url:
        return Target.url(ServerInfo(args.url, _token(args)))
    if args.repo:
        return Target.binder(args.repo, args.ref, args.binderhub, args.show_log)
    if args.jupyterhub:
        return Target.jupyterhub(args.jupyterhub, _token(args), args.server)
    return None


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
