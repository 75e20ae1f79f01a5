"""binder_autorun: run every cell of a local notebook on a remote Jupyter kernel.

``%load_ext binder_autorun`` registers the magics; ``%binder_on ...`` connects
and routes every cell (except ``%%local`` ones) to the remote kernel.
"""

from __future__ import annotations

from IPython import get_ipython
from IPython.core.interactiveshell import InteractiveShell

from .autorun import BinderAutorun
from .errors import NotConnected

__version__ = "0.1.0"
__all__ = ["BinderAutorun", "load_ipython_extension", "unload_ipython_extension"]

_autorun: BinderAutorun | None = None


def load_ipython_extension(shell: InteractiveShell) -> None:
    """Register the magics and the cell router (``%load_ext binder_autorun``)."""
    global _autorun
    from .magics import BinderMagics

    if _autorun is None or _autorun.shell is not shell:
        _autorun = BinderAutorun(shell)
        shell.configurables.append(_autorun)  # %config BinderAutorun.<trait>
    _autorun.install()
    shell.register_magics(BinderMagics(shell, _autorun))


def unload_ipython_extension(shell: InteractiveShell) -> None:
    """Stop routing and restore IPython's exception handling."""
    if _autorun is not None:
        _autorun.uninstall()


def _run_remote(source: str) -> None:
    """What a routed cell calls (see router.py)."""
    if _autorun is None or get_ipython() is not _autorun.shell:
        raise NotConnected("binder_autorun is not loaded in this shell; run %load_ext binder_autorun.")
    _autorun.run_cell(source)
