"""Text the reader relays is never held back while the socket is idle, whatever frames
(pings, pongs) arrive after it, and whatever way the request ends.

Real parts only: a real jupyter_server pinging often, reached through a loopback proxy that
delivers what the server sends in bursts (as a busy network path does), real ipykernels.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from binder_autorun.launch import LocalServer

from .frontend_driver import Frontend, routed_frontend
from .tcp_proxy import TcpProxy

#: how long the proxy gathers what the server sends before passing it on in one write
BURST = 0.2
#: the server's websocket ping interval: several pings fall in each burst
PING_EVERY = 0.02


class BurstProxy(TcpProxy):
    """Passes a websocket's server-to-client bytes on in bursts of :data:`BURST` seconds,
    so a frame and the pings after it reach the client in one read."""

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        upgraded = False
        try:
            while data := src.recv(65536):
                if upgraded:
                    data += _gather(src, time.monotonic() + BURST)
                upgraded = upgraded or data.startswith(b"HTTP/1.1 101")
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _gather(src: socket.socket, until: float) -> bytes:
    """What ``src`` sends until ``until`` (or its end)."""
    gathered = b""
    while (left := until - time.monotonic()) > 0 and select.select([src], [], [], left)[0]:
        more = src.recv(65536)
        if not more:
            break
        gathered += more
    return gathered


@pytest.fixture
def bursty(tmp_path: Path) -> Iterator[Frontend]:
    root = tmp_path / "remote-root"
    root.mkdir()
    server = LocalServer(root_dir=root, base_url="/user/someone/", ws_ping_interval=PING_EVERY, ws_ping_timeout=30)
    server.start()
    proxy = BurstProxy(server.port)
    driver = routed_frontend(tmp_path, f"http://127.0.0.1:{proxy.port}/user/someone/", server.token)
    yield driver
    driver.shutdown()
    proxy.close()
    server.stop()


@pytest.mark.timeout(120)
def test_a_line_printed_before_a_long_computation_is_shown_at_once(bursty: Frontend) -> None:
    """"epoch n" then minutes of work: the line is on the page while the work runs, not when
    the next line comes (the pings behind it in the same read used to keep it held)."""
    msg_id, reply = bursty.execute("import time\nfor n in range(3):\n    print(f'epoch {n}', flush=True)\n    time.sleep(2.5)", timeout=60)
    assert reply["content"]["status"] == "ok"
    streams = bursty.of(msg_id, "stream")
    assert [m["content"]["text"] for m in streams] == [f"epoch {n}\n" for n in range(3)], "each line came on its own"
    idle = bursty.of(msg_id, "status")[-1]["received"]
    gaps = [later["received"] - line["received"] for line, later in zip(streams, [*streams[1:], {"received": idle}])]
    assert min(gaps) > 1.5, f"a line reached the page only with what came after it: {gaps}"
