"""Magics: parse arguments, call :class:`~binder_autorun.autorun.BinderAutorun`. Nothing else."""

from __future__ import annotations

from typing import Any

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .autorun import BinderAutorun


_help = argument("-h", "--help", action="store_true", help="Show this help.")


def _parse(magic: Any, line: str) -> Any:
    """Parse a magic's arguments; None (help printed) for -h."""
    args = parse_argstring(magic, line)
    if args.help:
        print(magic.parser.format_help())
        return None
    return args


@magics_class
class BinderMagics(Magics):
    """``%binder_on``, ``%binder_off``, ``%binder_status``, ``%binder_restart``, ``%%local``."""

    def __init__(self, shell, autorun: BinderAutorun) -> None:  # type: ignore[no-untyped-def]
        super().__init__(shell)
        self.autorun = autorun

    @magic_arguments()
    @_help
    @argument("--url", default="", help="URL of a running Jupyter server (its base_url included).")
    @argument("--token", default=None, help="Its token; better: set BINDER_AUTORUN_TOKEN so no cell holds it.")
    @argument("--local", nargs="?", const=".", default=None, metavar="DIR",
              help="Start a private jupyter_server on 127.0.0.1 serving DIR (default: the current directory).")
    @argument("--kernel-name", default="", help="Kernel spec to start (default: the server's default).")
    @argument("--kernel-id", default="", help="Attach to this running kernel instead of starting one.")
    @line_magic
    def binder_on(self, line: str) -> None:
        """Run every following cell on a remote Jupyter kernel (``%%local`` cells stay local).

        Without options, resumes the last remote session (or uses BINDER_AUTORUN_URL).
        """
        args = _parse(self.binder_on, line)
        if args is None:
            return
        if args.local is not None:
            self.autorun.connect_local(args.local, kernel_name=args.kernel_name)
        elif args.url or args.token or args.kernel_id or args.kernel_name:
            self.autorun.connect_url(args.url, args.token, kernel_name=args.kernel_name, kernel_id=args.kernel_id)
        else:
            self.autorun.resume()

    @magic_arguments()
    @_help
    @argument("--shutdown", action="store_true", help="Also shut down the remote kernel and any server we started.")
    @line_magic
    def binder_off(self, line: str) -> None:
        """Run cells on the local kernel again; the remote kernel stays for a bare %binder_on."""
        args = _parse(self.binder_off, line)
        if args is not None:
            self.autorun.off(shutdown=args.shutdown)

    @magic_arguments()
    @_help
    @line_magic
    def binder_status(self, line: str) -> None:
        """Show the server (never its token), kernel and connection state."""
        if _parse(self.binder_status, line) is not None:
            print(self.autorun.status())

    @cell_magic
    def local(self, line: str, cell: str) -> None:
        """Run this cell on the local kernel while remote mode is on."""
        self.shell.run_cell(cell, store_history=False)
