"""``JupyterHubLauncher`` against a real JupyterHub (proxy, spawner, single-user servers) on loopback."""

from __future__ import annotations

import http.server
import json
import logging
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import websocket

from binder_autorun.errors import AuthError, LaunchError
from binder_autorun.launch.events import iter_events
from binder_autorun.launch.jupyterhub import HubLaunch, JupyterHubLauncher, ProgressEvent, hub_base_url
from binder_autorun.launch.local import free_port
from binder_autorun.server import JupyterServer

from .jupyterhub_fixture import JupyterHubProcess, missing_requirements, real_jupyterhub  # noqa: F401  (the fixture)

pytestmark = pytest.mark.timeout(60)

V1 = "v1.kernel.websocket.jupyter.org"


# --- helpers --------------------------------------------------------------------


def launch(hub: JupyterHubProcess, token: str, server_name: str = "", timeout: float = 45) -> tuple[HubLaunch, list[ProgressEvent]]:
    events: list[ProgressEvent] = []
    result = JupyterHubLauncher(hub.url, token, server_name=server_name, timeout=timeout).launch(events.append)
    return result, events


def v1_frame(channel: str, msg: dict[str, Any]) -> bytes:
    """A kernel message in the v1 websocket framing (u64le count, u64le offsets, parts)."""
    parts = [channel.encode()] + [json.dumps(msg[key]).encode() for key in ("header", "parent_header", "metadata", "content")]
    offsets = [8 * (len(parts) + 2)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


def v1_parse(frame: bytes) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(channel, header, parent_header, content) of a v1 frame."""
    count = struct.unpack_from("<Q", frame)[0]
    offsets = struct.unpack_from(f"<{count}Q", frame, 8)
    parts = [frame[offsets[i]:offsets[i + 1]] for i in range(count - 1)]
    return parts[0].decode(), json.loads(parts[1]), json.loads(parts[2]), json.loads(parts[4])


def kernel_info_over_websocket(info_url: str, token: str, kernel_id: str) -> tuple[str | None, dict[str, Any]]:
    """Open the kernel's channels through the hub's proxy; return the chosen subprotocol and the reply."""
    ws_url = "ws" + info_url[len("http"):] + f"api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}"
    ws = websocket.create_connection(ws_url, header=[f"Authorization: token {token}"], subprotocols=[V1], timeout=20)
    try:
        protocol = ws.getsubprotocol()
        msg_id = uuid.uuid4().hex
        request = {
            "header": {"msg_id": msg_id, "msg_type": "kernel_info_request", "username": "test",
                       "session": uuid.uuid4().hex, "date": "", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "content": {},
        }
        if protocol == V1:
            ws.send_binary(v1_frame("shell", request))
        else:
            ws.send(json.dumps({**request, "channel": "shell"}))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            frame = ws.recv()
            if isinstance(frame, bytes) and protocol == V1:
                channel, header, parent, content = v1_parse(frame)
            elif isinstance(frame, str):
                msg = json.loads(frame)
                channel, header, parent, content = msg["channel"], msg["header"], msg["parent_header"], msg["content"]
            else:
                continue
            if channel == "shell" and header["msg_type"] == "kernel_info_reply" and parent.get("msg_id") == msg_id:
                return protocol, content
        raise AssertionError("no kernel_info_reply within 20 s")
    finally:
        ws.close()


# --- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice(jupyterhub: JupyterHubProcess) -> Iterator[tuple[str, HubLaunch, list[ProgressEvent]]]:
    """alice's default server, started once by the launcher (her token made as on /hub/token)."""
    token = jupyterhub.user_token("alice")
    result, events = launch(jupyterhub, token)
    yield token, result, events


# --- against the real hub ---------------------------------------------------------


def test_launch_starts_the_server_and_it_works(jupyterhub: JupyterHubProcess, alice: tuple[str, HubLaunch, list[ProgressEvent]]) -> None:
    token, result, events = alice
    assert result.user == "alice" and result.server_name == "" and result.started
    assert result.info.url == jupyterhub.url + "user/alice/"
    assert result.info.token == token and token not in repr(result)
    assert 0 < result.launch_seconds < 45
    # progress: our request, the hub's own steps (its slow_spawn_timeout makes it answer 202), then ready
    assert events[0].phase == "launching" and events[-1].phase == "ready"
    hub_messages = [event.message for event in events[1:-1]]
    assert "Server requested" in hub_messages and "Spawning server..." in hub_messages
    assert all(event.phase == "launching" for event in events[:-1])
    assert [e.progress for e in events if e.progress is not None] == sorted(e.progress for e in events if e.progress is not None)

    headers = {"Authorization": f"token {token}"}
    status = requests.get(result.info.url + "api/status", headers=headers, timeout=10)
    assert status.status_code == 200, status.text
    kernel = requests.post(result.info.url + "api/kernels", headers=headers, json={"name": "python3"}, timeout=30)
    assert kernel.status_code == 201, kernel.text

    # and through the project's own REST client
    server = JupyterServer(result.info)
    try:
        assert "version" in server.api_info()
        assert any(k["id"] == kernel.json()["id"] for k in server.request("GET", "api/kernels").json())
    finally:
        server.shutdown_kernel(kernel.json()["id"])
        server.close()


def test_kernel_websocket_through_the_proxy_keeps_the_v1_subprotocol(alice: tuple[str, HubLaunch, list[ProgressEvent]]) -> None:
    token, result, _ = alice
    server = JupyterServer(result.info)
    kernel_id = server.start_kernel("python3")["id"]
    try:
        protocol, reply = kernel_info_over_websocket(result.info.url, token, kernel_id)
        assert protocol == V1, f"the proxy lost the kernel websocket subprotocol (got {protocol!r})"
        assert reply["status"] == "ok" and reply["language_info"]["name"] == "python"
    finally:
        server.shutdown_kernel(kernel_id)
        server.close()


def test_running_server_is_reused(jupyterhub: JupyterHubProcess, alice: tuple[str, HubLaunch, list[ProgressEvent]]) -> None:
    token, first, _ = alice
    again, events = launch(jupyterhub, token)
    assert not again.started
    assert again.info == first.info
    assert again.launch_seconds < 5
    assert [event.phase for event in events] == ["launching", "ready"]
    assert requests.get(again.info.url + "api/status", headers={"Authorization": f"token {token}"}, timeout=10).status_code == 200


def test_named_server(jupyterhub: JupyterHubProcess, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = jupyterhub.user_token("bob")
    result, events = launch(jupyterhub, token, server_name="analysis")
    assert (result.user, result.server_name, result.started) == ("bob", "analysis", True)
    assert result.info.url == jupyterhub.url + "user/bob/analysis/"
    assert events[-1].phase == "ready"
    assert requests.get(result.info.url + "api/status", headers={"Authorization": f"token {token}"}, timeout=10).status_code == 200
    assert not (jupyterhub.server_model("bob", "") or {}).get("ready")
    # and reused by name
    again, _ = launch(jupyterhub, token, server_name="analysis")
    assert again.info == result.info and not again.started
    jupyterhub.stop_server("bob", "analysis")
    assert "analysis" in caplog.text and token not in caplog.text


def test_named_server_the_hub_refuses(jupyterhub: JupyterHubProcess) -> None:
    token = jupyterhub.user_token("bob")
    with pytest.raises(LaunchError) as caught:
        launch(jupyterhub, token, server_name="no good!")
    assert str(caught.value) == (
        f"The JupyterHub at {jupyterhub.url} refused to start bob's server 'no good!' "
        "(HTTP 400): Invalid server_name: 'no good!'."
    )


def test_server_still_stopping_is_started_again(jupyterhub: JupyterHubProcess) -> None:
    token = jupyterhub.user_token("dave")
    first, _ = launch(jupyterhub, token)
    # this hub answers a stop at once (202) and finishes it in the background
    assert jupyterhub.request("DELETE", "users/dave/server").status_code == 202
    assert (jupyterhub.server_model("dave") or {}).get("pending") == "stop"
    again, _ = launch(jupyterhub, token)  # POST answers 400 "pending stop" until it has stopped
    assert again.started and again.info == first.info
    assert requests.get(again.info.url + "api/status", headers={"Authorization": f"token {token}"}, timeout=10).status_code == 200
    jupyterhub.stop_server("dave")


@pytest.fixture(scope="module")
def hub_that_waits_for_the_spawn() -> Iterator[JupyterHubProcess]:
    """A hub that holds the POST until the server is up (201, not 202).

    JupyterHub's own slow_spawn_timeout is 10 s; a loaded CI machine can take longer to start a
    single-user server, and then the hub answers 202 — another test's path — so wait longer.
    """
    if missing_requirements():
        pytest.skip(str(missing_requirements()))
    hub = JupyterHubProcess(slow_spawn_timeout=40, slow_stop_timeout=10)
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()


@pytest.mark.timeout(120)
def test_spawn_that_finishes_within_the_post(hub_that_waits_for_the_spawn: JupyterHubProcess) -> None:
    hub = hub_that_waits_for_the_spawn
    token = hub.user_token("frank")
    result, events = launch(hub, token, timeout=50)
    assert result.started and result.info.url == hub.url + "user/frank/"
    assert [event.phase for event in events] == ["launching", "ready"]  # 201: nothing left to report
    assert requests.get(result.info.url + "api/status", headers={"Authorization": f"token {token}"}, timeout=10).status_code == 200


def test_hub_address_as_pasted_from_the_browser(jupyterhub: JupyterHubProcess, alice: tuple[str, HubLaunch, list[ProgressEvent]]) -> None:
    token, first, _ = alice
    result = JupyterHubLauncher(jupyterhub.url.rstrip("/") + "/hub/home?x=1", token, timeout=30).launch()
    assert result.info == first.info


def test_bad_token_is_an_auth_error_without_the_token(jupyterhub: JupyterHubProcess, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bad = "not-a-real-token-" + uuid.uuid4().hex
    with pytest.raises(AuthError) as caught:
        launch(jupyterhub, bad)
    message = str(caught.value)
    assert bad not in message and "HTTP 403" in message and jupyterhub.url in message and "--token" in message
    assert bad not in caplog.text


def test_token_that_cannot_open_servers_is_refused_before_starting(jupyterhub: JupyterHubProcess) -> None:
    # enough to start servers, not to use them: the single-user server would answer 403
    token = jupyterhub.user_token("erin", scopes=["servers!user=erin", "read:users!user=erin"])
    with pytest.raises(AuthError, match="access:servers"):
        launch(jupyterhub, token)
    assert jupyterhub.server_model("erin") is None


def test_service_token_is_refused(jupyterhub: JupyterHubProcess) -> None:
    with pytest.raises(LaunchError, match="service 'test-admin', not to a user"):
        launch(jupyterhub, jupyterhub.admin_token)


def test_unreachable_hub_fails_fast() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    began = time.monotonic()
    with pytest.raises(LaunchError) as caught:
        JupyterHubLauncher(url, "some-token", timeout=30).launch()
    assert time.monotonic() - began < 3
    assert str(caught.value) == f"Could not reach the JupyterHub at {url}; check the address and your network."


def test_something_that_is_not_a_hub() -> None:
    class NotAHub(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotAHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        with pytest.raises(LaunchError, match="does not look like a JupyterHub"):
            JupyterHubLauncher(url, "some-token", timeout=10).launch()
    finally:
        server.shutdown()
        server.server_close()


def test_spawn_failure_carries_the_hubs_message(jupyterhub: JupyterHubProcess) -> None:
    token = jupyterhub.user_token("broken")
    began = time.monotonic()
    with pytest.raises(LaunchError) as caught:
        launch(jupyterhub, token)
    message = str(caught.value)
    assert message.startswith("JupyterHub could not start broken's server: Spawn failed: [Errno 2] No such file or directory")
    assert "no-such-jupyterhub-singleuser" in message and token not in message
    assert time.monotonic() - began < 10


def test_server_that_dies_while_starting(jupyterhub: JupyterHubProcess) -> None:
    # the hub answers the POST with a bare HTTP 500; the reason comes later on the progress stream
    token = jupyterhub.user_token("crasher")
    with pytest.raises(LaunchError, match=r"^JupyterHub could not start crasher's server: Spawn failed: .*didn't respond in 3 seconds; try again, and if it keeps failing show this message to the hub's admin\.$"):
        launch(jupyterhub, token)


def test_timeout_while_the_hub_is_still_spawning(jupyterhub: JupyterHubProcess) -> None:
    token = jupyterhub.user_token("sleeper")
    began = time.monotonic()
    try:
        with pytest.raises(LaunchError, match=r"^Gave up waiting for sleeper's server after 2 s \(JupyterHub last said: Spawning server\.\.\.\); it may still be starting"):
            launch(jupyterhub, token, timeout=2)
        assert time.monotonic() - began < 4
        assert (jupyterhub.server_model("sleeper") or {}).get("pending") == "spawn"  # left to the hub, which keeps trying
    finally:
        jupyterhub.stop_server("sleeper")


def test_interrupt_cancels_the_spawn_it_started(jupyterhub: JupyterHubProcess) -> None:
    token = jupyterhub.user_token("carol")

    def interrupt_on_hub_progress(event: ProgressEvent) -> None:
        if event.message == "Spawning server...":
            raise KeyboardInterrupt

    with pytest.raises(LaunchError, match="interrupted; JupyterHub was asked to stop carol's server"):
        JupyterHubLauncher(jupyterhub.url, token, timeout=30).launch(interrupt_on_hub_progress)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        model = jupyterhub.server_model("carol")
        if model is None or not (model["ready"] or model["pending"]):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"carol's server still {model}")


# --- pure parts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pasted", "base"),
    [
        ("https://hub.example.org", "https://hub.example.org/"),
        ("hub.example.org", "https://hub.example.org/"),
        ("https://hub.example.org/hub/home", "https://hub.example.org/"),
        ("https://hub.example.org/hub/token?x=1#y", "https://hub.example.org/"),
        ("https://hub.example.org/hub", "https://hub.example.org/"),
        ("https://example.org/jupyter/hub/spawn", "https://example.org/jupyter/"),
        ("https://example.org/jupyter/", "https://example.org/jupyter/"),
        ("https://example.org/jupyter", "https://example.org/jupyter/"),
        ("https://hub.example.org/user/alice/lab/tree/x.ipynb", "https://hub.example.org/"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/"),
    ],
)
def test_hub_base_url(pasted: str, base: str) -> None:
    assert hub_base_url(pasted) == base


def test_hub_base_url_rejects_other_schemes() -> None:
    with pytest.raises(LaunchError, match="is not a JupyterHub address"):
        hub_base_url("ftp://hub.example.org/")


def test_event_stream_parsing_is_tolerant() -> None:
    stream = [
        b"\n\n",                                    # JupyterHub's keepalive
        b": keepalive\n\n",                         # a comment
        b'data: {"progress": 0, "message": "Server requested"}\r\n\r\n',
        b'event: progress\nid: 3\ndata: {"progress": 50,',  # one event split across chunks
        b' "message": "Spawning server..."}\n',
        b"\n",
        b"data: not json\n\n",
        b"data: [1, 2]\n\n",
        b'data: {"progress": 100, "ready": true, "url": "/user/a/"}',  # no final blank line
    ]
    assert list(iter_events(stream)) == [
        {"progress": 0, "message": "Server requested"},
        {"progress": 50, "message": "Spawning server..."},
        {"progress": 100, "ready": True, "url": "/user/a/"},
    ]


@pytest.mark.timeout(120)
def test_notebook_cells_run_on_a_jupyterhub_server(jupyterhub: JupyterHubProcess, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``%binder_on --jupyterhub`` in a real notebook kernel: spawn, connect, route a cell."""
    from binder_autorun.cli import TOKEN_ENV

    from .kernel_driver import LocalKernel

    jupyterhub.ensure_user("carol")
    token = jupyterhub.user_token("carol")
    local = LocalKernel(tmp_path, env={TOKEN_ENV: token})
    try:
        local.execute("%load_ext binder_autorun")
        connect = local.execute(f"%binder_on --jupyterhub {jupyterhub.url}", timeout=90)
        assert connect.reply["status"] == "ok", connect.text
        result = local.execute("import os\nos.environ.get('JUPYTERHUB_USER')")
        assert result.of("execute_result")[0]["data"]["text/plain"] == "'carol'"
        status = local.execute("%binder_status").stdout
        assert f"{jupyterhub.url}user/carol/" in status
        assert token not in connect.text + result.text + status
    finally:
        local.shutdown()
