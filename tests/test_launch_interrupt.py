"""An interrupted launch leaves nothing behind (issue 8, item 13): Ctrl-C while a private
jupyter_server starts kills it, whether the start was called directly or by ``%binder_on --local``
in a notebook kernel."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from binder_autorun.launch import LocalServer

from .kernel_driver import LocalKernel


def _servers_of(root: Path) -> list[psutil.Process]:
    """Live jupyter_server processes serving ``root``."""
    flag = f"--ServerApp.root_dir={root.resolve()}"
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and flag in (proc.info["cmdline"] or []):
            found.append(proc)
    return found


def _interrupt_once_started(root: Path, interrupt: object, seen: list[int], seconds: float = 30) -> threading.Thread:
    """Call ``interrupt()`` as soon as a server for ``root`` runs (it is then still starting up)."""

    def watch() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            servers = _servers_of(root)
            if servers:
                seen.extend(proc.pid for proc in servers)
                interrupt()  # type: ignore[operator]
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.timeout(60)
@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs the main thread for SIGINT")
def test_interrupted_start_kills_the_server(tmp_path: Path) -> None:
    server = LocalServer(root_dir=tmp_path)
    seen: list[int] = []
    main = threading.main_thread().ident
    assert main is not None
    watcher = _interrupt_once_started(tmp_path, lambda: signal.pthread_kill(main, signal.SIGINT), seen)
    with pytest.raises(KeyboardInterrupt):
        server.start()
        time.sleep(5)  # (a start that finished first: let the interrupt land here, so the test fails below)
    watcher.join()
    assert seen, "the server process never appeared"
    assert not server.running
    assert _servers_of(tmp_path) == []


@pytest.mark.timeout(90)
def test_interrupted_binder_on_local_leaves_no_server(tmp_path: Path) -> None:
    root = tmp_path / "served"
    root.mkdir()
    kernel = LocalKernel(tmp_path)
    try:
        kernel.execute("%load_ext binder_autorun")
        seen: list[int] = []
        watcher = _interrupt_once_started(root, kernel.km.interrupt_kernel, seen)
        result = kernel.execute(f"%binder_on --local {root}", timeout=60)
        watcher.join()
        assert seen, "the server process never appeared"
        assert result.reply["status"] == "error"
        assert "%binder_on was interrupted; nothing was switched." in result.text
        assert [proc.pid for proc in _servers_of(root)] == []
        assert "not connected" in kernel.execute("%binder_status").stdout
        # and a second attempt, not interrupted, still works
        again = kernel.execute(f"%binder_on --local {root}", timeout=60)
        assert again.reply["status"] == "ok", again.text
        assert len(_servers_of(root)) == 1
    finally:
        kernel.shutdown()
