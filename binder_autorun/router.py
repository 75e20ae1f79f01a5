"""Routing cells: the IPython input transformer that sends every cell remote.

Registered first in ``input_transformers_cleanup`` (before IPython's own
cleanup, so ``%%local`` and our magics are still visible) and marked
``has_side_effects`` so IPython does not run it for its completeness check
(the terminal's multi-line entry keeps working). It is pure and never raises:
ipykernel may call it several times for one cell.

Only a top-level cell is routed. IPython and ipykernel transform a top-level
cell before ``run_cell_async`` starts; everything a running cell transforms
(``%%time``, ``%timeit``, ``%%prun`` call ``shell.transform_cell``; ``%%capture``
and ``get_ipython().run_cell`` run nested cells) does so while it runs. So
:class:`CellRouter` counts the ``run_cell_async`` calls in progress and routes
only at depth 0: whatever a ``%%local`` cell runs, however nested, stays local.

A routed cell becomes one line that calls :func:`binder_autorun._run_remote`
with the original source, which runs it remotely and mirrors the outputs.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any, Literal

from IPython.core.interactiveshell import InteractiveShell

log = logging.getLogger(__name__)

#: first-line prefixes that keep a cell on the local kernel
LOCAL_CELL_MAGIC = "%%local"
OWN_MAGICS = ("binder_on", "binder_off", "binder_status", "binder_restart", "binder_replay", "binder_push", "binder_pull", "binder_sync")
#: cells that leave the local session (a terminal user means "quit IPython", not the remote kernel)
EXIT_CELLS = frozenset({"exit", "quit", "exit()", "quit()", "%exit", "%quit", "%exit_raise"})
#: ``%load_ext binder_autorun`` and its siblings (``%`` optional: automagic) act on this extension, which is local
_EXTENSION_MAGIC = re.compile(r"%?(load|unload|reload)_ext\s+binder_autorun\s*$")

CellKind = Literal["remote", "local", "empty"]


def first_line(lines: list[str]) -> str:
    """The first non-blank line, stripped (cells may start with blank lines)."""
    return next((line.strip() for line in lines if line.strip()), "")


def stays_local(lines: list[str]) -> bool:
    """Whether a cell runs on the local kernel even in remote mode."""
    head = first_line(lines)
    if not head or "".join(lines).strip() in EXIT_CELLS:
        return True
    word = head.split(None, 1)[0].rstrip("?")  # ``%binder_on?`` asks for local help too
    if word == LOCAL_CELL_MAGIC or head.replace(" ", "").startswith("%configBinderAutorun"):
        return True  # %config BinderAutorun[.trait = ...] configures this extension, which is local
    if _EXTENSION_MAGIC.match(head):
        return True
    return word.startswith("%") and not word.startswith("%%") and word.lstrip("%") in OWN_MAGICS


def classify(lines: list[str], active: bool) -> CellKind:
    """Where a top-level cell runs: remote (routed), local, or nowhere (empty)."""
    if not first_line(lines):
        return "empty"
    return "remote" if active and not stays_local(lines) else "local"


def strip_local_magic(lines: list[str]) -> list[str]:
    """Drop a leading ``%%local`` line (and the blank lines before it)."""
    for index, line in enumerate(lines):
        if line.strip():
            words = line.split(None, 1)
            return lines[index + 1 :] if words[0] == LOCAL_CELL_MAGIC else lines
    return lines


def remote_call(source: str) -> list[str]:
    """The one line a routed cell becomes."""
    return [f"__import__('binder_autorun')._run_remote({source!r})\n"]


class CellRouter:
    """Decides where each cell runs; routes top-level cells only.

    ``depth`` counts the ``run_cell_async`` calls in progress on the shell it
    is installed on; ``cell`` is the kind of the running (or last) top-level
    cell, which tells later hooks of the same request (``user_expressions``)
    where that cell ran.
    """

    def __init__(self, is_active: Callable[[], bool]) -> None:
        self.is_active = is_active
        self.depth = 0
        self.cell: CellKind = "empty"
        self._shell: InteractiveShell | None = None
        self._saved_run_cell_async: Any = None

    def transform(self, lines: list[str]) -> list[str]:
        """The input transformer: a routed top-level cell becomes a remote call; ``%%local`` is stripped."""
        if self.depth == 0 and classify(lines, self.is_active()) == "remote":
            return remote_call("".join(lines))
        return strip_local_magic(lines)

    transform.has_side_effects = True  # type: ignore[attr-defined]  # not run for IPython's completeness check

    def install(self, shell: InteractiveShell) -> None:
        """Register the transformer and count the cells running on ``shell``."""
        cleanup = shell.input_transformers_cleanup
        if self.transform not in cleanup:
            cleanup.insert(0, self.transform)
        if self._shell is None:
            self._shell = shell
            self._saved_run_cell_async = shell.__dict__.get("run_cell_async")
            shell.run_cell_async = self._counting(shell.run_cell_async)  # type: ignore[method-assign]

    def uninstall(self, shell: InteractiveShell) -> None:
        """Undo :meth:`install` (a cell running now still counts itself out)."""
        if self.transform in shell.input_transformers_cleanup:
            shell.input_transformers_cleanup.remove(self.transform)
        if self._shell is not shell:
            return
        self._shell = None
        if self._saved_run_cell_async is None:
            shell.__dict__.pop("run_cell_async", None)
        else:
            shell.run_cell_async = self._saved_run_cell_async  # type: ignore[method-assign]

    def _counting(self, run_cell_async: Callable[..., Any]) -> Callable[..., Any]:
        """``run_cell_async`` that keeps ``depth`` and classifies top-level cells."""

        @functools.wraps(run_cell_async)  # keeps the signature: ipykernel inspects it for cell_id/cell_meta
        async def counted(*args: Any, **kwargs: Any) -> Any:
            if self.depth == 0:
                raw = args[0] if args else kwargs.get("raw_cell", "")
                self.cell = classify(str(raw or "").splitlines(keepends=True), self.is_active())
            self.depth += 1
            try:
                return await run_cell_async(*args, **kwargs)
            finally:
                self.depth -= 1

        return counted
