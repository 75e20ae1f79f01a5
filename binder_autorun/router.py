"""Routing cells: the IPython input transformer that sends every cell remote.

Registered first in ``input_transformers_cleanup`` (before IPython's own
cleanup, so ``%%local`` and our magics are still visible) and marked
``has_side_effects`` so IPython does not run it for its completeness check
(the terminal's multi-line entry keeps working). It is pure and never raises:
ipykernel may call it several times for one cell.

A routed cell becomes one line that calls :func:`binder_autorun._run_remote`
with the original source, which runs it remotely and mirrors the outputs.
"""

from __future__ import annotations

from collections.abc import Callable

#: first-line prefixes that keep a cell on the local kernel
LOCAL_CELL_MAGIC = "%%local"
OWN_MAGICS = ("binder_on", "binder_off", "binder_status", "binder_restart", "binder_replay")
#: cells that leave the local session (a terminal user means "quit IPython", not the remote kernel)
EXIT_CELLS = frozenset({"exit", "quit", "exit()", "quit()", "%exit", "%quit", "%exit_raise"})


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
    return word.startswith("%") and not word.startswith("%%") and word.lstrip("%") in OWN_MAGICS


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


def make_transformer(is_active: Callable[[], bool]) -> Callable[[list[str]], list[str]]:
    """The input transformer; routes only while ``is_active()`` is true."""

    def route_cell(lines: list[str]) -> list[str]:
        if stays_local(lines):
            return strip_local_magic(lines)
        return remote_call("".join(lines)) if is_active() else lines

    route_cell.has_side_effects = True  # type: ignore[attr-defined]
    return route_cell
