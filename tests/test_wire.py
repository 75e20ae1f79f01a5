"""Message framing, checked against jupyter_server's own (de)serializers, and both
protocols end to end against a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)

from binder_autorun import wire
from binder_autorun.launch import LocalServer
from binder_autorun.server import JupyterServer
from binder_autorun.session import KernelSession

from .conftest import BASE_URL


def test_v1_frames_are_what_the_server_reads() -> None:
    msg = wire.make_message("execute_request", {"code": "print('é ✓')"}, "session-1", metadata={"m": 1})
    msg["buffers"] = [b"\x00\x01binary"]
    channel, parts = deserialize_msg_from_ws_v1(wire.encode(msg, wire.V1_PROTOCOL))
    assert channel == "shell"
    assert [json.loads(part) for part in parts[:4]] == [msg["header"], msg["parent_header"], msg["metadata"], msg["content"]]
    assert parts[4:] == [b"\x00\x01binary"]


def test_v1_frames_the_server_writes_are_read() -> None:
    parts = [json.dumps(x).encode() for x in ({"msg_type": "stream", "msg_id": "a"}, {"msg_id": "p"}, {}, {"text": "日本"})]
    frame = serialize_msg_to_ws_v1([*parts, b"buf"], "iopub")
    msg = wire.decode(frame, wire.V1_PROTOCOL)
    assert msg["channel"] == "iopub" and wire.msg_type(msg) == "stream" and wire.parent_id(msg) == "p"
    assert msg["content"] == {"text": "日本"} and [bytes(b) for b in msg["buffers"]] == [b"buf"]


def test_messages_of_one_request_each_own_their_parent_header_and_metadata() -> None:
    """The parent header is parsed once per request and ``{}`` metadata not at all, but a
    consumer that changes one message's parent header or metadata changes no other."""
    parent = {"msg_id": "p", "msg_type": "execute_request", "date": "2026-11-30T23:04:34.469694Z"}
    frames = [serialize_msg_to_ws_v1([json.dumps(part).encode() for part in
                                      ({"msg_type": "stream", "msg_id": str(i)}, parent, {}, {"text": str(i)})], "iopub")
              for i in range(3)]
    first, second, third = (wire.decode(frame, wire.V1_PROTOCOL) for frame in frames)
    first["parent_header"]["msg_id"] = "changed"
    first["metadata"]["changed"] = True
    assert second["parent_header"] == parent and third["parent_header"] == parent
    assert second["metadata"] == {} and third["metadata"] == {}
    assert second.packed_parts() is not None  # still re-sent as it arrived


def test_legacy_text_and_binary_messages() -> None:
    msg = wire.make_message("kernel_info_request", {}, "s")
    assert json.loads(wire.encode(msg, None))["header"] == msg["header"]
    with_buffers = wire.encode({**msg, "buffers": [b"x", memoryview(b"yz")]}, None)
    assert isinstance(with_buffers, bytes)  # a widget's binary buffers travel in a legacy binary frame
    read = deserialize_binary_message(with_buffers)
    assert read["header"]["msg_id"] == msg["header"]["msg_id"] and [bytes(b) for b in read["buffers"]] == [b"x", b"yz"]
    server_side = {"channel": "iopub", "header": {"msg_type": "display_data", "msg_id": "m"}, "parent_header": {"msg_id": "q"},
                   "metadata": {}, "content": {"data": {}}, "buffers": [b"one", b"two"]}
    decoded = wire.decode(serialize_binary_message(dict(server_side)), None)
    assert decoded["content"] == {"data": {}} and [bytes(b) for b in decoded["buffers"]] == [b"one", b"two"]
    assert wire.decode(json.dumps({"channel": "shell", "header": {}}), None)["buffers"] == []


@pytest.fixture
def legacy_server(tmp_path: Path) -> Iterator[LocalServer]:
    """A server that speaks only the legacy (JSON text) kernel websocket protocol."""
    server = LocalServer(root_dir=tmp_path, base_url=BASE_URL, extra_args=["--ZMQChannelsWebsocketConnection.kernel_ws_protocol="])
    server.start()
    yield server
    server.stop()


class Collect:
    def __init__(self) -> None:
        self.outputs: list[tuple[str, dict]] = []  # type: ignore[type-arg]

    def on_message(self, msg: wire.Message) -> None:
        self.outputs.append((wire.msg_type(msg), msg["content"]))

    def on_input(self, prompt: str, password: bool) -> str:
        return "typed"

    def flush(self) -> None:
        pass


@pytest.mark.timeout(60)
@pytest.mark.parametrize("protocol", ["v1", "legacy"])
def test_both_protocols_end_to_end(protocol: str, own_server: LocalServer, legacy_server: LocalServer) -> None:
    server = own_server if protocol == "v1" else legacy_server
    session = KernelSession.start(JupyterServer(server.info))
    try:
        assert session.channel.protocol == (wire.V1_PROTOCOL if protocol == "v1" else None)
        sink = Collect()
        reply = session.execute("print(input('q? ')); 6 * 7", sink, allow_stdin=True)
        assert reply["status"] == "ok"
        assert ("stream", {"name": "stdout", "text": "typed\n"}) in sink.outputs
        assert [c["data"]["text/plain"] for kind, c in sink.outputs if kind == "execute_result"] == ["42"]
    finally:
        session.shutdown()
