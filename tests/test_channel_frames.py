"""The reader's own cut of frames from its read-ahead agrees with websocket-client's reader
on every shape a server sends: small and large lengths, text and binary, frames split
across socket reads, fragmented messages, pings between frames. Real TCP on loopback."""

from __future__ import annotations

import socket
import struct
import threading
import time

import websocket

from binder_autorun.channel import READ_AHEAD, _StampedWebSocket

OP = websocket.ABNF


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
    ws = _StampedWebSocket(skip_utf8_validation=True)
    ws.sock = client
    ws.connected = True
    return ws, server


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
