"""The local frontend as seen from a remote message: where to re-send it, and how.

Inside a cell the display mirror (``mirror.py``) goes through IPython's own
display machinery. Everything else — output that arrives after its cell ended,
output while the main thread waits at an ``input()`` prompt, comm traffic — is
sent from other threads and with a parent of its own (the cell or widget event
that caused it), which IPython's machinery cannot do. A :class:`LocalFrontend`
does exactly that: the notebook's kernel re-sends the message on its IOPub with
the chosen parent header, unchanged (content, metadata, binary buffers); a
terminal prints what a terminal would show.
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
import threading
import uuid
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any, Protocol

from . import wire

log = logging.getLogger(__name__)

#: ZeroMQ topic of what we re-send on the local IOPub (frontends do not read topics)
TOPIC = b"binder_autorun"


class _Signer:
    """Serializes re-sent messages as the local kernel's session would, at a fraction of the cost.

    ``Session.msg`` + ``serialize`` spent more per small message than everything else
    the reader does for it (the header's date goes through a JSON ``default`` hook, the
    same parent header is encoded again for every message). Here the header is built
    from a template, the parent's JSON is kept for the next message, and a message
    re-sent unchanged keeps the metadata and content JSON it arrived with.
    """

    def __init__(self, session: Any) -> None:
        from jupyter_client.session import DELIM  # under a kernel, where jupyter_client is

        self.session = session
        self.pack = session.pack
        self._delim = DELIM
        template = session.msg_header("status")
        self._head = self.pack({key: template[key] for key in ("username", "session", "version")})[1:-1]
        self._ids = itertools.count()
        self._id_prefix = uuid.uuid4().hex
        self._parents: OrderedDict[str, bytes] = OrderedDict()

    def serialize(self, msg: wire.Message, parent: wire.Message, ident: bytes) -> list[Any]:
        kind = wire.msg_type(msg)
        date = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        header = b'{"msg_id":"%s_%d","msg_type":%s,"date":"%s",%s}' % (
            self._id_prefix.encode(), next(self._ids), json.dumps(kind).encode(), date.encode(), self._head)
        packed = msg.packed_parts() if isinstance(msg, wire.Received) else None
        if packed is None:
            packed = (self.pack(msg.get("metadata") or {}), self.pack(msg.get("content") or {}))
        parts = [header, self._parent(parent), *packed]
        return [ident, self._delim, self.session.sign(parts), *parts]

    def _parent(self, parent: wire.Message) -> bytes:
        header = parent.get("header", parent) or {}
        key = str(header.get("msg_id", ""))
        packed = self._parents.get(key) if key else None
        if packed is None:
            packed = self.pack(header)  # dates of a local request's header are datetimes
            if key:
                self._parents[key] = packed
                if len(self._parents) > 64:
                    self._parents.popitem(last=False)
        return packed


class LocalFrontend(Protocol):
    """Shows a remote message as the local kernel's own, parented to ``parent``."""

    #: whether comm messages reach anything (a terminal has no widgets)
    has_comms: bool
    #: whether a send may block (a terminal's stdout): then the channel's reader never sends
    blocks: bool

    def send(self, msg: wire.Message, parent: wire.Message) -> None:
        """Re-send ``msg`` to the frontend with ``parent`` (a message whose header the frontend knows)."""

    def send_all(self, messages: list[wire.Message], parent: wire.Message) -> None:
        """Re-send ``messages`` in order, as one batch where sends are batched."""

    def seal(self) -> None:
        """What is sent after this goes out after whatever another thread sends meanwhile
        (sends may be batched until then)."""

    def drain(self, timeout: float = 2.0) -> None:
        """Return once everything sent so far is out (before the frontend is asked for input
        on another channel, which would otherwise overtake it)."""


class KernelFrontend:
    """The frontends of the local ipykernel (JupyterLab, Notebook, VS Code, nbclient).

    Thread-safe. ipykernel's IOPub socket hands every send to its IOPub thread (which
    also keeps the order with the shell's own streams and displays), waking it once
    per message; a burst of thousands of small messages spent more in those wake-ups
    than in the sends. So messages are signed here and handed over in batches: a
    batch takes further messages until its IOPub turn comes or it is :meth:`seal`-ed
    (before another thread may send something that must come after them).
    """

    has_comms = True
    blocks = False  # hands over to the IOPub thread

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self._lock = threading.Lock()
        self._batch: list[list[Any]] | None = None
        from jupyter_client.session import json_packer  # under a kernel, where jupyter_client is

        session = kernel.session
        # the shortcut writes JSON and the session's header itself: only for a plain JSON session
        plain = session.pack is json_packer and not session.metadata
        self._signer = _Signer(session) if plain else None

    def send(self, msg: wire.Message, parent: wire.Message) -> None:
        self.send_all([msg], parent)

    def send_all(self, messages: list[wire.Message], parent: wire.Message) -> None:
        kernel = self.kernel
        io_thread = getattr(kernel.iopub_socket, "io_thread", None)
        serialized = [self._serialize(msg, parent) for msg in messages]
        if io_thread is None:  # not ipykernel's background socket: send as the session would
            for parts in serialized:
                kernel.iopub_socket.send_multipart(parts)
            return
        with self._lock:
            batch = self._batch
            if batch is not None:
                batch.extend(serialized)
                return
            self._batch = batch = serialized
        io_thread.schedule(lambda: self._send_batch(io_thread, batch))

    def _serialize(self, msg: wire.Message, parent: wire.Message) -> list[Any]:
        if self._signer is not None:
            parts = self._signer.serialize(msg, parent, TOPIC)
        else:
            session = self.kernel.session
            message = session.msg(wire.msg_type(msg), msg.get("content") or {}, parent=parent, metadata=msg.get("metadata") or {})
            parts = session.serialize(message, ident=TOPIC)
        parts.extend(msg.get("buffers") or [])
        return parts

    def seal(self) -> None:
        with self._lock:
            self._batch = None

    def _send_batch(self, io_thread: Any, batch: list[list[Any]]) -> None:
        """On the IOPub thread: send a batch (it takes no more messages from now on)."""
        with self._lock:
            if self._batch is batch:
                self._batch = None
        socket = io_thread.socket
        if socket is None:  # the kernel is shutting down
            return
        from zmq import SNDMORE  # only under a kernel, where pyzmq is

        more, threshold = int(SNDMORE), self.kernel.session.copy_threshold  # int: enum flags cost more than the send
        for parts in batch:
            copy = max(len(part) for part in parts) < threshold
            for part in parts[:-1]:
                socket.send(part, more, copy=copy)
            socket.send(parts[-1], 0, copy=copy)

    def drain(self, timeout: float = 2.0) -> None:
        io_thread = getattr(self.kernel.iopub_socket, "io_thread", None)
        if io_thread is None:
            return
        done = threading.Event()
        io_thread.schedule(done.set)  # runs after the sends queued before it
        done.wait(timeout)


class TerminalFrontend:
    """A terminal IPython: text is printed as it would be printed natively."""

    has_comms = False
    blocks = True  # a stdout nobody reads (a paused terminal, a full pipe) blocks the write

    def send(self, msg: wire.Message, parent: wire.Message) -> None:
        kind, content = wire.msg_type(msg), msg.get("content") or {}
        if kind == "stream":
            stream = sys.stderr if content.get("name") == "stderr" else sys.stdout
            stream.write(str(content.get("text", "")))
            stream.flush()
        elif kind in ("display_data", "update_display_data", "execute_result"):
            text = (content.get("data") or {}).get("text/plain")
            if text is not None:
                print(text, flush=True)
        elif kind == "error":
            print("\n".join(content.get("traceback") or [f"{content.get('ename')}: {content.get('evalue')}"]), flush=True)

    def send_all(self, messages: list[wire.Message], parent: wire.Message) -> None:
        for msg in messages:
            self.send(msg, parent)

    def seal(self) -> None:
        pass  # printed at once

    def drain(self, timeout: float = 2.0) -> None:
        pass  # printed at once


def frontend_for(shell: Any) -> LocalFrontend:
    """The frontend of ``shell``: its kernel's IOPub, or the terminal."""
    kernel = getattr(shell, "kernel", None)
    if kernel is not None and getattr(kernel, "iopub_socket", None) is not None:
        return KernelFrontend(kernel)
    return TerminalFrontend()
