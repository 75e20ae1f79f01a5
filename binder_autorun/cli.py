"""``binder-autorun run``: execute notebooks with every cell on a remote kernel.

A local ipykernel (always Python: it hosts the extension) runs each notebook
through nbclient (:mod:`.routed_client`), so ``%%local`` cells, tags and
errors behave as in nbclient. The notebook's kernelspec chooses the *remote*
kernel, which the command starts itself, before any cell, in the notebook's
folder for ``--local`` (``--cwd`` otherwise); the local kernel then attaches
to it silently, so no cell of the saved notebook holds the connection, and
the token only travels in the kernel's environment.

Like ``jupyter nbconvert --execute``: ``--timeout`` covers every cell, local
ones included; Ctrl-C stops after saying where, writes what ran and stops
what it started. Like ``papermill``: ``-p``/``-f``/``-y`` parameters
(:mod:`.parameters`) and ``--log-output``. Several notebooks (or a folder)
share one launched server, each on fresh kernels (:mod:`.batch`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nbformat

from . import parameters as params
from .autorun import TOKEN_ENV
from .batch import Job, Outcome, batch_status, plan, print_summary
from .errors import BinderAutorunError, ServerError
from .launch import GatewayConfig, Launched, Target, default_binderhub, launch
from .launch.gateway import TOKEN_ENV as GATEWAY_TOKEN_ENV
from .launch.gateway import GatewayInfo, gateway_session
from .routed_client import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    LOCAL_KERNEL,
    CellExecutionError,
    CellTimeoutError,
    DeadKernelError,
    OutputLog,
    Progress,
    RoutedNotebookClient,
    RunInterrupted,
    _remote_count,
)
from .server import JupyterServer, ServerInfo, token_in_url
from .sync import RunFiles

__all__ = ["TOKEN_ENV", "RoutedNotebookClient", "build_parser", "main"]

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The ``binder-autorun`` command line."""
    parser = argparse.ArgumentParser(prog="binder-autorun", description="Run notebooks on a remote Jupyter kernel.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="Execute notebooks with every cell on a remote kernel.",
                              description="Execute notebooks with every cell on a remote kernel. Several notebooks "
                              "(or a folder of them) share one launched server, each on fresh kernels.")
    run.add_argument("notebooks", type=Path, nargs="+", metavar="NOTEBOOK",
                     help="Notebooks to run, or folders (their *.ipynb, sorted; not *.remote.ipynb outputs).")
    target = run.add_mutually_exclusive_group()
    target.add_argument("--url", help="A running Jupyter server, as Jupyter prints it (a ?token=... in it is used; "
                        "else --token or BINDER_AUTORUN_TOKEN). Without a target, the notebook's own %%binder_on cell connects.")
    target.add_argument("--local", nargs="?", const="", metavar="DIR",
                        help="Start a private local jupyter_server serving DIR (default: the notebook's folder; with several, their common folder).")
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
    run.add_argument("-o", "--output", type=Path, help="Where to write the executed notebook (default: NAME.remote.ipynb "
                     "beside it); with several notebooks, the folder to write their NAME.remote.ipynb into.")
    run.add_argument("--allow-errors", action="store_true", help="Go on after a cell fails.")
    run.add_argument("--timeout", type=float, default=0, help="Interrupt any cell (local ones too) after this many "
                     "seconds (default: never).")
    run.add_argument("-q", "--quiet", action="store_true", help="No per-cell progress.")
    run.add_argument("--log-output", action="store_true", help="Write each cell's outputs to the terminal as they "
                     "arrive, as papermill does (stdout and stderr to their own, other outputs as text).")
    run.add_argument("--fail-fast", action="store_true", help="With several notebooks, stop at the first one that fails "
                     "(default: run the others).")
    run.add_argument("--push", nargs="+", action="extend", default=[], metavar="PATH", help="Copy these local files, folders "
                     "or globs (relative to the notebook's folder) to the remote kernel's folder before the first cell.")
    run.add_argument("--pull", nargs="+", action="extend", default=[], metavar="PATH", help="Copy these remote files, "
                     "folders or globs into the notebook's folder after the last cell.")
    run.add_argument("--sync", action="store_true", help="Push the notebook's folder before the run (unchanged files "
                     "skipped) and pull back what the run created or changed there.")
    params.add_arguments(run.add_argument_group("parameters (as papermill takes them; papermill's -r is --parameters_raw here)"))
    return parser


def run_notebook(args: argparse.Namespace) -> int:
    """Execute the notebooks of ``args`` on one launched server; return the process exit status."""
    jobs, is_batch = plan(args.notebooks, args.output)  # every path checked before anything runs
    parameters = params.collect(args)
    if args.cwd is not None and not _has_target(args):
        raise BinderAutorunError("--cwd needs a target (--url, --local, -r or --jupyterhub): without one the notebook connects itself.")
    target = _target(args, Path(os.path.commonpath([job.folder for job in jobs])))
    launched: Launched | None = None
    try:
        try:
            if target is not None:
                launched = launch(target)
        except KeyboardInterrupt:
            return _interrupted_before_cells(target)
        except BinderAutorunError as exc:
            if isinstance(exc.__context__, KeyboardInterrupt):  # a launcher that cleaned up after Ctrl-C
                print(f"binder-autorun: {exc}", file=sys.stderr)
                return EXIT_INTERRUPTED
            raise
        if not is_batch:
            try:
                return _run_one(args, jobs[0], target, launched, parameters).status
            except KeyboardInterrupt:  # while starting the remote kernel (the run itself handles its own)
                return _interrupted_before_cells(target)
        return _run_batch(args, jobs, target, launched, parameters)
    finally:
        with _sigint_ignored():  # cleaning up is short and must not be cut
            if launched is not None and launched.local_server is not None:
                launched.local_server.stop()


def _run_batch(
    args: argparse.Namespace, jobs: list[Job], target: Target | None, launched: Launched | None, parameters: dict[str, Any],
) -> int:
    """Run each notebook on fresh kernels; a failure stops the rest only with --fail-fast, a stop always does."""
    outcomes: list[Outcome] = []
    for number, job in enumerate(jobs, 1):
        print(f"binder-autorun: notebook {number} of {len(jobs)}: {job.source}", file=sys.stderr)
        started = time.monotonic()
        try:
            outcome = _run_one(args, job, target, launched, parameters)
        except KeyboardInterrupt:  # while starting its remote kernel (the run itself handles its own)
            outcome = Outcome(job.source, "interrupted", EXIT_INTERRUPTED, f"0/{_code_cells(job.notebook)}")
            print(f"binder-autorun: interrupted before {job.source} ran; it was not written.", file=sys.stderr)
        except BinderAutorunError as exc:
            print(f"binder-autorun: {exc}", file=sys.stderr)
            outcome = Outcome(job.source, "failed", 2, f"0/{_code_cells(job.notebook)}")
        if outcome.seconds is None:
            outcome.seconds = time.monotonic() - started
        outcomes.append(outcome)
        if outcome.state in ("interrupted", "terminated") or (outcome.state == "failed" and args.fail_fast):
            break
    outcomes += [Outcome(job.source, "not run", cells=f"0/{_code_cells(job.notebook)}") for job in jobs[len(outcomes):]]
    print_summary(outcomes, sys.stderr)
    return batch_status(outcomes)


def _run_one(
    args: argparse.Namespace, job: Job, target: Target | None, launched: Launched | None, parameters: dict[str, Any],
) -> Outcome:
    """One notebook on a fresh remote kernel (started here, shut down after); the server is ready."""
    started = time.monotonic()
    remote: _RemoteKernel | None = None
    try:
        if target is not None and launched is not None:
            kernel_name = _remote_kernel_name(args, job.notebook)
            if target.kind == "gateway":
                remote = _RemoteKernel.start_gateway(target.options["config"], kernel_name, args.cwd or "")
            else:
                remote = _RemoteKernel.start(launched.info, kernel_name, _kernel_path(args, target, job.folder))
        outcome = _execute(args, job, launched, remote, parameters)
        outcome.seconds = time.monotonic() - started
        return outcome
    finally:
        with _sigint_ignored():
            if remote is not None:
                remote.shutdown()


def _execute(
    args: argparse.Namespace, job: Job, launched: Launched | None, remote: _RemoteKernel | None, parameters: dict[str, Any],
) -> Outcome:
    """Run the cells (the server and remote kernel are ready); write the notebook; say how it ended."""
    notebook, output, folder = job.notebook, job.output, job.folder
    if launched is not None:
        os.environ[TOKEN_ENV] = launched.info.token  # the local kernel inherits it; no cell holds it
        if isinstance(launched.info, GatewayInfo):
            os.environ[GATEWAY_TOKEN_ENV] = launched.info.token  # ahead of any other gateway token in the environment
    if parameters:
        language = str((remote.language_info.get("name") if remote else "") or params.notebook_language(notebook))
        if not params.inject(notebook, parameters, language):
            print(f"binder-autorun: {job.source} has no cell tagged 'parameters'; the parameters went into a new first cell.",
                  file=sys.stderr)
    started_at = datetime.now(timezone.utc)
    kernelspec = notebook.metadata.get("kernelspec")
    progress = Progress(_code_cells(notebook))
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
        on_output=OutputLog(None if args.quiet else progress) if args.log_output else None,
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
    stopped = status in (EXIT_INTERRUPTED, EXIT_TERMINATED)
    how = client.stop_reason or "interrupted"
    cells = f"{client.code_cell}/{client.code_cells}"
    state = how if stopped else "failed" if status else "ok"
    with _sigint_ignored():
        if kernelspec is not None:
            notebook.metadata["kernelspec"] = kernelspec  # the notebook's own, not the local helper's
        if remote is not None and remote.language_info:
            notebook.metadata["language_info"] = remote.language_info  # as the remote kernel reports it, like natively
        if stopped and client.code_cell == 0:
            print(f"binder-autorun: {how} before the first cell; nothing ran, nothing was written.", file=sys.stderr)
            return Outcome(job.source, state, status, cells)
        if parameters:
            params.record_run(notebook, job.source, output, started_at, failed=bool(status))
        _write(notebook, output)
        if stopped:
            where = f"{'in' if client.stopped_busy else 'after'} cell {client.code_cell}"
            print(f"binder-autorun: {how} {where} of {client.code_cells}; wrote {output} with what ran.", file=sys.stderr)
        else:
            print(f"binder-autorun: wrote {output}", file=sys.stderr)
    return Outcome(job.source, state, status, cells, output=output)


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


def _code_cells(notebook: Any) -> int:
    return sum(cell.cell_type == "code" for cell in notebook.cells)


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
