"""Re-sent messages are what the local kernel's own session would send: a frontend's
``Session`` reads them back, signature checked, with the remote's content unchanged."""

from __future__ import annotations

from datetime import datetime

from jupyter_client.session import Session

from binder_autorun import wire
from binder_autorun.frontend import TOPIC, _Signer


def _received(content: dict, metadata: dict | None = None) -> wire.Message:
    remote_parent = {"header": {"msg_id": "remote-request", "msg_type": "execute_request"}}
    msg = wire.make_message("display_data", content, "remote-session", channel="iopub", parent=remote_parent, metadata=metadata)
    return wire.decode(wire.encode(msg, wire.V1_PROTOCOL), wire.V1_PROTOCOL)


def _read_back(session: Session, parts: list) -> dict:
    idents, rest = session.feed_identities([bytes(part) for part in parts])
    assert idents == [TOPIC]
    return session.deserialize(rest)  # raises on a bad signature


def test_a_resent_message_reads_back_as_the_local_sessions_own() -> None:
    session = Session(key=b"local-key")
    signer = _Signer(session)
    parent = {"header": session.msg_header("execute_request")}  # a local request: its date is a datetime
    content = {"data": {"text/plain": "é ✓ 42", "text/html": "<b>42</b>"}, "metadata": {"isolated": True}, "transient": {"display_id": "d1"}}
    received = _received(content, metadata={"tag": 1})
    parts = signer.serialize(received, parent, TOPIC)
    msg = _read_back(session, parts)
    assert msg["msg_type"] == "display_data"
    assert msg["content"] == content and msg["metadata"] == {"tag": 1}
    assert msg["parent_header"]["msg_id"] == parent["header"]["msg_id"]
    assert msg["header"]["session"] == session.session and msg["header"]["username"] == session.username
    assert isinstance(msg["header"]["date"], datetime) and msg["header"]["date"].tzinfo is not None
    assert bytes(parts[-1]) == bytes(received.packed[3]), "the content JSON is the one that arrived"
    again = _read_back(session, signer.serialize(received, parent, TOPIC))
    assert again["header"]["msg_id"] != msg["header"]["msg_id"]


def test_content_swapped_after_decoding_is_encoded_anew() -> None:
    session = Session(key=b"local-key")
    received = _received({"data": {"text/plain": "old"}, "metadata": {}})
    received["content"] = {"data": {"text/plain": "new"}, "metadata": {}}
    msg = _read_back(session, _Signer(session).serialize(received, {"header": {}}, TOPIC))
    assert msg["content"]["data"] == {"text/plain": "new"} and msg["parent_header"] == {}


def test_a_message_built_here_is_signed_too() -> None:
    session = Session(key=b"local-key")
    built = {"header": {"msg_type": "stream"}, "content": {"name": "stdout", "text": "joined\ntext\n"}}
    msg = _read_back(session, _Signer(session).serialize(built, {"header": session.msg_header("execute_request")}, TOPIC))
    assert msg["msg_type"] == "stream" and msg["content"]["text"] == "joined\ntext\n" and msg["metadata"] == {}
