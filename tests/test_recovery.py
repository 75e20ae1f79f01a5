"""Liveness and recovery against a real server: drops, kills, crashes, idle pings."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from binder_autorun.errors import ConnectionLost
from binder_autorun.launch import LocalServer
from binder_autorun.server import JupyterServer, ServerInfo
from binder_autorun.session import KernelSession

from .conftest import BASE_URL
from .kernel_driver import LocalKernel, routed_kernel
from .tcp_proxy import TcpProxy


Connect = Callable[[str, str], LocalKernel]


@pytest.fixture
def connect(tmp_path: Path) -> Iterator[Connect]:
    """Make routed local kernels; shut them all down after the test."""
    kernels: list[LocalKernel] = []

    def make(url: str, token: str) -> LocalKernel:
        kernels.append(routed_kernel(tmp_path, url, token))
        return kernels[-1]

    yield make
    for kernel in kernels:
        kernel.shutdown()


def _local_value(local: LocalKernel, expression: str) -> str:
    """Evaluate ``expression`` on the local kernel (not the remote one)."""
    return local.execute(f"%%local\nprint({expression})").stdout.strip()


@pytest.fixture
def proxy(own_server: LocalServer) -> Iterator[TcpProxy]:
    tcp = TcpProxy(own_server.port)
    yield tcp
    tcp.close()


def _error_text(result) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(line for error in result.of("error") for line in error["traceback"])


@pytest.mark.timeout(90)
def test_dropped_connection_loses_and_repeats_nothing(own_server: LocalServer, proxy: TcpProxy, connect: Connect) -> None:
    local = connect(f"http://127.0.0.1:{proxy.port}{BASE_URL}", own_server.token)
    cut_at: list[float] = []

    def cut_later() -> None:
        time.sleep(1.0)
        cut_at.append(time.monotonic())
        assert proxy.cut() >= 1

    cutter = threading.Thread(target=cut_later)
    cutter.start()
    cell = "import time\nfor i in range(30):\n    print('line', i, flush=True)\n    time.sleep(0.1)\n'done'"
    result = local.execute(cell, timeout=30)
    cutter.join()
    assert result.reply["status"] == "ok", result.text
    assert result.stdout == "".join(f"line {i}\n" for i in range(30))
    assert result.of("execute_result")[0]["data"]["text/plain"] == "'done'"
    # the remote needed ~3 s; the drop may add at most the reconnect time
    assert result.seconds < 3.0 + 2.0 + 1.0
    assert proxy.accepted >= 2, "the client never reconnected"
    status = local.execute("%binder_status").stdout
    assert "connected, 1 reconnect(s)" in status
    assert local.execute("21 * 2").of("execute_result")[0]["data"]["text/plain"] == "42"


def _cut_soon(proxy: TcpProxy, after: float = 0.5) -> threading.Thread:
    cutter = threading.Thread(target=lambda: (time.sleep(after), proxy.cut()))
    cutter.start()
    return cutter


@pytest.mark.timeout(90)
def test_cell_lost_on_its_way_is_sent_again_and_runs_once(own_server: LocalServer, proxy: TcpProxy, connect: Connect) -> None:
    """The server never passed the request on (it was in flight as the connection dropped):
    the kernel's count shows the cell never ran, so it is sent again, and runs once."""
    local = connect(f"http://127.0.0.1:{proxy.port}{BASE_URL}", own_server.token)
    assert local.execute("runs = 0").reply["status"] == "ok"
    proxy.freeze(toward="server")  # what we send now vanishes on the way
    cutter = _cut_soon(proxy)
    result = local.execute("runs += 1\nprint('ran', runs)\nruns", timeout=30)
    cutter.join()
    assert result.reply["status"] == "ok", result.text
    assert result.stdout == "ran 1\n"
    assert result.of("execute_result")[0]["data"]["text/plain"] == "1"
    assert proxy.accepted >= 2, "the client never reconnected"
    assert local.execute("runs").of("execute_result")[0]["data"]["text/plain"] == "1"


@pytest.mark.timeout(90)
def test_cell_that_ran_while_its_messages_were_lost_is_not_run_again(
    own_server: LocalServer, proxy: TcpProxy, connect: Connect
) -> None:
    """The cell ran but all it sent back vanished: the count shows it ran, so the user is told
    the result was lost, and it is not run a second time."""
    local = connect(f"http://127.0.0.1:{proxy.port}{BASE_URL}", own_server.token)
    assert local.execute("runs = 0").reply["status"] == "ok"
    proxy.freeze(toward="client")  # what the server sends now vanishes on the way
    cutter = _cut_soon(proxy)
    result = local.execute("runs += 1\nprint('ran', runs)", timeout=30)
    cutter.join()
    assert result.reply["status"] == "error"
    assert "server lost its result; the cell did run remotely" in _error_text(result)
    assert result.seconds < 10
    assert local.execute("runs").of("execute_result")[0]["data"]["text/plain"] == "1"


@pytest.mark.timeout(60)
def test_unnumbered_request_lost_on_its_way_says_it_may_not_have_run(own_server: LocalServer, proxy: TcpProxy) -> None:
    """A request that takes no number leaves no count to check: the user is told it may not have run."""
    session = KernelSession.start(JupyterServer(ServerInfo(f"http://127.0.0.1:{proxy.port}{BASE_URL}", own_server.token)))
    try:
        proxy.freeze(toward="server")
        cutter = _cut_soon(proxy)
        with pytest.raises(ConnectionLost, match="may or may not have run remotely; check its effects"):
            session.execute("print('helper')", store_history=False, timeout=20)
        cutter.join()
        assert session.execute("1").get("status") == "ok"  # the session itself carries on
    finally:
        session.shutdown()


@pytest.mark.timeout(90)
def test_server_killed_mid_cell(own_server: LocalServer, connect: Connect) -> None:
    local = connect(own_server.url, own_server.token)
    killed_at: list[float] = []

    def kill_later() -> None:
        time.sleep(1.0)
        own_server.kill()
        killed_at.append(time.monotonic())

    threading.Thread(target=kill_later).start()
    result = local.execute("import time\nprint('started', flush=True)\ntime.sleep(60)", timeout=30)
    finished = time.monotonic()
    assert "started" in result.stdout  # output produced before the kill is kept
    assert result.reply["status"] == "error"
    assert finished - killed_at[0] < 5.0, "death was not detected within 5 s"
    message = _error_text(result)
    assert "Lost the remote kernel" in message and "relaunch" in message
    assert len(result.of("error")[0]["traceback"]) == 1

    # the local kernel is healthy and %%local works
    assert local.execute("%%local\n6 * 7").of("execute_result")[0]["data"]["text/plain"] == "42"
    # later remote cells fail at once with the same sentence
    again = local.execute("1 + 1", timeout=10)
    assert again.reply["status"] == "error" and again.seconds < 1.0
    assert _error_text(again) == message


@pytest.mark.timeout(90)
def test_remote_kernel_crash_then_restarted_kernel(remote_server: LocalServer, connect: Connect) -> None:
    local = connect(remote_server.url, remote_server.token)
    assert local.execute("state = 'precious'").reply["status"] == "ok"
    crash = local.execute("import os, time\nprint('about to crash', flush=True)\ntime.sleep(0.5)\nos._exit(1)", timeout=30)
    assert crash.reply["status"] == "error"
    assert "about to crash" in crash.stdout
    assert "remote kernel died" in _error_text(crash) and "lost" in _error_text(crash)
    after = local.execute("'state' in globals()", timeout=30)
    assert after.reply["status"] == "ok"
    assert after.of("execute_result")[0]["data"]["text/plain"] == "False"
    assert "earlier remote state is lost" in after.stderr


@pytest.fixture
def pinging_server(tmp_path: Path) -> Iterator[LocalServer]:
    """A server that pings kernel websockets every 0.5 s and drops them after 1 s of silence."""
    root = tmp_path / "root"
    root.mkdir()
    server = LocalServer(root_dir=root, base_url=BASE_URL, ws_ping_interval=0.5, ws_ping_timeout=1.0)
    server.start()
    yield server
    server.stop()


@pytest.mark.timeout(60)
def test_idle_connection_stays_usable(pinging_server: LocalServer, connect: Connect) -> None:
    local = connect(pinging_server.url, pinging_server.token)
    assert local.execute("x = 'kept'").reply["status"] == "ok"
    time.sleep(4.0)  # four ping timeouts with nothing running
    result = local.execute("x")
    assert result.of("execute_result")[0]["data"]["text/plain"] == "'kept'"
    assert "connected, 0 reconnect(s)" in local.execute("%binder_status").stdout


@pytest.mark.timeout(90)
def test_silently_dead_route_is_noticed_and_the_cell_ends(own_server: LocalServer, proxy: TcpProxy, connect: Connect) -> None:
    """Packets vanish (no reset): pings notice, the client reconnects; the cell never hangs."""
    local = connect(f"http://127.0.0.1:{proxy.port}{BASE_URL}", own_server.token)
    threading.Timer(1.0, proxy.freeze).start()
    result = local.execute("import time\nfor i in range(20):\n    print('tick', i, flush=True)\n    time.sleep(0.1)\n'end'", timeout=40)
    assert result.seconds < 15
    if result.reply["status"] == "ok":
        assert result.of("execute_result")[0]["data"]["text/plain"] == "'end'"
    else:  # the drop swallowed the end of the cell: said in one sentence, never a hang
        assert "the cell did run remotely" in _error_text(result)
    assert "tick 0\n" in result.stdout
    assert local.execute("'next cell'", timeout=20).of("execute_result")[0]["data"]["text/plain"] == "'next cell'"


@pytest.mark.timeout(90)
def test_network_down_for_good_fails_within_five_seconds(own_server: LocalServer, proxy: TcpProxy, connect: Connect) -> None:
    local = connect(f"http://127.0.0.1:{proxy.port}{BASE_URL}", own_server.token)
    frozen_at: list[float] = []

    def down() -> None:
        proxy.freeze(blackhole=True)
        frozen_at.append(time.monotonic())

    threading.Timer(1.0, down).start()
    result = local.execute("import time\nprint('working', flush=True)\ntime.sleep(60)", timeout=30)
    assert result.reply["status"] == "error"
    assert time.monotonic() - frozen_at[0] < 5.0
    assert "Lost the remote kernel" in _error_text(result)
    assert "working" in result.stdout
    assert local.execute("%%local\n'local works'").of("execute_result")[0]["data"]["text/plain"] == "'local works'"


@pytest.mark.timeout(90)
def test_after_a_network_outage_a_bare_binder_on_reattaches_the_same_kernel(
    own_server: LocalServer, proxy: TcpProxy, connect: Connect
) -> None:
    local = connect(f"http://127.0.0.1:{proxy.port}{BASE_URL}", own_server.token)
    assert local.execute("kept = 'state'").reply["status"] == "ok"
    proxy.freeze(blackhole=True)
    lost = local.execute("1 + 1", timeout=30)
    assert lost.reply["status"] == "error"
    assert "once the server answers again, a bare %binder_on reattaches to the same kernel" in _error_text(lost)
    proxy.thaw()
    back = local.execute("%binder_on", timeout=30)
    assert back.reply["status"] == "ok", back.text
    assert "reattached to" in back.text
    assert local.execute("kept").of("execute_result")[0]["data"]["text/plain"] == "'state'"


@pytest.mark.timeout(60)
def test_kernel_shut_down_behind_our_back(own_server: LocalServer, connect: Connect) -> None:
    """A culled kernel leaves the websocket open and silent: the next cell must not hang."""
    import requests

    local = connect(own_server.url, own_server.token)
    kernel_id = _local_value(local, "__import__('binder_autorun')._autorun.session.kernel_id")
    headers = {"Authorization": f"token {own_server.token}"}
    assert requests.delete(f"{own_server.url}api/kernels/{kernel_id}", headers=headers, timeout=10).status_code == 204
    result = local.execute("1 + 1", timeout=30)
    assert result.reply["status"] == "error" and result.seconds < 5
    assert "no longer has the kernel" in _error_text(result)
    assert local.execute("2 + 2", timeout=10).seconds < 1  # later cells say so at once
