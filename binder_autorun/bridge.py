"""Bridging what no cell waits for: late output and comms, both ways.

A native kernel keeps talking after a cell ends: a thread prints, a widget's
callback runs when a slider moves, an Output widget captures. Remotely, those
messages reach the channel while no routed request waits for them; the channel
hands them, in order, to its one outlet, and the :class:`Bridge` re-sends each
to the local frontend with the parent the frontend knows (the local cell or
widget event whose id the remote request reused), so it lands where it would
natively: under its cell, in its Output widget, on its widget.

The other way, each remote comm has a stand-in in the local kernel's comm
manager (:class:`RemoteComm`), so the frontend's messages to it — and
``comm_info_request`` listings — work as for a local comm: a message is sent
to the remote kernel with the frontend's own msg_id, and the local kernel
stays busy until the remote is idle again, as the remote itself would be.
Comms of ``%%local`` widgets stay local; a frontend opening a comm goes to
the remote while remote mode is on (or when only the remote can have that
target).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from . import wire
from .channel import Event
from .errors import BinderAutorunError
from .frontend import LocalFrontend
from .session import KernelSession, StopWaiting

log = logging.getLogger(__name__)

COMM_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})
#: output a frontend shows where its parent request's output goes
OUTPUT_TYPES = frozenset({"stream", "display_data", "update_display_data", "clear_output", "error", "execute_result"})
#: tornado's default websocket_max_message_size: a bigger frame makes the server drop the connection
MAX_FRAME = 10 * 1024 * 1024


class RemoteComm:
    """Stands in the local comm manager for a comm that lives in the remote kernel.

    The comm manager hands it the frontend's ``comm_msg``/``comm_close``; it
    forwards them. ``comm_info_request`` lists it with its target, as natively.
    """

    primary = False

    def __init__(self, bridge: Bridge, comm_id: str, target_name: str, opened_by: wire.Message | None = None) -> None:
        self.bridge = bridge
        self.comm_id = comm_id
        self.target_name = target_name
        #: the local request under which it was opened (where to say that its kernel is gone)
        self.opened_by = opened_by
        self._closed = False

    def __repr__(self) -> str:
        return f"RemoteComm({self.comm_id!r}, target={self.target_name!r})"

    def handle_msg(self, msg: wire.Message) -> None:
        self.bridge.forward(msg)

    def handle_close(self, msg: wire.Message) -> None:
        self.bridge.forward(msg)

    def close(self, data: Any = None, metadata: Any = None, buffers: Any = None, deleting: bool = False) -> None:
        """Local code closing the stand-in: forget it here (the remote comm is the remote's)."""
        self.bridge.drop_comm(self.comm_id)


class _ForwardRelay:
    """Shows what a forwarded frontend message causes from the reader thread, in order."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def take(self, msg: wire.Message) -> bool:
        if wire.msg_type(msg) not in COMM_TYPES | OUTPUT_TYPES:
            return False
        self.bridge.publish(msg)
        return True

    def hand_over(self, msg: wire.Message) -> bool:
        self.bridge.frontend.seal()  # the local kernel's idle for this event comes after what was sent
        return False  # what this relay leaves (status) shows nothing

    def flush(self) -> None:
        pass  # holds nothing: sends as it takes

    def held_since(self) -> float | None:
        return None

    def seal(self) -> None:
        """The event starts: what it causes goes out after the local busy sent before."""
        self.bridge.frontend.seal()


class _ForwardSink:
    """Where the messages caused by a forwarded frontend message go: back to the frontend."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.relay = _ForwardRelay(bridge)

    def on_message(self, msg: wire.Message) -> None:
        self.bridge.publish(msg)

    def on_input(self, prompt: str, password: bool) -> str | None:
        return None  # a comm message allows no stdin, natively neither

    def flush(self) -> None:
        pass


class Bridge:
    """Carries remote messages that belong to no running cell, and comms both ways.

    ``is_active`` says whether remote mode is on (a frontend's new comm then
    goes to the remote kernel). ``remember`` bounds how many local requests
    are kept to parent late output to.
    """

    def __init__(self, frontend: LocalFrontend, is_active: Callable[[], bool], kernel: Any = None, remember: int = 10_000) -> None:
        self.frontend = frontend
        self.is_active = is_active
        self.kernel = kernel
        self.session: KernelSession | None = None
        self._remember = remember
        self._parents: OrderedDict[str, wire.Message] = OrderedDict()
        self._lock = threading.Lock()
        self._events: queue.SimpleQueue[tuple[KernelSession, Event]] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._wrapped_open: Any = None

    def __repr__(self) -> str:
        return f"Bridge(session={self.session!r}, remote_comms={len(self.remote_comms())})"

    # -- the local kernel's side --------------------------------------------

    @property
    def comm_manager(self) -> Any:
        return getattr(self.kernel, "comm_manager", None)

    def install(self) -> None:
        """Take the frontend's ``comm_open`` (the comm manager routes the rest to stand-ins)."""
        handlers = getattr(self.kernel, "shell_handlers", None)
        if handlers is None or self._wrapped_open is not None or "comm_open" not in handlers:
            return
        self._wrapped_open = handlers["comm_open"]
        handlers["comm_open"] = self._on_frontend_open

    def uninstall(self) -> None:
        """Give ``comm_open`` back to the local comm manager."""
        if self._wrapped_open is not None:
            self.kernel.shell_handlers["comm_open"] = self._wrapped_open
            self._wrapped_open = None

    def _on_frontend_open(self, stream: Any, ident: Any, msg: wire.Message) -> None:
        target = str(msg["content"].get("target_name", ""))
        manager = self.comm_manager
        local_target = manager is not None and target in manager.targets
        if self._usable() and (self.is_active() or not local_target):
            self._add_comm(str(msg["content"].get("comm_id", "")), target)
            self.forward(msg)
        else:
            self._wrapped_open(stream, ident, msg)

    # -- the remote side ------------------------------------------------------

    def attach(self, session: KernelSession, adopt: bool = False) -> None:
        """Take ``session``'s unsolicited messages; ``adopt`` its open comms (an attached kernel)."""
        self.session = session
        session.channel.on_unsolicited = lambda event: self._outlet(session, event)
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="binder-autorun-bridge", daemon=True)
            self._worker.start()
        if adopt and self.frontend.has_comms:
            try:
                comms = session.request("comm_info_request", {}, timeout=10).get("comms") or {}
            except BinderAutorunError as exc:
                log.info("could not list the remote kernel's comms: %s", exc)
                return
            for comm_id, info in comms.items():
                self._add_comm(comm_id, str((info or {}).get("target_name", "")))

    def detach(self, session: KernelSession) -> None:
        """``session`` is going away: its widgets on the page are closed."""
        if session is self.session:
            self.session = None
            self.close_remote_comms()
        session.channel.on_unsolicited = None

    def remember(self, parent: wire.Message) -> None:
        """A local request the remote one reused the id of: its late output is parented to it.
        Only its header is kept (a widget event may carry megabytes of buffers)."""
        msg_id = str(parent["header"]["msg_id"])
        with self._lock:
            self._parents[msg_id] = {"header": dict(parent["header"])}
            self._parents.move_to_end(msg_id)
            while len(self._parents) > self._remember:
                self._parents.popitem(last=False)

    def parent_of(self, msg: wire.Message) -> wire.Message | None:
        """The local request ``msg`` answers, if it is one of ours."""
        with self._lock:
            return self._parents.get(wire.parent_id(msg) or "")

    def publish(self, msg: wire.Message) -> None:
        """Re-send a remote message to the local frontend where it belongs (any thread)."""
        kind = wire.msg_type(msg)
        if kind in COMM_TYPES:
            if not self.frontend.has_comms:
                return
            content = msg.get("content") or {}
            if kind == "comm_open":
                self._add_comm(str(content.get("comm_id", "")), str(content.get("target_name", "")), self.parent_of(msg))
            elif kind == "comm_close":
                self.drop_comm(str(content.get("comm_id", "")))
            # comm traffic of another client's request still belongs on this page
            self.frontend.send(msg, self.parent_of(msg) or {"header": msg.get("parent_header") or {}})
        elif kind in OUTPUT_TYPES:
            parent = self.parent_of(msg)
            if parent is not None:  # else another client's output (a browser tab on the same kernel)
                self.frontend.send(msg, parent)

    def forward(self, msg: wire.Message) -> None:
        """Send a frontend's message to the remote kernel and show what it causes."""
        session = self.session
        if session is None or not session.alive:
            reason = session.channel.lost if session is not None and session.channel.lost else None
            self._refuse(msg, f"the remote kernel of this widget is gone{f' ({reason})' if reason else ''}")
            return
        buffers = [memoryview(b) for b in msg.get("buffers") or []]
        size = sum(b.nbytes for b in buffers)
        if size > MAX_FRAME:
            self._refuse(
                msg,
                f"a widget sent {size / 1e6:.1f} MB in one message, more than the remote server takes "
                f"({MAX_FRAME // 2**20} MiB, tornado's websocket_max_message_size); the message was not sent",
                close=False,
            )
            return
        self.remember(msg)
        header = msg["header"]
        remote = wire.make_message(
            str(header["msg_type"]), dict(msg.get("content") or {}), session.channel.session_id,
            metadata=dict(msg.get("metadata") or {}), msg_id=str(header["msg_id"]), buffers=buffers,
        )
        try:
            session.forward(remote, _ForwardSink(self))
        except StopWaiting:
            self._refuse(msg, "stopped waiting for the remote kernel to handle this widget event after a second "
                         "interrupt; the widget stays, and %binder_restart helps if the kernel stays busy", close=False)
        except BinderAutorunError as exc:
            self._refuse(msg, str(exc).rstrip("."))

    def _refuse(self, msg: wire.Message, reason: str, close: bool = True) -> None:
        """Tell the user, under the widget event, why it did nothing; close a dead widget."""
        log.info("%s", reason)
        notice = {"header": {"msg_type": "stream"}, "content": {"name": "stderr", "text": f"binder_autorun: {reason}.\n"}}
        self.frontend.send(notice, msg)
        comm_id = str((msg.get("content") or {}).get("comm_id", ""))
        if close and comm_id and self.frontend.has_comms:
            self.drop_comm(comm_id)
            self.frontend.send(_comm_close(comm_id), msg)

    # -- comms ----------------------------------------------------------------

    def remote_comms(self) -> list[str]:
        """Ids of the remote comms that have stand-ins here."""
        manager = self.comm_manager
        if manager is None:
            return []
        return [comm_id for comm_id, comm in list(manager.comms.items()) if isinstance(comm, RemoteComm)]

    def _add_comm(self, comm_id: str, target_name: str, opened_by: wire.Message | None = None) -> None:
        manager = self.comm_manager
        if manager is not None and comm_id and comm_id not in manager.comms:
            manager.register_comm(RemoteComm(self, comm_id, target_name, opened_by))

    def drop_comm(self, comm_id: str) -> None:
        """Forget a remote comm's stand-in (it was closed)."""
        manager = self.comm_manager
        if manager is not None and isinstance(manager.comms.get(comm_id), RemoteComm):
            manager.comms.pop(comm_id, None)

    def close_remote_comms(self, reason: str = "") -> None:
        """Close every remote comm on the page, as a native kernel restart or death does;
        with a ``reason``, say it once under each cell whose widgets went."""
        manager = self.comm_manager
        told: set[str] = set()
        for comm_id in self.remote_comms():
            comm = manager.comms.get(comm_id)
            self.drop_comm(comm_id)
            self.frontend.send(_comm_close(comm_id), {"header": {}})
            cell = getattr(comm, "opened_by", None)
            cell_id = str((cell or {}).get("header", {}).get("msg_id", ""))
            if reason and cell is not None and cell_id and cell_id not in told:
                told.add(cell_id)
                notice = {"header": {"msg_type": "stream"}, "content": {"name": "stderr", "text": f"binder_autorun: {reason}\n"}}
                self.frontend.send(notice, cell)

    # -- the outlet -------------------------------------------------------------

    def _usable(self) -> bool:
        return self.session is not None and self.session.alive

    def _outlet(self, session: KernelSession, event: Event) -> None:
        """On the channel's thread, under its lock: what cannot block is done at once (one
        publisher keeps the remote's order across requests); the rest waits for the worker,
        and so does everything for a frontend whose sends may block (a terminal's stdout)."""
        if self.frontend.blocks or not self._take_now(session, event):
            self._events.put((session, event))

    def _take_now(self, session: KernelSession, event: Event) -> bool:
        """Publish output and comms, close the widgets of a kernel that ended; whether done."""
        if not (_is_output(event) or _ends_kernel(event)):
            return False
        try:
            self._take(session, event)
        except Exception:  # one bad message must not stop the reader
            log.warning("could not pass on a remote message", exc_info=True)
        return True

    def _work(self) -> None:
        while True:
            session, event = self._events.get()
            try:
                self._take(session, event)
            except Exception:  # one bad message must not end the bridge
                log.warning("could not pass on a remote message", exc_info=True)

    def _take(self, session: KernelSession, event: Event) -> None:
        if session is not self.session:
            return  # a session we left
        if isinstance(event, BinderAutorunError):
            log.info("remote session lost; closing its widgets on the page")
            self.close_remote_comms(f"this cell's widgets stopped: {event}")
            return
        if not isinstance(event, dict):
            return
        if _is_output(event):
            self.publish(event)
            return
        kind = wire.msg_type(event)
        if _ends_kernel(event):
            self.close_remote_comms()
            return
        if kind == "input_request":
            log.warning("the remote kernel asked for input outside a cell; it gets end-of-file")
            reply = wire.make_message("input_reply", {"value": "\x04"}, session.channel.session_id, channel="stdin", parent=event)
            try:
                session.channel.send(reply)
            except BinderAutorunError:
                pass


def _is_output(event: Event) -> bool:
    """IOPub traffic other than status: output and comms, re-sent to the frontend."""
    return isinstance(event, dict) and event.get("channel") == "iopub" and wire.msg_type(event) != "status"


def _ends_kernel(event: Event) -> bool:
    """The connection's loss, or the server's word that the kernel restarted or died."""
    if isinstance(event, BinderAutorunError):
        return True
    return (
        isinstance(event, dict)
        and wire.msg_type(event) == "status"
        and not wire.parent_id(event)
        and (event.get("content") or {}).get("execution_state") in ("restarting", "dead")
    )


def _comm_close(comm_id: str) -> wire.Message:
    return {"header": {"msg_type": "comm_close"}, "content": {"comm_id": comm_id, "data": {}}, "metadata": {}, "buffers": []}
