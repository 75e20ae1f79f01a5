"""Mirroring a remote session into the local IPython display, prompts and history.

:class:`DisplayMirror` is the :class:`~binder_autorun.session.OutputSink` of a
routed cell: each remote message is re-published through IPython's own display
machinery (displayhook, display publisher, streams, traceback display), so the
local frontend sees what a native kernel would have sent: MIME bundles and
metadata unchanged, display ids, clear_output, streams in arrival order, and
``Out[n]``/prompts carrying the remote execution count.

:class:`ExecutionCounter` keeps one numbering shared by the local shell and the
remote kernel without ever moving IPython's count backwards inside a history
session (which is what makes IPython print "Session/line number was not unique
in database").
"""

from __future__ import annotations

import builtins
import getpass
import logging
import re
import sys
import time
from typing import Any

from IPython.core import page
from IPython.core.error import StdinNotImplementedError
from IPython.core.interactiveshell import InteractiveShell
from IPython.display import clear_output, publish_display_data

from . import wire
from .bridge import Bridge
from .frontend import KernelFrontend
from .errors import RemoteError, remote_error, remote_error_class

log = logging.getLogger(__name__)


class RemoteResult:
    """What ``Out[n]`` and ``_`` hold for a remote execute_result: its MIME bundle."""

    def __init__(self, data: dict[str, Any], metadata: dict[str, Any], transient: dict[str, Any] | None = None) -> None:
        self.data = data
        self.metadata = metadata
        self.transient = transient or {}

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.transient:
            # ipykernel's displayhook builds its message before formatting; a display
            # id on an execute_result must ride along for later update_display_data
            message = getattr(InteractiveShell.instance().displayhook, "msg", None)
            if isinstance(message, dict):
                message["content"]["transient"] = self.transient
        return self.data, self.metadata

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", ""))

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


class ExecutionCounter:
    """Keeps the local prompt/``Out[n]`` numbering equal to the remote one.

    Moving forward is always safe: IPython's ``In`` lists are padded so
    ``In[n]`` stays the cell numbered n. Moving backward (a non-IPython remote
    kernel that restarted at 1) opens a new IPython history session first.
    """

    def __init__(self, shell: InteractiveShell) -> None:
        self.shell = shell

    @property
    def next(self) -> int:
        """The number the next stored cell will get."""
        return int(self.shell.execution_count)

    def set_next(self, count: int) -> None:
        """Between cells: make the next stored cell take ``count``."""
        if count == self.next:
            return
        self._prepare_history(count, current=None)
        self.shell.execution_count = count

    def set_current(self, count: int) -> None:
        """Inside a stored cell: renumber it ``count`` (prompt, ``Out[count]``, reply)."""
        current = self.shell.displayhook.prompt_count
        if count == current:
            return
        self._prepare_history(count, current=current)
        # IPython >= 9.10 has already counted this cell (prompt_count is count - 1); older ones count after it
        self.shell.execution_count += count - current

    def _prepare_history(self, count: int, current: int | None) -> None:
        history = self.shell.history_manager
        if history is None:
            return
        parsed, raw = history.input_hist_parsed, history.input_hist_raw
        keep = (parsed.pop(), raw.pop()) if current is not None and len(parsed) > 1 else None
        if count < len(parsed):
            log.info("remote execution count went back to %d; starting a new IPython history session", count)
            history.writeout_cache()
            history.end_session()
            history.new_session()
            del parsed[1:], raw[1:]
        while len(parsed) < count:
            parsed.append("")
            raw.append("")
        if keep is not None:
            parsed.append(keep[0])
            raw.append(keep[1])


def rewrite_history(shell: InteractiveShell, line: int, source: str, raw: str | None = None) -> None:
    """Make ``In[line]``, ``%history`` and the history database hold ``source`` (and ``raw``).

    Routed cells are stored as the routing call the transformer made of them,
    and a magic line may hold a token: both are rewritten in memory, in the
    pending database writes, and in the database row if it was written already.
    """
    history = shell.history_manager
    if history is None or len(history.input_hist_parsed) <= 1:
        return
    source = source.rstrip("\n")
    history.input_hist_parsed[-1] = source
    if raw is not None:
        raw = raw.rstrip("\n")
        history.input_hist_raw[-1] = raw
        shell.user_ns[f"_i{line}"] = raw
        history._i00 = raw  # what the next cell's ``_i`` becomes
    with history.db_input_cache_lock:
        for index, entry in enumerate(history.db_input_cache):
            if entry[0] == line:
                history.db_input_cache[index] = (line, source, entry[2] if raw is None else raw)
                return
        try:  # the saving thread already wrote it
            with history.db:
                if raw is None:
                    history.db.execute("UPDATE history SET source=? WHERE session=? AND line=?", (source, history.session_number, line))
                else:
                    history.db.execute(
                        "UPDATE history SET source=?, source_raw=? WHERE session=? AND line=?",
                        (source, raw, history.session_number, line),
                    )
        except Exception:  # a read-only or broken history database must not fail the cell
            log.debug("could not rewrite history line %d", line, exc_info=True)


#: bytes of output a relay holds back for company at most (a bigger message goes at once)
HOLD_AT_MOST = 65536


class OutputRelay:
    """Re-sends a routed cell's plain output unchanged from the channel's reader thread
    (a :class:`~binder_autorun.channel.Relay`), so it costs no hand-off to the main thread
    and keeps the remote's order with everything else the reader re-sends.

    Plain output is held while more frames are waiting or follow within
    ``channel.JOIN_WAIT`` (and sent at most ``channel.JOIN_MAX`` after it came), then
    sent in one go: consecutive stream text joined, as ipykernel's own buffered streams
    join it, and the rest handed to the local IOPub thread in one batch — a remote's
    burst of small outputs costs the frontend fewer messages and the local kernel one
    wake-up, not one per message. From the moment the reader hands over an
    ``input_request`` until the answer, errors are shown from here too.
    """

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.at_prompt = False
        self._parent: wire.Message | None = None
        #: output not yet sent, in order: messages, and [name, texts] for joined stream text
        self._pending: list[Any] = []
        self._pending_since = 0.0

    def take(self, msg: wire.Message) -> bool:
        kind = wire.msg_type(msg)
        if kind not in _RELAYED and not (self.at_prompt and kind == "error"):
            return False
        if self._parent is None:  # every message of one relay answers one request
            self._parent = self.bridge.parent_of(msg)
            if self._parent is None:  # not a request of ours (cannot happen for a routed cell's own messages)
                return True
        if kind.startswith("comm_"):
            self.flush()
            self.bridge.publish(msg)
            return True
        pending = self._pending
        if not pending:
            self._pending_since = time.monotonic()
        if kind == "stream":
            content = msg["content"]
            name = str(content.get("name", "stdout"))
            text = str(content.get("text", ""))
            if pending and isinstance(pending[-1], list) and pending[-1][0] == name:
                pending[-1][1].append(text)
            else:
                pending.append([name, [text]])
        else:
            pending.append(msg)
            if isinstance(msg, wire.Received) and msg.size() > HOLD_AT_MOST:
                self.flush()  # a big output gains nothing from company and should not wait in memory
        return True

    def hand_over(self, msg: wire.Message) -> bool:
        self.bridge.frontend.seal()
        kind = wire.msg_type(msg)
        if kind == "input_request":
            # from here the main thread catches up and then waits for the user: an error it
            # would have to show would stop all remote output until the answer
            self.at_prompt = True
        return kind in _SHOWN_BY_MIRROR

    def seal(self) -> None:
        """A request starts: what is relayed for it goes out after what this thread sent before."""
        self.bridge.frontend.seal()

    def prompt_over(self) -> None:
        """The user answered (or the request ended): errors are the main thread's again."""
        self.at_prompt = False

    def held_since(self) -> float | None:
        """When the oldest output not yet sent arrived (None: nothing held)."""
        return self._pending_since if self._pending else None

    def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        assert self._parent is not None
        messages = [
            {"header": {"msg_type": "stream"}, "content": {"name": item[0], "text": "".join(item[1])}} if isinstance(item, list) else item
            for item in pending
        ]
        self.bridge.frontend.send_all(messages, self._parent)


class DisplayMirror:
    """Re-publishes the messages of one remote cell through the local shell.

    Comm messages, and output that arrives while the main thread waits at an
    ``input()`` prompt, go through the ``bridge`` (it can send from any thread,
    with the right parent). Under a kernel, plain output (streams, displays,
    updates, clear_output, comms) is re-sent by the :attr:`relay` from the
    channel's reader thread, unchanged: IPython's display publisher would
    re-clean every bundle and wait twice per message for the IOPub thread to
    flush both streams, and a hand-off to the main thread per message made
    thousands of small messages cost twice their native time.
    """

    def __init__(
        self, shell: InteractiveShell, counter: ExecutionCounter | None = None, track_count: bool = True, bridge: Bridge | None = None
    ) -> None:
        self.shell = shell
        self.counter = counter or ExecutionCounter(shell)
        self.track_count = track_count
        self.bridge = bridge
        #: the remote ``error`` output already shown in this cell, if any
        self.shown_error: dict[str, Any] | None = None
        self._last_stream: Any = None
        self._unflushed = False
        direct = bridge is not None and isinstance(bridge.frontend, KernelFrontend)
        #: shows plain output from the reader thread (under a kernel), see the session's OutputSink
        self.relay = OutputRelay(bridge) if direct and bridge is not None else None

    # -- OutputSink ---------------------------------------------------------

    def on_message(self, msg: wire.Message) -> None:
        kind = wire.msg_type(msg)
        if kind in _SHOWN:
            self.flush()  # in order with the text before it, as ipykernel's display publisher does
        if kind.startswith("comm_"):
            if self.bridge is not None:
                self.bridge.publish(msg)
            return
        handler = getattr(self, "_on_" + kind, None)
        if handler is not None:
            handler(msg["content"])

    def publish_aside(self, msg: wire.Message) -> None:
        """Show output that arrives while the main thread waits for the user's input."""
        if self.bridge is not None:
            self.bridge.publish(msg)

    def on_input(self, prompt: str, password: bool) -> str | None:
        if self.relay is not None:
            self.relay.bridge.frontend.drain()  # the input request (stdin channel) must not overtake the text before it
        try:
            if not password and DEBUGGER_PROMPT.match(prompt) and _terminal_prompt(self.shell) is not None:
                return _debugger_line(self.shell, prompt)
            # look the functions up now: ipykernel swaps them per request
            return getpass.getpass(prompt) if password else builtins.input(prompt)
        except StdinNotImplementedError:
            print(
                "binder_autorun: the remote cell asked for input, but this frontend does not accept input; "
                "the remote gets end-of-file.",
                file=sys.stderr,
            )
            return None
        except EOFError:  # Ctrl-D at the prompt: the remote input() gets end-of-file too
            return None

    @property
    def allow_stdin(self) -> bool:
        """Whether the local frontend can answer ``input()`` right now."""
        kernel = getattr(self.shell, "kernel", None)
        return bool(getattr(kernel, "_allow_stdin", True))

    # -- message handlers -----------------------------------------------------

    def _on_execute_input(self, content: dict[str, Any]) -> None:
        count = content.get("execution_count")
        if self.track_count and isinstance(count, int) and count > 0:
            self.counter.set_current(count)

    def _on_stream(self, content: dict[str, Any]) -> None:
        stream = sys.stderr if content.get("name") == "stderr" else sys.stdout
        if self._last_stream is not None and self._last_stream is not stream:
            self._last_stream.flush()  # stdout and stderr buffer apart: keep their arrival order
        self._last_stream = stream
        stream.write(content.get("text", ""))
        self._unflushed = True

    def flush(self) -> None:
        """Show streamed text now (ipykernel would otherwise hold it up to 0.2 s)."""
        if self._unflushed:
            self._last_stream.flush()
            self._unflushed = False

    def _on_display_data(self, content: dict[str, Any], update: bool = False) -> None:
        publish_display_data(
            content.get("data", {}),
            content.get("metadata", {}),
            transient=content.get("transient") or {},
            update=update,
        )

    def _on_update_display_data(self, content: dict[str, Any]) -> None:
        self._on_display_data(content, update=True)

    def _on_clear_output(self, content: dict[str, Any]) -> None:
        clear_output(wait=bool(content.get("wait", False)))

    def _on_execute_result(self, content: dict[str, Any]) -> None:
        self.shell.displayhook(RemoteResult(content.get("data", {}), content.get("metadata", {}), content.get("transient")))

    def _on_error(self, content: dict[str, Any]) -> None:
        # shown now, in order; whether the cell fails is for the execute_reply to decide
        error = remote_error(content, shown=True)
        self.shell._showtraceback(type(error), error, local_colors(self.shell, error.traceback))
        self.shown_error = content

    # -- the reply ------------------------------------------------------------

    def finish(self, reply: dict[str, Any]) -> None:
        """Apply the execute_reply: payloads, then fail the cell if the remote failed."""
        self.flush()
        for payload in reply.get("payload") or []:
            self._on_payload(payload)
        if reply.get("status") == "ok":
            return
        if reply.get("status") == "aborted":
            raise remote_error_class("ExecutionAborted")("the remote kernel aborted this cell after an earlier error", [])
        if not self._already_shown(reply) and not reply.get("traceback"):
            reply = {**reply, "traceback": [f"{reply.get('ename', 'Error')}: {reply.get('evalue', '')}"]}  # say what failed
        raise remote_error(reply, shown=self._already_shown(reply))

    def _already_shown(self, reply: dict[str, Any]) -> bool:
        """Whether the reply's error needs no output of its own.

        It was shown if an ``error`` output carried it (the same name and value,
        or the same traceback: a formatter that raised makes ipykernel fail the
        reply as ``NoneType`` with the traceback it showed); IPython's
        ``UsageError`` has no traceback and was shown as its stderr line.
        """
        if not reply.get("traceback") and reply.get("ename") == "UsageError":
            return True  # IPython printed it as one stderr line, which was mirrored
        shown = self.shown_error
        if shown is None:
            return False
        same = (shown.get("ename"), shown.get("evalue")) == (reply.get("ename"), reply.get("evalue"))
        return same or shown.get("traceback") == reply.get("traceback")

    def _on_payload(self, payload: dict[str, Any]) -> None:
        source = payload.get("source")
        if source == "page":
            page.page(payload.get("data", {}), start=int(payload.get("start", 0)))
        elif source == "set_next_input":
            self.shell.set_next_input(payload.get("text", ""), replace=bool(payload.get("replace", False)))
        elif source == "ask_exit":
            print("binder_autorun: the remote kernel was asked to exit; use %binder_off --shutdown to end the remote session.", file=sys.stderr)


#: output a kernel's mirror re-sends unchanged from the reader thread (see OutputRelay)
_RELAYED = frozenset({"stream", "display_data", "update_display_data", "clear_output", "comm_open", "comm_msg", "comm_close"})
#: what the mirror shows on the main thread when a relay leaves it (execute_result: Out[n])
_SHOWN_BY_MIRROR = frozenset({"execute_result", "error"})
#: messages shown through IPython's machinery, after the stream text before them
_SHOWN = frozenset({"execute_result", "error", "comm_open", "comm_msg", "comm_close"})

#: what pdb, ipdb and pdb++ ask with (a remote debugger's prompt)
DEBUGGER_PROMPT = re.compile(r"^\s*(\(Pdb\+*\)|ipdb>)\s*$")


def _terminal_prompt(shell: InteractiveShell) -> Any:
    """The terminal's prompt_toolkit session, if this shell has one (not a kernel, not --simple-prompt)."""
    return getattr(shell, "pt_app", None)


def _debugger_line(shell: InteractiveShell, prompt: str) -> str:
    """A remote debugger's prompt read as IPython's own debugger reads it in a terminal:
    line editing, and the Up arrow recalling earlier debugger commands (shared with ``%debug``)."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.application import create_app_session
    from prompt_toolkit.history import InMemoryHistory

    history = getattr(shell, "debugger_history", None)
    if history is None:
        history = shell.debugger_history = InMemoryHistory()  # type: ignore[attr-defined]
    session: PromptSession[str] = PromptSession(history=history, enable_history_search=True)
    with create_app_session():
        return session.prompt(prompt)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def local_colors(shell: InteractiveShell, traceback: list[str]) -> list[str]:
    """A remote traceback as the local colour scheme shows it: without colours under ``nocolor``."""
    if str(getattr(shell, "colors", "")).lower() != "nocolor":
        return traceback
    return [_ANSI.sub("", line) for line in traceback]


def show_remote_error(shell: InteractiveShell, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> list[str]:
    """IPython custom exception handler for :class:`RemoteError`.

    Shows the remote traceback unless the mirror already showed it, so the
    local cell fails (reply status ``error``, remote ename/evalue) with exactly
    one error output, in the position the remote produced it.
    """
    assert isinstance(value, RemoteError)
    if value.shown:
        shell._last_traceback = value.traceback  # type: ignore[attr-defined]  # ipykernel's execute_reply takes it
    else:
        shell._showtraceback(etype, value, local_colors(shell, value.traceback))
    return []
