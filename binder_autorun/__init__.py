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

#: ``%reload_ext`` unloads, re-runs this file (importlib.reload) and loads again: the
#: instance, its session and whether it was routing survive the re-run
_autorun: BinderAutorun | None = globals().get("_autorun")
_routing_at_unload: bool = globals().get("_routing_at_unload", False)
#: this run of the file is such a reload (the load that follows restores remote mode)
_reloading: bool = _autorun is not None


def load_ipython_extension(shell: InteractiveShell) -> None:
    """Register the magics and the cell router (``%load_ext binder_autorun``)."""
    global _autorun, _reloading, _routing_at_unload
    from .magics import BinderMagics

    resume = _reloading and _routing_at_unload
    _reloading = _routing_at_unload = False
    if _autorun is None or _autorun.shell is not shell:
        _autorun = BinderAutorun(shell)
        shell.configurables.append(_autorun)  # %config BinderAutorun.<trait>
        resume = False
    _autorun.install()
    shell.register_magics(BinderMagics(shell, _autorun))
    if resume:
        _autorun.activate()


def unload_ipython_extension(shell: InteractiveShell) -> None:
    """Stop routing (the session is kept, as by ``%binder_off``) and restore IPython's exception handling."""
    global _routing_at_unload
    if _autorun is not None:
        _routing_at_unload = _autorun.active
        _autorun.uninstall()


def _run_remote(source: str) -> None:
    """What a routed cell calls (see router.py)."""
    if _autorun is None or get_ipython() is not _autorun.shell:
        raise NotConnected("binder_autorun is not loaded in this shell; run %load_ext binder_autorun.")
    _autorun.run_cell(source)
