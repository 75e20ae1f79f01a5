"""Talking to a kernel: one websocket, a permanent reader thread, reconnects.

Why a permanent reader: websocket-client answers the server's pings only while
some thread is inside ``recv``; a connection read only while a cell runs is
closed by the server after ~90 idle seconds (the predecessor's "dies after
about 2 minutes"). The reader also routes each message to the request that
caused it (by ``parent_header.msg_id``), so traffic from other clients of the
same kernel never leaks into a cell.

Why ``TCP_QUICKACK`` before every socket read: tornado does not set ``TCP_NODELAY``
on kernel websockets, so a naive client pays Nagle + delayed-ACK (~40 ms) per
message burst. Re-arming QUICKACK makes the client ACK at once.

Whatever belongs to no waiting request (output a cell's thread prints after the
cell ended, comm traffic, the server's kernel-status broadcasts, the loss of the
connection) leaves through one ordered outlet, :attr:`KernelChannel.on_unsolicited`,
which the bridge (``bridge.py``) consumes; a request that finishes hands what is
left in its inbox to the outlet, so nothing falls between the two.

Why a :class:`Relay`: thousands of small outputs cost what each costs in thread
hand-offs. A request's consumer may give its inbox a relay, which the reader
asks first: what it takes (plain output) is re-sent from the reader thread
itself, so the reader is the one publisher of everything and the remote's order
holds across requests. What it does not take goes to the consumer's thread; if
handling it shows something, the reader waits until that is done (a barrier)
before it goes on. A relay may join consecutive stream text while more frames
are already waiting on the socket; it is flushed before anything else leaves
and as soon as the socket is idle, so text is never held back. While output
keeps coming, the reader lets frames gather a few milliseconds between reads.

When the socket drops, the reader reconnects with the same ``session_id``; the
server replays what it buffered meanwhile, so a running cell loses nothing.
If the server or kernel is gone, every waiting request gets a
:class:`~binder_autorun.errors.ConnectionLost` within seconds.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import websocket

from . import wire
from .errors import AuthError, BinderAutorunError, ConnectionLost, KernelDied, ServerError, ServerUnreachable
from .server import JupyterServer

log = logging.getLogger(__name__)

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)

#: bytes asked of the socket at once: a burst of small frames costs one read, not three each
READ_AHEAD = 65536
#: held stream text waits this long for the next frame to join it (a remote printing line by
#: line, flushed each, reaches the frontend as a few messages, not one per line) ...
JOIN_WAIT = 0.002
#: ... but is sent at most this long after it arrived (ipykernel itself holds up to 200 ms)
JOIN_MAX = 0.02
#: in a burst (held text older than JOIN_WAIT), the reader sleeps this long before the next read,
#: so the frames arriving meanwhile cost one wake-up and one read, not one each
GATHER = 0.005


def _socket_readable(sock: Any, within: float) -> bool:
    """Whether ``sock`` has bytes to read, or gets some ``within`` seconds (waits that long at most)."""
    if sock is None:
        return False
    pending = getattr(sock, "pending", None)  # TLS: decrypted bytes a select() cannot see
    if pending is not None and pending():
        return True
    try:
        return bool(select.select([sock], [], [], max(within, 0.0))[0])
    except (OSError, ValueError):
        return False


class Reconnected:
    """Put in waiting inboxes after a reconnect: a reply may have been lost in the drop."""


RECONNECTED = Reconnected()

#: what an inbox yields: a message, a reconnect notice, or the exception that ended the stream
Event = dict[str, Any] | Reconnected | BinderAutorunError


class _StampedWebSocket(websocket.WebSocket):
    """Reads ahead, and records when bytes last arrived (a big frame still arriving counts as alive).

    websocket-client reads a frame's header, length and payload with a socket read
    each; here one read takes whatever has arrived (up to :data:`READ_AHEAD`) and the
    frames are cut from it. ``TCP_QUICKACK`` is re-armed before each real read, and
    :attr:`before_read` runs (a big frame still arriving must not hold back what came before it).
    """

    #: called before each real (blocking) socket read
    before_read: Callable[[], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received_at = time.monotonic()
        self._ahead = b""
        self._at = 0
        #: the socket was seen readable since the last read: the next read will not block
        self._readable = False

    @property
    def buffered(self) -> int:
        """Bytes read from the socket and not yet taken."""
        return len(self._ahead) - self._at

    def _recv(self, bufsize: int) -> bytes:
        if self._at >= len(self._ahead):
            self._read_ahead(bufsize)
            if len(self._ahead) <= bufsize:
                self._at = len(self._ahead)
                return self._ahead
        chunk = self._ahead[self._at : self._at + bufsize]
        self._at += len(chunk)
        return chunk

    def frames_waiting(self, within: float = 0.0) -> bool:
        """Whether more of the stream has arrived, or arrives ``within`` seconds (waits that long at most)."""
        if self._at < len(self._ahead):
            return True
        if not self._readable:
            self._readable = _socket_readable(self.sock, within)
        return self._readable

    def _read_ahead(self, bufsize: int = READ_AHEAD) -> None:
        """One real socket read of whatever has arrived (blocking unless seen readable)."""
        if self.before_read is not None and not self._readable:
            self.before_read()  # one select per frame, not two: after frames_waiting said yes, this read returns at once
        self._readable = False
        if _QUICKACK is not None and self.sock is not None:
            self.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        self._ahead, self._at = super()._recv(max(bufsize, READ_AHEAD)), 0
        self.received_at = time.monotonic()

    def recv_data(self, control_frame: bool = False) -> tuple[int, Any]:
        """A data frame that lies whole in the read-ahead is cut from it here: for a small
        message websocket-client's general frame reader cost more than decoding it."""
        if self._between_frames():
            if self._at >= len(self._ahead):
                self._read_ahead()
            whole = self._whole_frame()
            if whole is not None:
                return whole
        return super().recv_data(control_frame)

    def _between_frames(self) -> bool:
        """Whether websocket-client holds no half-read frame or message."""
        frames = self.frame_buffer
        return not frames.recv_buffer and frames.needs_header() and not self.cont_frame.recving_frames

    def _whole_frame(self) -> tuple[int, bytes] | None:
        """(opcode, payload) of the next frame if it is a final, unmasked text or binary
        frame already read ahead in full; else None. Only between frames (see recv_data)."""
        ahead, at = self._ahead, self._at
        if len(ahead) - at < 2:
            return None
        first, second = ahead[at], ahead[at + 1]
        opcode = first & 0x0F
        if first & 0xF0 != 0x80 or second & 0x80 or opcode not in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            return None
        length, start = second & 0x7F, at + 2
        if length >= 126:
            size = 2 if length == 126 else 8
            if len(ahead) < start + size:
                return None
            length, start = int.from_bytes(ahead[start : start + size], "big"), start + size
        end = start + length
        if end > len(ahead):
            return None
        self._at = end
        return opcode, ahead[start:end]


class Relay(Protocol):
    """Shows some of a request's messages from the reader thread (see the module docstring).

    Called on the reader thread under the channel's routing lock: keep it quick.
    """

    def take(self, msg: wire.Message) -> bool:
        """Show ``msg`` now if it is plain output; False leaves it to the consumer."""

    def hand_over(self, msg: wire.Message) -> bool:
        """``msg`` (not taken) goes to the consumer, whose thread may send in between: whether
        its handling shows something, so later messages must wait until it is done."""

    def flush(self) -> None:
        """Send any text held for joining."""

    def held_since(self) -> float | None:
        """When the text held for joining began to wait (``time.monotonic``), None if none is."""


class Inbox(queue.SimpleQueue):  # type: ignore[type-arg]
    """Messages caused by one request, in arrival order (deduplicated on replay).

    With a :attr:`relay`, the consumer calls :meth:`done` with each message it has
    handled, so the reader knows when it may go on after a barrier.
    """

    def __init__(self, relay: Relay | None = None) -> None:
        super().__init__()
        self.seen: set[str] = set()
        self.relay = relay
        #: when the reader last had a message for this request (relayed ones included)
        self.heard = time.monotonic()
        #: the ids of the requests the kernel sent anything for (the server may lose a request
        #: sent as the connection drops: one the kernel never spoke of may never have reached it)
        self.heard_from: set[str] = set()
        #: the message the main thread took and has not handled yet: kept here, not in a local
        #: variable, so a Ctrl-C landing as the queue gives it up cannot lose it (see Session._next)
        self.in_hand: Any = None
        self._awaited: Any = None
        self._turn = threading.Event()
        self._turn.set()

    def hand(self, msg: wire.Message, barrier: bool) -> None:
        """Queue ``msg`` for the consumer; with ``barrier``, :meth:`wait_turn` waits until it is done."""
        if barrier:
            self._turn.clear()
            self._awaited = msg
        self.put(msg)

    def handled(self, event: Any) -> None:
        """The consumer is done with ``event``, the message in hand: the reader may go on past it."""
        self.in_hand = None
        if event is not None and event is self._awaited:
            self.release()

    def release(self) -> None:
        """Let the reader go on (the message was handled, or nobody will handle it)."""
        self._awaited = None
        self._turn.set()

    def wait_turn(self, still_open: Callable[[], bool]) -> None:
        """Until the consumer is done with the barrier message, or the channel closes."""
        while not self._turn.wait(0.5) and still_open():
            pass


def _requests_ca_bundle() -> str:
    """The CA bundle requests takes from the environment for our REST calls ("" when none is set)."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or ""


class KernelChannel:
    """One websocket to ``{base_url}api/kernels/{id}/channels``.

    ``reconnect_window`` bounds how long a dropped connection is retried before
    the server is declared gone; ``ping_after``/``pong_timeout`` bound how long a
    silent connection (a network that vanished without a reset) goes unnoticed
    while a request waits (see :meth:`check_alive`).
    """

    def __init__(
        self,
        server: JupyterServer,
        kernel_id: str,
        session_id: str | None = None,
        connect_timeout: float = 10.0,
        reconnect_window: float = 2.0,
        ping_after: float = 1.0,
        pong_timeout: float = 1.0,
        on_kernel_status: Callable[[str], None] | None = None,
    ) -> None:
        self.server = server
        self.kernel_id = kernel_id
        self.session_id = session_id or wire.new_id()
        self.connect_timeout = connect_timeout
        self.reconnect_window = reconnect_window
        self.ping_after = ping_after
        self.pong_timeout = pong_timeout
        self.on_kernel_status = on_kernel_status
        #: called (on the reader thread, under the routing lock: keep it quick) with every
        #: message no request waits for, and with the ConnectionLost that ends the channel
        self.on_unsolicited: Callable[[Event], None] | None = None
        # the reader thread probes with its own HTTP session (requests.Session is not thread-safe)
        self._prober = JupyterServer(server.info, timeout=connect_timeout)
        self.protocol: str | None = None
        self._offer_v1 = True
        self.reconnects = 0
        self.last_activity = time.monotonic()
        self._ws: _StampedWebSocket | None = None
        self._inboxes: dict[str, Inbox] = {}
        #: the relay that took the last message (it may hold text for joining)
        self._holder: Relay | None = None
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._closed = False
        self._lost: ConnectionLost | None = None
        self._ping_sent: float | None = None
        self._reader: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"KernelChannel({self.server.url!r}, kernel={self.kernel_id!r}, state={self.state!r})"

    @property
    def url(self) -> str:
        """The websocket URL (no token: that travels in a header)."""
        return f"{self.server.info.ws_url}api/kernels/{self.kernel_id}/channels?session_id={self.session_id}"

    @property
    def state(self) -> str:
        """``connected``, ``reconnecting``, ``lost`` or ``closed``."""
        if self._closed:
            return "closed"
        if self._lost is not None:
            return "lost"
        return "connected" if self._connected.is_set() else "reconnecting"

    @property
    def lost(self) -> ConnectionLost | None:
        """The failure that ended this channel for good, if any."""
        return self._lost

    # -- connection ---------------------------------------------------------

    def connect(self) -> None:
        """Open the websocket and start the reader; raise one clear sentence on failure."""
        self._ws = self._open(self.connect_timeout)
        self._connected.set()
        self._reader = threading.Thread(target=self._read_forever, name="binder-autorun-reader", daemon=True)
        self._reader.start()

    def _open(self, timeout: float) -> _StampedWebSocket:
        try:
            ws = self._handshake(timeout)
        except websocket.WebSocketBadStatusException as exc:
            if exc.status_code in (401, 403):
                raise AuthError(
                    f"The Jupyter server at {self.server.url} rejected the token for the kernel websocket "
                    f"(HTTP {exc.status_code}); check the token."
                ) from None
            raise ConnectionLost(
                f"The Jupyter server at {self.server.url} refused the kernel websocket (HTTP {exc.status_code}); "
                "the kernel may be gone."
            ) from None
        except ssl.SSLCertVerificationError:
            raise ServerError(
                f"The TLS certificate of {self.server.url} could not be verified for the kernel websocket; "
                "check the URL (verification stays on)."
            ) from None
        except (OSError, websocket.WebSocketException):
            raise ConnectionLost(f"Could not open the kernel websocket at {self.server.url}; the server may be gone.") from None
        assert isinstance(ws, _StampedWebSocket)  # _handshake's class_
        ws.settimeout(None)
        # a big frame still arriving must not hold back the output that came before it
        ws.before_read = functools.partial(self._flush_idle, ws)
        self.protocol = ws.getsubprotocol()
        log.debug("kernel websocket open (protocol %s)", self.protocol or "legacy")
        return ws

    def _handshake(self, timeout: float) -> websocket.WebSocket:
        """Open the websocket offering the v1 protocol; fall back to the legacy one.

        websocket-client rejects a server that picks no subprotocol, which is
        how a server that only speaks the legacy JSON protocol answers.
        """
        options: dict[str, Any] = {
            "timeout": timeout,
            "header": [f"{k}: {v}" for k, v in self.server.info.headers.items()],
            "skip_utf8_validation": True,  # pure-Python UTF-8 checks cost seconds on big outputs
            "enable_multithread": True,
            "sockopt": [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            "suppress_origin": True,
            "class_": _StampedWebSocket,
        }
        if not getattr(self.server.info, "verify", True):  # a gateway's JUPYTER_GATEWAY_VALIDATE_CERT=false
            options["sslopt"] = {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
        elif _requests_ca_bundle() and not os.environ.get("WEBSOCKET_CLIENT_CA_BUNDLE"):
            options["sslopt"] = {"ca_certs": _requests_ca_bundle()}  # trust what the REST calls trust
        if self._offer_v1:
            try:
                return websocket.create_connection(self.url, subprotocols=[wire.V1_PROTOCOL], **options)
            except websocket.WebSocketBadStatusException:
                raise
            except websocket.WebSocketException as exc:
                if "Invalid WebSocket Header" not in str(exc):
                    raise
                log.info("the server did not take the v1 kernel protocol; using the legacy one")
                self._offer_v1 = False
        return websocket.create_connection(self.url, **options)

    def close(self) -> None:
        """Close for good; waiting requests get a ConnectionLost."""
        self._closed = True
        self._connected.clear()
        if self._ws is not None:
            self._abort_socket()
            self._ws.shutdown()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=2)
        self._notify_all(ConnectionLost("The connection to the remote kernel was closed."))

    # -- sending ------------------------------------------------------------

    def send(self, msg: wire.Message) -> None:
        """Send a message, waiting out a reconnect in progress."""
        if not self._connected.wait(self.reconnect_window + self.connect_timeout):
            raise self._lost or ConnectionLost(f"The connection to {self.server.url} did not come back.")
        if self._lost is not None:
            raise self._lost
        frame = wire.encode(msg, self.protocol)
        opcode = websocket.ABNF.OPCODE_BINARY if isinstance(frame, bytes) else websocket.ABNF.OPCODE_TEXT
        for attempt in range(2):
            ws = self._ws
            assert ws is not None
            try:
                ws.send(frame, opcode)
                return
            except (OSError, websocket.WebSocketException):
                # the reader sees the drop too and reconnects; wait for it and retry once
                if ws is self._ws:
                    self._connected.clear()
                if attempt or not self._connected.wait(self.reconnect_window + self.connect_timeout) or self._lost:
                    raise self._lost or ConnectionLost(f"The connection to {self.server.url} dropped.") from None

    def request(self, msg: wire.Message, inbox: Inbox | None = None) -> Inbox:
        """Send ``msg``; every message it causes goes to ``inbox`` (a new one by default)."""
        inbox = Inbox() if inbox is None else inbox
        with self._lock:
            if self._lost is not None:
                raise self._lost
            self._inboxes[msg["header"]["msg_id"]] = inbox
        try:
            self.send(msg)
        except BaseException:
            self.forget(msg["header"]["msg_id"])
            raise
        return inbox

    def forget(self, msg_id: str) -> None:
        """Stop routing messages of a finished request; what it left unread (output that
        came after its end) goes to the outlet, ahead of anything the reader sends there next."""
        with self._lock:
            inbox = self._inboxes.pop(msg_id, None)
            if inbox is None:
                return
            left = [inbox.in_hand] if isinstance(inbox.in_hand, dict) else []  # taken, never handled
            inbox.in_hand = None
            if left or not inbox.empty() or (inbox.relay is not None and self._holder is inbox.relay):
                self._flush_holder()  # its text, and any before what it left, before the request's end shows
            while not inbox.empty():
                left.append(inbox.get_nowait())
            for event in left:
                if isinstance(event, dict):
                    self._unsolicited(event)
            if inbox not in self._inboxes.values():  # no other id of the request still routes to it
                inbox.release()

    # -- liveness -----------------------------------------------------------

    def check_alive(self) -> None:
        """Ping a connection that has been silent; drop it if the pong does not come.

        Called by a waiting request every second or so: costs nothing while
        messages flow, and turns a silently vanished network into a drop that
        the reader handles (reconnect or ConnectionLost) within seconds.
        """
        if not self._connected.is_set() or self._ws is None:
            return
        self.last_activity = max(self.last_activity, getattr(self._ws, "received_at", 0.0))
        now = time.monotonic()
        if self._ping_sent is not None and self.last_activity < self._ping_sent:
            if now - self._ping_sent > self.pong_timeout:
                log.info("no pong within %.1f s; treating the connection as dropped", self.pong_timeout)
                self._ping_sent = None
                self._abort_socket()
            return
        if now - self.last_activity > self.ping_after:
            self._ping_sent = now
            try:
                self._ws.ping()
            except (OSError, websocket.WebSocketException):
                self._abort_socket()

    def reopen(self, timeout: float | None = None) -> None:
        """Re-open the websocket (same session id) and wait until it is back.

        After a kernel restart the server may have moved the kernel to new
        ports; only a new websocket gets channels to the new ones.
        """
        self._connected.clear()
        self._abort_socket()
        if not self._connected.wait(timeout or self.reconnect_window + self.connect_timeout) or self._lost:
            raise self._lost or ConnectionLost(f"The connection to {self.server.url} did not come back.")

    def _abort_socket(self) -> None:
        ws = self._ws
        if ws is not None and ws.sock is not None:
            try:
                ws.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- reading ------------------------------------------------------------

    def _read_forever(self) -> None:
        try:
            self._read_until_closed()
        except Exception:  # a bug here must fail waiting cells, not leave them waiting forever
            log.exception("the kernel websocket reader failed")
            self.declare_lost("the client failed to read its messages (a bug: please report it)", kernel_gone=False)

    def declare_lost(self, reason: str, kernel_gone: bool = True) -> None:
        """End the channel for good: every waiting and later request fails with ``reason``.
        Unless the kernel is known to be gone (``kernel_gone``), it may still run there, and the
        sentence says a bare %binder_on reattaches to it."""
        if self._lost is None and not self._closed:
            if kernel_gone:
                advice = "its state is gone — relaunch with %binder_on --relaunch"
            else:
                advice = ("once the server answers again, a bare %binder_on reattaches to the same kernel; "
                          "if it was culled, %binder_on --relaunch starts afresh")
            self._lost = ConnectionLost(
                f"Lost the remote kernel at {self.server.url}: {reason}; {advice} (then %binder_replay to re-run earlier cells)."
            )
            log.info("%s", self._lost)
            self._notify_all(self._lost)
            with self._lock:
                self._flush_holder()
                self._unsolicited(self._lost)
            self._connected.set()  # wake senders so they see the loss

    def _read_until_closed(self) -> None:
        while not self._closed:
            ws = self._ws
            assert ws is not None
            try:
                opcode, data = ws.recv_data(control_frame=True)
            except (OSError, websocket.WebSocketException, AttributeError):
                opcode, data = websocket.ABNF.OPCODE_CLOSE, b""
            self.last_activity = time.monotonic()
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                self._take_frame(opcode, data)
                data = b""  # drop the frame now, not after the next (blocking) read
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                self._flush_idle(None)  # the connection is gone: nothing more can join the held text
                if self._closed:
                    return
                self._connected.clear()
                if not self._reconnect():
                    return
                continue
            self._flush_idle(ws)  # after every frame: a ping or pong behind the text must not hold it

    def _take_frame(self, opcode: int, data: bytes) -> None:
        """Decode and dispatch one message frame; wait behind it if it is a barrier."""
        try:
            msg = wire.decode(data.decode("utf-8") if opcode == websocket.ABNF.OPCODE_TEXT else data, self.protocol)
        except (ValueError, KeyError, IndexError, struct.error):
            log.warning("dropped an undecodable kernel message", exc_info=True)
            return
        barrier = self._dispatch(msg)
        del msg
        if barrier is not None:
            barrier.wait_turn(lambda: not self._closed)

    def _flush_idle(self, ws: _StampedWebSocket | None) -> None:
        """Send what a relay holds unless more frames wait on ``ws`` or arrive within
        :data:`JOIN_WAIT` (None: now); nothing is held longer than :data:`JOIN_MAX`.

        In a burst (held output older than :data:`JOIN_WAIT`) it first sleeps :data:`GATHER`:
        waking and reading once per frame cost the reader more than decoding the frame, and
        the whole machine a context switch each. Runs after every frame and before every
        blocking read (also in the middle of a big frame on a slow link): nothing held costs
        no lock.
        """
        holder = self._holder
        since = holder.held_since() if holder is not None else None
        if since is None:
            return
        if ws is not None:
            now = time.monotonic()
            # a reader that stays behind (frames always waiting) still sends every JOIN_MAX
            left = since + JOIN_MAX - now
            if left > 0:
                wait = min(JOIN_WAIT, left)
                if now - since >= JOIN_WAIT and not ws.frames_waiting():
                    time.sleep(min(GATHER, left))  # frames kept coming: let the next ones gather
                    wait = 0.0
                if ws.frames_waiting(within=wait):
                    return
        with self._lock:
            self._flush_holder()

    def _dispatch(self, msg: wire.Message) -> Inbox | None:
        """Relay, queue or hand ``msg`` to the outlet; the inbox whose consumer must handle it
        before the reader goes on, if any."""
        parent = wire.parent_id(msg) or ""
        barrier = None
        with self._lock:  # held while queueing, so forget() cannot slip between lookup and put
            inbox = self._inboxes.get(parent) if parent else None
            if inbox is None:
                self._flush_holder()
                self._unsolicited(msg)
            else:
                barrier = self._deliver(inbox, msg, parent)
        if wire.msg_type(msg) == "status" and not parent:
            state = (msg.get("content") or {}).get("execution_state", "")
            if state in ("restarting", "dead"):
                self._kernel_died(state)
        return barrier

    def _deliver(self, inbox: Inbox, msg: wire.Message, parent: str) -> Inbox | None:
        msg_id = (msg.get("header") or {}).get("msg_id", "")
        if msg_id in inbox.seen:
            return None  # replayed after a reconnect
        inbox.seen.add(msg_id)
        inbox.heard = time.monotonic()
        inbox.heard_from.add(parent)
        relay = inbox.relay
        if relay is None:
            inbox.put(msg)
            return None
        if self._holder is not relay:
            self._flush_holder()
        try:
            taken = relay.take(msg)
        except Exception:  # showing one message must not stop the reader
            log.warning("could not show a remote message", exc_info=True)
            taken = True
        if taken:
            self._holder = relay
            return None
        self._flush_holder()
        barrier = relay.hand_over(msg)
        inbox.hand(msg, barrier)
        return inbox if barrier else None

    def _flush_holder(self) -> None:
        """Send text a relay holds for joining (before anything else leaves; lock held)."""
        holder, self._holder = self._holder, None
        if holder is not None:
            try:
                holder.flush()
            except Exception:
                log.warning("could not show remote output", exc_info=True)

    def _unsolicited(self, event: Event) -> None:
        outlet = self.on_unsolicited
        if outlet is not None:
            outlet(event)

    def _kernel_died(self, state: str) -> None:
        log.info("the server reports the remote kernel %s", state)
        if self.on_kernel_status is not None:
            self.on_kernel_status(state)
        restarted = "was restarted by the server" if state == "restarting" else "is dead"
        self._notify_all(
            KernelDied(
                f"The remote kernel died (crashed or ran out of memory) and {restarted}; "
                "its variables and imports are lost, so re-run the cells this one needs."
            )
        )

    def _notify_all(self, event: BinderAutorunError | Reconnected) -> None:
        with self._lock:
            inboxes = list(self._inboxes.values())
        for inbox in inboxes:
            inbox.put(event)

    def _reconnect(self) -> bool:
        """Reconnect with the same session id, or declare the server gone."""
        deadline = time.monotonic() + self.reconnect_window
        delay = 0.05
        reason = "the connection dropped and could not be re-opened"
        kernel_gone = False
        self._prober.http.close()  # pooled HTTP connections died with the websocket's route
        if self._ws is not None:
            self._ws.shutdown()  # free the dead socket now, not at garbage collection
        while not self._closed:
            left = max(0.2, deadline - time.monotonic())
            try:
                if self._prober.kernel(self.kernel_id, timeout=left) is None:
                    reason = "the server no longer has the kernel (it was shut down or culled)"
                    kernel_gone = True
                    break
                self._ws = self._open(max(0.2, deadline - time.monotonic()))
            except AuthError:
                reason = "the server now rejects the token"
                kernel_gone = True  # restarted with a new token, or ours revoked: no way back in
                break
            except ServerUnreachable:
                reason = "nothing answers at its address any more (the server was shut down or culled)"
                break
            except ConnectionLost:
                reason = "the server stopped answering (it is overloaded or the network is down)"
                if time.monotonic() + delay > deadline:
                    break
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            except BinderAutorunError as exc:
                reason = str(exc).rstrip(".")
                break
            self.reconnects += 1
            self._ping_sent = None
            self._connected.set()
            log.info("kernel websocket reconnected (session %s)", self.session_id)
            self._notify_all(RECONNECTED)  # not a failure: waiting requests check nothing was lost
            return True
        self.declare_lost(reason, kernel_gone)
        return False
