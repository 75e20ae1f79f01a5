"""The reader's own cut of frames from its read-ahead agrees with websocket-client's reader
on every shape a server sends: small and large lengths, text and binary, frames split
across socket reads, fragmented messages, pings between frames. Real TCP on loopback."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
from typing import TypeVar

import websocket

from binder_autorun.channel import GATHER, JOIN_MAX, JOIN_WAIT, READ_AHEAD, KernelChannel, _StampedWebSocket
from binder_autorun.server import JupyterServer, ServerInfo

OP = websocket.ABNF
WS = TypeVar("WS", bound=_StampedWebSocket)


def server_frame(payload: bytes, opcode: int = OP.OPCODE_BINARY, fin: bool = True) -> bytes:
    """A frame as a server sends it (unmasked)."""
    first = (0x80 if fin else 0) | opcode
    if len(payload) < 126:
        head = bytes([first, len(payload)])
    elif len(payload) < 1 << 16:
        head = bytes([first, 126]) + struct.pack("!H", len(payload))
    else:
        head = bytes([first, 127]) + struct.pack("!Q", len(payload))
    return head + payload


def _connected_pair() -> tuple[_StampedWebSocket, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    return _client_ws(client), server


def _client_ws(sock: socket.socket, kind: type[WS] = _StampedWebSocket) -> WS:  # type: ignore[assignment]
    """The reader's websocket over an open TCP connection (no handshake: frames only)."""
    ws = kind(skip_utf8_validation=True)
    ws.sock, ws.connected = sock, True
    return ws


def _read(ws: _StampedWebSocket, count: int) -> list[tuple[int, bytes]]:
    return [(opcode, bytes(data)) for opcode, data in (ws.recv_data(control_frame=True) for _ in range(count))]


def test_frames_whole_in_one_read_and_split_across_reads() -> None:
    ws, server = _connected_pair()
    payloads = [b"a" * 10, b"b" * 125, b"c" * 126, b"d" * 70_000, "é ✓".encode(), b""]
    stream = b"".join(server_frame(p, OP.OPCODE_TEXT if i == 4 else OP.OPCODE_BINARY) for i, p in enumerate(payloads))
    stream += server_frame(b"\x00" * (READ_AHEAD + 5))  # longer than one read-ahead

    def trickle() -> None:  # cut the stream at awkward places: inside headers, lengths and payloads
        for start, end in ((0, 1), (1, 5), (5, 150), (150, 300), (300, len(stream))):
            server.sendall(stream[start:end])
            time.sleep(0.05)

    threading.Thread(target=trickle, daemon=True).start()
    got = _read(ws, len(payloads) + 1)
    assert got[:4] == [(OP.OPCODE_BINARY, p) for p in payloads[:4]]
    assert got[4] == (OP.OPCODE_TEXT, "é ✓".encode()) and got[5] == (OP.OPCODE_BINARY, b"")
    assert got[6] == (OP.OPCODE_BINARY, b"\x00" * (READ_AHEAD + 5))
    assert ws.buffered == 0
    server.close()


def test_many_small_frames_in_one_read_are_cut_in_order() -> None:
    ws, server = _connected_pair()
    payloads = [f"message {i}".encode() for i in range(500)]
    server.sendall(b"".join(server_frame(p) for p in payloads))
    assert _read(ws, 500) == [(OP.OPCODE_BINARY, p) for p in payloads]
    server.close()


def test_fragments_and_pings_go_the_general_way() -> None:
    ws, server = _connected_pair()
    stream = (server_frame(b"before")
              + server_frame(b"part one, ", OP.OPCODE_BINARY, fin=False)
              + server_frame(b"ping!", OP.OPCODE_PING)
              + server_frame(b"part two", OP.OPCODE_CONT, fin=True)
              + server_frame(b"after"))
    server.sendall(stream)
    got = _read(ws, 4)
    assert got == [(OP.OPCODE_BINARY, b"before"), (OP.OPCODE_PING, b"ping!"),
                   (OP.OPCODE_BINARY, b"part one, part two"), (OP.OPCODE_BINARY, b"after")]
    server.settimeout(5)
    pong = server.recv(64)  # websocket-client answered the ping (a masked client frame)
    assert pong[0] == 0x80 | OP.OPCODE_PONG
    server.close()


class _Holder:
    """A relay holding output since ``since`` (None: nothing)."""

    def __init__(self, since: float | None) -> None:
        self.since = since
        self.flushed = 0

    def held_since(self) -> float | None:
        return self.since

    def flush(self) -> None:
        self.flushed += 1


def _channel() -> KernelChannel:
    """A channel that never connects: its reader's steps are driven by hand."""
    return KernelChannel(JupyterServer(ServerInfo("http://127.0.0.1:9/", "unused")), "kernel")


def _channel_holding(since: float | None) -> tuple[KernelChannel, _Holder]:
    channel = _channel()
    holder = _Holder(since)
    channel._holder = holder  # type: ignore[assignment]
    return channel, holder


def test_held_output_waits_for_frames_already_there() -> None:
    ws, server = _connected_pair()
    server.sendall(server_frame(b"more"))
    time.sleep(0.1)
    channel, holder = _channel_holding(time.monotonic())
    channel._flush_idle(ws)
    assert holder.flushed == 0
    server.close()


def test_held_output_goes_after_join_max_even_while_frames_keep_waiting() -> None:
    """A reader that stays behind a fast remote still sends what it holds, every JOIN_MAX."""
    ws, server = _connected_pair()
    server.sendall(server_frame(b"more"))
    time.sleep(0.1)
    channel, holder = _channel_holding(time.monotonic() - JOIN_MAX - 0.001)
    channel._flush_idle(ws)
    assert holder.flushed == 1
    server.close()


def test_held_output_goes_when_no_frame_follows_within_join_wait() -> None:
    ws, server = _connected_pair()
    channel, holder = _channel_holding(time.monotonic())
    began = time.monotonic()
    channel._flush_idle(ws)
    assert holder.flushed == 1 and JOIN_WAIT * 0.9 <= time.monotonic() - began < 0.5
    server.close()


class _CountingWebSocket(_StampedWebSocket):
    """Counts its real socket reads."""

    reads = 0

    def _read_ahead(self, bufsize: int = READ_AHEAD) -> None:
        self.reads += 1
        super()._read_ahead(bufsize)


class _Relaying(_Holder):
    """Holds what the reader takes until flushed, and records how long each hold lasted."""

    def __init__(self) -> None:
        super().__init__(None)
        self.holds: list[float] = []

    def took(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def flush(self) -> None:
        assert self.since is not None
        self.holds.append(time.monotonic() - self.since)
        self.since = None


def test_a_burst_of_small_frames_is_read_in_few_reads_and_never_held_past_join_max() -> None:
    """A remote sending a small frame every millisecond (another process, as a server is):
    the reader, holding output, lets frames gather between reads (one wake-up and read for
    several) and still sends each hold within JOIN_MAX. (Reading each frame as it arrived
    cost a read and a wake-up a frame.)"""
    count = 200
    listener = socket.create_server(("127.0.0.1", 0))
    remote = subprocess.Popen([sys.executable, "-c", _REMOTE, str(listener.getsockname()[1]), str(count)])
    listener.settimeout(30)
    try:
        client, _ = listener.accept()
        listener.close()
        ws = _client_ws(client, _CountingWebSocket)
        channel = _channel()
        relay = _Relaying()
        ws.before_read = lambda: channel._flush_idle(ws)
        got = []
        for _ in range(count):
            got.append(bytes(ws.recv_data(control_frame=True)[1]))
            relay.took()
            channel._holder = relay  # type: ignore[assignment]  # as _deliver does for a relay that took
            channel._flush_idle(ws)
        channel._flush_idle(None)
    finally:
        remote.kill()
        remote.wait()
    assert got == [b"%d" % i for i in range(count)]
    assert ws.reads < count / 2, f"{ws.reads} reads for {count} frames"
    assert relay.holds and max(relay.holds) < JOIN_MAX + GATHER + 0.05, relay.holds


#: the remote of the burst test: connects to port argv[1], sends argv[2] small frames 1 ms apart
_REMOTE = """
import socket, sys, time
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for i in range(int(sys.argv[2])):
    payload = b"%d" % i
    sock.sendall(bytes([0x82, len(payload)]) + payload)
    time.sleep(0.001)
time.sleep(30)
"""
