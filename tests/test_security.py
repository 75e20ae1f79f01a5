"""The token never reaches a log record, a repr, a message or a URL we show."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from binder_autorun.channel import KernelChannel
from binder_autorun.errors import AuthError
from binder_autorun.launch import LocalServer
from binder_autorun.server import JupyterServer, ServerInfo, normalize_url
from binder_autorun.session import KernelSession

from .conftest import BASE_URL
from .tcp_proxy import TcpProxy


class Collect:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def on_message(self, msg: dict) -> None:  # type: ignore[type-arg]
        self.messages.append(repr(msg))

    def on_input(self, prompt: str, password: bool) -> str:
        return "answer"

    def flush(self) -> None:
        pass


@pytest.mark.timeout(90)
def test_token_absent_from_logs_reprs_and_errors(own_server: LocalServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, ours and our dependencies', at their most verbose
    token = own_server.token
    proxy = TcpProxy(own_server.port)
    try:
        info = ServerInfo(f"http://127.0.0.1:{proxy.port}{BASE_URL}", token)
        server = JupyterServer(info)
        session = KernelSession.start(server)
        sink = Collect()
        threading.Timer(0.5, proxy.cut).start()
        reply = session.execute("import time\nfor i in range(10):\n    print(i, flush=True)\n    time.sleep(0.1)\ninput('q')", sink, allow_stdin=True)
        assert reply["status"] == "ok" and session.channel.reconnects == 1
        shown = [repr(info), repr(server), repr(session), repr(session.channel), repr(own_server), info.ws_url, session.channel.url]
        with pytest.raises(AuthError) as refused:
            JupyterServer(ServerInfo(own_server.url, "wrong" + token)).api_info()
        shown.append(str(refused.value))
        session.shutdown()
    finally:
        proxy.close()
    records = [record.getMessage() for record in caplog.records]
    assert records, "nothing was logged: the scan would prove nothing"
    for text in records + shown + sink.messages:
        assert token not in text


def test_pasted_url_query_is_never_echoed() -> None:
    with pytest.raises(Exception) as bad:
        normalize_url("ftp://host/?token=SECRET1234")
    assert "SECRET1234" not in str(bad.value)
    assert normalize_url("https://hub.example.org/user/me/lab/tree/x.ipynb?token=SECRET1234") == "https://hub.example.org/user/me/"


@pytest.mark.timeout(30)
def test_saved_servers_file_is_owner_only(tmp_path: Path) -> None:
    from binder_autorun.launch.saved import SavedServers

    saved = SavedServers(tmp_path / "state" / "servers.json")
    saved.put("binder:https://hub/build/gh/o/r/HEAD", "https://hub/user/x/", "tok", "kid")
    assert (tmp_path / "state" / "servers.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "state").stat().st_mode & 0o077 == 0
    assert saved.get("binder:https://hub/build/gh/o/r/HEAD")["token"] == "tok"  # type: ignore[index]
    (tmp_path / "state" / "servers.json").chmod(0o644)  # someone loosened it: ignore the file
    assert saved.get("binder:https://hub/build/gh/o/r/HEAD") is None


def test_channel_url_has_no_token(own_server: LocalServer) -> None:
    channel = KernelChannel(JupyterServer(own_server.info), "kernel-id")
    assert own_server.token not in channel.url and "token" not in channel.url
