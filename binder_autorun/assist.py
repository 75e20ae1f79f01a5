"""What a frontend asks besides running cells, answered where a native kernel would.

While remote mode is on, :class:`RemoteAssist` answers completion, inspection
and ``user_expressions`` from the remote namespace, except for cells that stay
local (``%%local`` cells, our magics), which get the local namespace: the
frontend then sees what it would see if that cell ran where it will run.
Completion also offers this extension's own magics (``%binder_<Tab>``,
``%%loc<Tab>``), which the remote kernel does not know.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from IPython.core.interactiveshell import InteractiveShell

from .errors import BinderAutorunError
from .router import LOCAL_CELL_MAGIC, OWN_MAGICS, CellRouter, stays_local
from .session import KernelSession

log = logging.getLogger(__name__)

#: the magics a ``%`` token may complete to even though only the local kernel has them
OWN_MAGIC_NAMES = tuple(sorted([*(f"%{name}" for name in OWN_MAGICS), LOCAL_CELL_MAGIC]))
#: a magic name being typed: ``%`` or ``%%`` and word characters, at the start of a word
_MAGIC_TOKEN = re.compile(r"(?:^|(?<=\s))%{1,2}\w*\Z")
#: where ipykernel's completions carry their types (JupyterLab reads the matches from here when present)
_TYPES_KEY = "_jupyter_types_experimental"


def _cell_stays_local(code: str) -> bool:
    return stays_local(code.splitlines(keepends=True))


def with_own_magics(reply: dict[str, Any], code: str, cursor: int) -> dict[str, Any]:
    """``reply`` (a complete_reply) plus our magics matching the ``%`` token before ``cursor``.

    A reply has one replaced range for all its matches; matches of another
    range are rewritten to ours so the text each one produces is unchanged.
    """
    token = _MAGIC_TOKEN.search(code, 0, cursor)
    ours = [name for name in OWN_MAGIC_NAMES if token and name.startswith(token.group())]
    if not token or not ours:
        return reply
    start = token.start()
    has_matches = bool(reply.get("matches"))
    end = max(cursor, int(reply.get("cursor_end", cursor))) if has_matches else cursor
    suffix = code[cursor:end]

    def rebased(text: str, at: int) -> str | None:
        if at >= start:
            return code[start:at] + text
        prefix = code[at:start]
        return text[len(prefix) :] if text.startswith(prefix) else None

    theirs_start = int(reply.get("cursor_start", cursor))
    matches = [name + suffix for name in ours]
    for match in reply.get("matches") or []:
        text = rebased(match, theirs_start)
        if text is not None and text not in matches:
            matches.append(text)
    merged = dict(reply, matches=matches, cursor_start=start, cursor_end=end, status="ok")
    metadata = reply.get("metadata") or {}
    if _TYPES_KEY in metadata:
        entries = [{"start": start, "end": end, "text": name + suffix, "type": "magic", "signature": ""} for name in ours]
        for entry in metadata[_TYPES_KEY]:
            text = rebased(entry.get("text", ""), int(entry.get("start", theirs_start)))
            if text is not None and text not in matches[: len(ours)]:
                entries.append(dict(entry, start=start, end=end, text=text))
        merged["metadata"] = dict(metadata, **{_TYPES_KEY: entries})
    return merged


class RemoteAssist:
    """Answers completion, inspection and ``user_expressions`` while remote mode is on.

    In ipykernel, ``do_complete``/``do_inspect`` ask the remote kernel (or the
    local one, for cells that stay local) and ``shell.user_expressions`` hands
    back what the remote evaluated with the cell. In the terminal, a completer
    matcher asks the remote kernel and suppresses local matches.
    """

    def __init__(self, shell: InteractiveShell, session_getter: Callable[[], KernelSession], router: CellRouter) -> None:
        self.shell = shell
        self.session = session_getter
        self.router = router
        self.kernel = getattr(shell, "kernel", None)
        #: the remote's user_expressions results for the routed cell that just ran
        self._remote_results: dict[str, Any] = {}
        self._matcher = self._make_matcher()

    def install(self) -> None:
        """Answer completion, inspection and user_expressions from the remote kernel."""
        if self.kernel is not None:
            self.kernel.do_complete = self.complete
            self.kernel.do_inspect = self.inspect
            self.shell.user_expressions = self.user_expressions  # type: ignore[method-assign]
        elif self._matcher not in self.shell.Completer.custom_matchers:
            self.shell.Completer.custom_matchers.insert(0, self._matcher)

    def uninstall(self) -> None:
        """Answer them locally again."""
        if self.kernel is not None:
            for name in ("do_complete", "do_inspect"):
                self.kernel.__dict__.pop(name, None)
            self.shell.__dict__.pop("user_expressions", None)
        elif self._matcher in self.shell.Completer.custom_matchers:
            self.shell.Completer.custom_matchers.remove(self._matcher)

    # -- completion and inspection ----------------------------------------------

    def complete(self, code: str, cursor_pos: int | None) -> dict[str, Any]:
        """The complete_reply of the kernel the cell will run on, plus our own magics."""
        cursor = len(code) if cursor_pos is None else cursor_pos
        assert self.kernel is not None  # installed as the kernel's handler only
        if _cell_stays_local(code):
            reply = type(self.kernel).do_complete(self.kernel, code, cursor)
        else:
            reply = self._remote_complete(code, cursor)
        return with_own_magics(reply, code, cursor)

    def inspect(self, code: str, cursor_pos: int, detail_level: int = 0, omit_sections: Any = ()) -> dict[str, Any]:
        """The inspect_reply of the kernel the cell will run on (not found if the remote cannot answer)."""
        assert self.kernel is not None  # installed as the kernel's handler only
        if _cell_stays_local(code):
            return type(self.kernel).do_inspect(self.kernel, code, cursor_pos, detail_level, omit_sections)  # type: ignore[no-any-return]
        try:
            return self.session().inspect(code, cursor_pos, detail_level)
        except BinderAutorunError as exc:
            log.info("remote inspection failed: %s", exc)
            return {"status": "ok", "found": False, "data": {}, "metadata": {}}

    def _remote_complete(self, code: str, cursor: int) -> dict[str, Any]:
        try:
            return self.session().complete(code, cursor)
        except BinderAutorunError as exc:
            log.info("remote completion failed: %s", exc)
            return {"status": "ok", "matches": [], "cursor_start": cursor, "cursor_end": cursor, "metadata": {}}

    def _make_matcher(self) -> Any:
        from IPython.core.completer import SimpleCompletion, context_matcher

        @context_matcher()  # type: ignore[untyped-decorator]
        def remote_matcher(context: Any) -> dict[str, Any]:
            if _cell_stays_local(context.full_text):
                return {"completions": [], "suppress": False}  # IPython's own matchers answer
            lines = context.full_text.split("\n")
            offset = sum(len(line) + 1 for line in lines[: context.cursor_line]) + context.cursor_position
            reply = with_own_magics(self._remote_complete(context.full_text, offset), context.full_text, offset)
            start = int(reply.get("cursor_start", offset))
            return {
                "completions": [SimpleCompletion(text=match) for match in reply.get("matches", [])],
                "suppress": True,
                "matched_fragment": context.full_text[start:offset],
            }

        return remote_matcher

    # -- user_expressions -----------------------------------------------------

    def requested_expressions(self) -> dict[str, str]:
        """The ``user_expressions`` of the execute request being handled (sent along with a routed cell)."""
        if self.kernel is None:
            return {}
        parent = self.kernel.get_parent("shell") or {}
        return dict(parent.get("content", {}).get("user_expressions") or {})

    def remember(self, reply: dict[str, Any]) -> None:
        """Keep the remote's results from a routed cell's execute_reply for :meth:`user_expressions`."""
        self._remote_results = dict(reply.get("user_expressions") or {})

    def user_expressions(self, expressions: dict[str, str]) -> dict[str, Any]:
        """``shell.user_expressions`` while remote mode is on: evaluated where the cell ran.

        ipykernel calls it after a cell that succeeded. A routed cell's
        expressions went with it (:meth:`requested_expressions`); an empty cell
        (variable inspectors send ``code=""``) asks the remote with a silent
        empty execute; local cells, and calls from code a cell runs, evaluate
        locally.
        """
        results, self._remote_results = self._remote_results, {}
        if not expressions or self.router.depth > 0 or self.router.cell == "local":
            return type(self.shell).user_expressions(self.shell, expressions)  # type: ignore[no-any-return]
        if self.router.cell == "remote":
            return results
        try:
            reply = self.session().execute("", None, silent=True, store_history=False, stop_on_error=False, user_expressions=expressions)
        except BinderAutorunError as exc:
            log.info("remote user_expressions failed: %s", exc)
            error = {"status": "error", "ename": type(exc).__name__, "evalue": str(exc), "traceback": []}
            return {name: dict(error) for name in expressions}
        return dict(reply.get("user_expressions") or {})
