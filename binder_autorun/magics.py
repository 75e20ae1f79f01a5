"""Magics: parse arguments, call :class:`~binder_autorun.autorun.BinderAutorun`. Nothing else."""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .autorun import BinderAutorun
from .errors import BinderAutorunError
from .mirror import rewrite_history
from .variables import TRUST


log = logging.getLogger(__name__)

_help = argument("-h", "--help", action="store_true", help="Show this help.")


def _one_sentence(magic: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an unexpected exception into one sentence: IPython's traceback of a magic
    quotes the cell's line, which may hold a token."""

    @functools.wraps(magic)
    def guarded(self: Any, *args: Any) -> Any:
        if _holds_token(args[0]):
            hide_tokens_in_history(self.shell)
        try:
            return magic(self, *args)
        except BinderAutorunError:
            raise
        except UsageError as exc:
            if _holds_token(args[0]):  # argparse echoes what it could not parse: maybe the token
                raise UsageError(f"%{magic.__name__} could not parse its options (not repeated here, they hold a token); see %{magic.__name__} -h.") from None
            raise exc from None
        except KeyboardInterrupt:
            raise BinderAutorunError(f"%{magic.__name__} was interrupted; nothing was switched.") from None
        except Exception as exc:
            log.debug("unexpected failure in %s", magic.__name__, exc_info=True)
            raise BinderAutorunError(
                f"%{magic.__name__} failed unexpectedly ({type(exc).__name__}); please report it, "
                "with the details logging.getLogger('binder_autorun').setLevel('DEBUG') shows."
            ) from None

    return guarded


def _parse(magic: Any, line: str) -> Any:
    """Parse a magic's arguments; None (help printed) for -h."""
    args = parse_argstring(magic, line)
    if args.help:
        print(magic.parser.format_help())
        return None
    return args


#: a token as typed: an option and its value (``--token T``, ``--token=T``, mistyped ``--tokn T``),
#: or the query of a URL pasted as Jupyter prints it (``.../lab?token=T``)
_TOKEN_OPTION = re.compile(r"(--tok\w*)(=|\s+)(\S+)|([?&]token)(=)([^&\s]+)")


def _holds_token(line: str) -> bool:
    return "--tok" in line or "token=" in line


def _hide(text: str) -> str:
    return _TOKEN_OPTION.sub(lambda m: f"{m.group(1) or m.group(4)}{m.group(2) or m.group(5)}<hidden>", text)


def hide_tokens_in_history(shell: Any) -> None:
    """Replace token values typed in this cell's magic line in its history (memory and database)."""
    history = shell.history_manager
    result = shell.displayhook.exec_result
    if history is None or result is None or len(history.input_hist_raw) <= 1:
        return
    raw = history.input_hist_raw[-1]
    if _TOKEN_OPTION.search(raw):
        rewrite_history(shell, result.execution_count, _hide(history.input_hist_parsed[-1]), _hide(raw))


@magics_class
class BinderMagics(Magics):
    """``%binder_on``, ``%binder_off``, ``%binder_status``, ``%binder_restart``, ``%binder_replay``.

    (``%%local`` is not a magic: the cell router strips it and runs the cell locally.)
    """

    def __init__(self, shell, autorun: BinderAutorun) -> None:  # type: ignore[no-untyped-def]
        super().__init__(shell)
        self.autorun = autorun

    @magic_arguments()
    @_help
    @argument("-r", "--repo", default="", help="Build and launch this repository through a BinderHub "
              "(owner/repo, a GitHub/GitLab/gist/git URL, a DOI, or a Binder link).")
    @argument("--ref", default=None, help="Branch, tag or commit of --repo (default: the repository's HEAD).")
    @argument("--binderhub", default="", help="BinderHub to use (default https://mybinder.org or BINDER_AUTORUN_BINDERHUB).")
    @argument("--show-log", action="store_true", help="Print the full build log while building.")
    @argument("--jupyterhub", default="", metavar="HUB", help="Start (or reuse) your server on this JupyterHub.")
    @argument("--server", default="", help="Named JupyterHub server (default: your default server).")
    @argument("--url", default="", help="URL of a running Jupyter server (its base_url included).")
    @argument("--gateway", nargs="?", const="", default=None, metavar="URL",
              help="Start a kernel on this Enterprise Gateway or Kernel Gateway (default: JUPYTER_GATEWAY_URL; "
              "token: --token or JUPYTER_GATEWAY_AUTH_TOKEN).")
    @argument("--token", default=None, help="Its token; better: set BINDER_AUTORUN_TOKEN so no cell holds it.")
    @argument("--local", nargs="?", const=".", default=None, metavar="DIR",
              help="Start a private jupyter_server on 127.0.0.1 serving DIR (default: the current directory).")
    @argument("--kernel-name", default="", help="Kernel spec to start (default: the server's default).")
    @argument("--kernel-id", default="", help="Attach to this running kernel instead of starting one.")
    @argument("--sync", nargs="?", const=".", default=None, metavar="DIR",
              help="Mirror DIR (default: the working directory) around each remote cell (see %%binder_sync).")
    @argument("--cwd", default=None, metavar="DIR", help="Start the kernel in DIR, relative to the server's root "
              "(default: the root, where a notebook opened there would run).")
    @argument("--relaunch", action="store_true", help="Launch a fresh server for the last target (after a cull or crash).")
    @argument("--replay", action="store_true", help="With --relaunch: re-run the cells that ran remotely before.")
    @line_magic
    @_one_sentence
    def binder_on(self, line: str) -> None:
        """Run every following cell on a remote Jupyter kernel (``%%local`` cells stay local).

        Without options, resumes the last remote session (or uses BINDER_AUTORUN_URL).
        """
        args = _parse(self.binder_on, line)
        if args is None:
            return
        autorun = self.autorun
        if args.cwd is not None:
            autorun.kernel_path = self._unquoted(args.cwd).strip("/")
        if autorun.managed:
            print("binder_autorun: skipped: binder-autorun run already connected this notebook.", file=sys.stderr)
            return
        if args.relaunch:
            autorun.relaunch(replay=args.replay)
        elif args.repo:
            autorun.connect_binder(args.repo, args.ref, args.binderhub, args.show_log, kernel_name=args.kernel_name)
        elif args.jupyterhub:
            autorun.connect_jupyterhub(args.jupyterhub, args.token, args.server, kernel_name=args.kernel_name)
        elif args.local is not None:
            autorun.connect_local(args.local, kernel_name=args.kernel_name)
        elif args.gateway is not None:
            autorun.connect_gateway(args.gateway, args.token, kernel_name=args.kernel_name, kernel_id=args.kernel_id)
        elif args.url or args.token or args.kernel_id or args.kernel_name:
            autorun.connect_url(args.url, args.token, kernel_name=args.kernel_name, kernel_id=args.kernel_id)
        else:
            autorun.resume()
        if args.sync is not None:
            autorun.start_sync(self._unquoted(args.sync))

    @magic_arguments()
    @_help
    @argument("--shutdown", action="store_true", help="Also shut down the remote kernel and any server we started.")
    @line_magic
    @_one_sentence
    def binder_off(self, line: str) -> None:
        """Run cells on the local kernel again; the remote kernel stays for a bare %binder_on."""
        args = _parse(self.binder_off, line)
        if args is not None:
            self.autorun.off(shutdown=args.shutdown)

    @magic_arguments()
    @_help
    @argument("--log", action="store_true", help="Show the full build log of the last Binder launch.")
    @line_magic
    @_one_sentence
    def binder_status(self, line: str) -> None:
        """Show the server (never its token), kernel, connection state and idle time."""
        args = _parse(self.binder_status, line)
        if args is not None:
            print(self.autorun.status(show_log=args.log))

    @magic_arguments()
    @_help
    @line_magic
    @_one_sentence
    def binder_restart(self, line: str) -> None:
        """Restart the remote kernel (its state is lost; the connection stays)."""
        if _parse(self.binder_restart, line) is not None:
            self.autorun.restart()

    @magic_arguments()
    @_help
    @line_magic
    @_one_sentence
    def binder_replay(self, line: str) -> None:
        """Re-run the cells that ran remotely before the last %binder_on --relaunch."""
        if _parse(self.binder_replay, line) is not None:
            self.autorun.replay()

    @magic_arguments()
    @_help
    @argument("paths", nargs="*", help="Local files, folders or globs (quote globs); with -v: variable names.")
    @argument("--to", default="", metavar="DIR", help="Remote folder to copy into (created if missing; default: the remote kernel's folder).")
    @argument("-v", "--variables", action="store_true", help="Copy these local variables into the remote namespace.")
    @argument("--pickle", action="store_true", help="With -v: also objects that are not plain data, numpy or pandas, pickled "
              "(the remote kernel unpickles what you send).")
    @argument("--transport", default="", choices=["", "auto", "contents", "kernel"], help="contents API or kernel channel (default: auto).")
    @line_magic
    @_one_sentence
    def binder_push(self, line: str) -> None:
        """Copy local files (or, with -v, variables) to the remote kernel, keeping relative paths; unchanged files are skipped."""
        self._transfer("push", _parse(self.binder_push, line))

    @magic_arguments()
    @_help
    @argument("paths", nargs="*", help="Remote files, folders or globs (quote globs); with -v: variable names.")
    @argument("--to", default="", metavar="DIR", help="Local folder to copy into (created if missing; default: the working directory).")
    @argument("-v", "--variables", action="store_true", help="Copy these remote variables into the local namespace.")
    @argument("--pickle", action="store_true", help="With -v: also objects that are not plain data, numpy or pandas, pickled "
              "(this kernel unpickles what the remote sends: only for a remote you trust).")
    @argument("--transport", default="", choices=["", "auto", "contents", "kernel"], help="contents API or kernel channel (default: auto).")
    @line_magic
    @_one_sentence
    def binder_pull(self, line: str) -> None:
        """Copy remote files (or, with -v, variables) here, keeping relative paths; nothing lands outside the destination."""
        self._transfer("pull", _parse(self.binder_pull, line))

    def _transfer(self, direction: str, args: Any) -> None:
        """The body of %binder_push and %binder_pull, which differ only in direction."""
        if args is None:
            return
        paths, to = [self._unquoted(path) for path in args.paths], self._unquoted(args.to)
        if not paths:
            raise UsageError(f"%binder_{direction} needs at least one path (or, with -v, a variable name); see %binder_{direction} -h.")
        if args.variables:
            if args.pickle:
                print(f"binder_autorun: {TRUST[direction]}", file=sys.stderr)
            move = self.autorun.push_variables if direction == "push" else self.autorun.pull_variables
            print(f"binder_autorun: {direction}ed " + ", ".join(move(paths, pickle=args.pickle)))
        else:
            (self.autorun.push_files if direction == "push" else self.autorun.pull_files)(paths, to, args.transport)

    @magic_arguments()
    @_help
    @argument("folder", nargs="?", default=".", help="Local folder to mirror (default: the working directory).")
    @argument("--off", action="store_true", help="Stop syncing.")
    @argument("--transport", default="", choices=["", "auto", "contents", "kernel"], help="contents API or kernel channel (default: auto).")
    @line_magic
    @_one_sentence
    def binder_sync(self, line: str) -> None:
        """Keep a local folder mirrored: changed local files are pushed before each remote cell, what the cell
        wrote is pulled after it (local wins before a cell, the cell's writes win after it; deletions are not mirrored)."""
        args = _parse(self.binder_sync, line)
        if args is None:
            return
        if args.off:
            self.autorun.stop_sync()
        else:
            self.autorun.start_sync(self._unquoted(args.folder), args.transport)

    @staticmethod
    def _unquoted(text: str) -> str:
        """IPython's magic argument parser keeps quotes: ``'raw/*.json'`` means the glob."""
        return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text
