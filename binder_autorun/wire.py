"""Kernel messages on a Jupyter server websocket: building, encoding, decoding.

Two framings exist (see jupyter_server's kernel websocket docs):

* ``v1.kernel.websocket.jupyter.org``: one binary frame per message, a u64le
  count ``n``, ``n`` u64le offsets, then channel, header, parent_header,
  metadata, content (JSON) and any binary buffers between those offsets.
* legacy: a text frame holding one JSON object with a ``channel`` key; a
  message with buffers arrives as a binary frame (u32be count, u32be offsets,
  the JSON, then the buffers).

Pure functions, no I/O: the channel module does the socket work.
"""

from __future__ import annotations

import functools
import json
import struct
import uuid
from datetime import datetime, timezone
from typing import Any

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
PROTOCOL_VERSION = "5.3"

Message = dict[str, Any]


class Received(dict):  # type: ignore[type-arg]
    """A decoded v1 message that keeps its metadata and content as they arrived (JSON).

    Re-sent unchanged to the local frontend, they need not be encoded again: per
    small message that encoding cost more than the decoding. :attr:`packed` holds
    the decoded objects beside their JSON, so a consumer that swaps ``content`` or
    ``metadata`` for another object makes the JSON stale, never wrong.
    """

    __slots__ = ("packed",)
    packed: tuple[Any, memoryview, Any, memoryview]

    def size(self) -> int:
        """Bytes of its content JSON and binary buffers, as it arrived."""
        return len(self.packed[3]) + sum(len(buffer) for buffer in self.get("buffers") or [])

    def packed_parts(self) -> tuple[memoryview, memoryview] | None:
        """(metadata, content) as JSON if both are still the objects decoded from it."""
        metadata, metadata_json, content, content_json = self.packed
        if self.get("metadata") is metadata and self.get("content") is content:
            return metadata_json, content_json
        return None


def new_id() -> str:
    """A fresh message or session id."""
    return uuid.uuid4().hex


def make_message(
    msg_type: str,
    content: dict[str, Any],
    session: str,
    channel: str = "shell",
    parent: Message | None = None,
    metadata: dict[str, Any] | None = None,
    username: str = "binder_autorun",
    msg_id: str | None = None,
    buffers: list[Any] | None = None,
) -> Message:
    """A complete kernel message ready to :func:`encode`.

    ``msg_id`` reuses the id of the local request this one stands for, so the
    remote's replies (and the ids it stores, e.g. an Output widget's ``msg_id``)
    name a request the local frontend knows.
    """
    return {
        "channel": channel,
        "header": {
            "msg_id": msg_id or new_id(),
            "msg_type": msg_type,
            "username": username,
            "session": session,
            "date": datetime.now(timezone.utc).isoformat(),
            "version": PROTOCOL_VERSION,
        },
        "parent_header": (parent or {}).get("header", {}),
        "metadata": metadata or {},
        "content": content,
        "buffers": list(buffers or []),
    }


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _loads(part: memoryview) -> Any:
    # decode straight from the frame's buffer: no intermediate bytes copy of big outputs
    if part == b"{}":
        return {}  # most metadata: parsing it cost as much as a small content
    return json.loads(str(part, "utf-8"))


@functools.lru_cache(maxsize=16)
def _parent_header(part: bytes) -> dict[str, Any]:
    """Every message a request causes carries the same parent header, byte for byte: parsed once."""
    return json.loads(str(part, "utf-8"))  # type: ignore[no-any-return]


def encode(msg: Message, protocol: str | None) -> bytes | str:
    """Encode for sending: bytes for the v1 protocol, str for the legacy one
    (bytes too for a legacy message with buffers)."""
    if protocol != V1_PROTOCOL:
        body = {k: v for k, v in msg.items() if k != "buffers"}
        if not msg.get("buffers"):
            return json.dumps(body, ensure_ascii=False)
        # legacy binary message: u32be count, u32be offsets, the JSON, then the buffers
        legacy_parts = [_dumps(body), *(bytes(b) for b in msg["buffers"])]
        legacy_offsets = [4 * (len(legacy_parts) + 1)]
        for part in legacy_parts[:-1]:
            legacy_offsets.append(legacy_offsets[-1] + len(part))
        return b"".join([struct.pack(f"!{len(legacy_parts) + 1}I", len(legacy_parts), *legacy_offsets), *legacy_parts])
    parts = [
        msg["channel"].encode("utf-8"),
        _dumps(msg["header"]),
        _dumps(msg["parent_header"]),
        _dumps(msg["metadata"]),
        _dumps(msg["content"]),
        *(bytes(b) for b in msg.get("buffers", [])),
    ]
    offsets = [8 * (len(parts) + 2)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    head = struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets)
    return b"".join([head, *parts])


def decode(frame: bytes | str, protocol: str | None) -> Message:
    """Decode one received frame into a message dict (buffers as memoryviews)."""
    if isinstance(frame, str):
        msg = json.loads(frame)
        msg.setdefault("buffers", [])
        return msg
    view = memoryview(frame)
    if protocol == V1_PROTOCOL:
        (count,) = struct.unpack_from("<Q", view, 0)
        offsets = struct.unpack_from(f"<{count}Q", view, 8)
        parts = [view[offsets[i] : offsets[i + 1]] for i in range(count - 1)]
        received = Received(
            channel=bytes(parts[0]).decode("utf-8"),
            header=_loads(parts[1]),
            parent_header=dict(_parent_header(bytes(parts[2]))),  # a copy: consumers own their message
            metadata=_loads(parts[3]),
            content=_loads(parts[4]),
            buffers=parts[5:],
        )
        received.packed = (received["metadata"], parts[3], received["content"], parts[4])
        return received
    # legacy binary message: u32be count, u32be offsets, JSON, buffers
    (count,) = struct.unpack_from("!I", view, 0)
    bounds = [*struct.unpack_from(f"!{count}I", view, 4), len(view)]
    msg = _loads(view[bounds[0] : bounds[1]])
    msg["buffers"] = [view[bounds[i] : bounds[i + 1]] for i in range(1, count)]
    return msg


def parent_id(msg: Message) -> str | None:
    """The id of the request a message answers (None for broadcasts)."""
    return (msg.get("parent_header") or {}).get("msg_id")


def msg_type(msg: Message) -> str:
    """A message's type, from its header."""
    return str(msg.get("header", {}).get("msg_type") or msg.get("msg_type", ""))
