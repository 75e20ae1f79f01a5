"""A private server whose free port is taken before it binds it starts on another one
(the look and the bind are two steps; on a busy machine another process can come between)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from binder_autorun.errors import LaunchError
from binder_autorun.launch import local
from binder_autorun.launch.local import LocalServer


@pytest.fixture
def taken() -> Iterator[socket.socket]:
    """A port something else listens on."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


@pytest.mark.timeout(120)
def test_a_port_taken_before_the_bind_is_replaced(taken: socket.socket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ports = iter([taken.getsockname()[1]])
    real_free_port = local.free_port
    monkeypatch.setattr(local, "free_port", lambda: next(ports, None) or real_free_port())
    server = LocalServer(root_dir=tmp_path)
    try:
        server.start()
        assert server.port != taken.getsockname()[1]
        assert requests.get(server.url + "api/status", headers={"Authorization": f"token {server.token}"}, timeout=10).status_code == 200
    finally:
        server.stop()


@pytest.mark.timeout(120)
def test_a_port_taken_every_time_is_one_sentence(taken: socket.socket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "free_port", lambda: taken.getsockname()[1])
    server = LocalServer(root_dir=tmp_path)
    with pytest.raises(LaunchError, match=r"found no free port in 3 tries.*not available"):
        server.start()
    assert not server.running
