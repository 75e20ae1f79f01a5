"""%binder_on options a notebook user relies on: the remote kernel's folder (--cwd), and a
URL pasted with its token, which must then vanish from the notebook's history."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from binder_autorun.launch import LocalServer

from .kernel_driver import LocalKernel


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[LocalKernel]:
    local = LocalKernel(tmp_path)
    assert local.execute("%load_ext binder_autorun").reply["status"] == "ok"
    yield local
    local.shutdown()


@pytest.mark.timeout(60)
def test_cwd_starts_the_remote_kernel_in_that_folder(kernel: LocalKernel, own_server: LocalServer) -> None:
    (Path(own_server.root_dir) / "data dir").mkdir()
    (Path(own_server.root_dir) / "data dir" / "x.csv").write_text("a,b\n")
    missing = kernel.execute(f"%binder_on --url {own_server.url} --token {own_server.token} --cwd nowhere")
    assert missing.reply["status"] == "error"
    assert "has no folder 'nowhere'" in missing.reply["evalue"] and len(missing.of("error")[0]["traceback"]) == 1
    connected = kernel.execute(f"%binder_on --url {own_server.url} --token {own_server.token} --cwd 'data dir'")
    assert connected.reply["status"] == "ok", connected.text
    assert kernel.execute("open('x.csv').read()").of("execute_result")[0]["data"]["text/plain"] == repr("a,b\n")


@pytest.mark.timeout(60)
def test_a_pasted_url_with_its_token_connects_and_leaves_no_token_in_history(kernel: LocalKernel, remote_server: LocalServer) -> None:
    pasted = f"{remote_server.url}lab/tree/analysis.ipynb?token={remote_server.token}"
    connected = kernel.execute(f"%binder_on --url {pasted}")
    assert connected.reply["status"] == "ok", connected.text
    assert remote_server.token not in connected.text
    history = kernel.execute("%%local\nprint(In[-2], _ih[-2])")
    assert remote_server.token not in history.text and "token=<hidden>" in history.text


@pytest.mark.timeout(60)
def test_a_url_that_is_no_jupyter_server_is_one_sentence(kernel: LocalKernel, tmp_path: Path) -> None:
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        result = kernel.execute(f"%binder_on --url http://127.0.0.1:{web.server_port}/ --token t")
    finally:
        web.shutdown()
    assert result.reply["status"] == "error"
    [error] = result.of("error")
    assert "does not look like a Jupyter server" in error["evalue"] and len(error["traceback"]) == 1


@pytest.mark.timeout(90)
def test_binder_on_sync_mirrors_a_folder_from_the_start(tmp_path: Path, own_server: LocalServer) -> None:
    local = LocalKernel(tmp_path)
    try:
        (tmp_path / "proj").mkdir()
        (tmp_path / "proj" / "in.txt").write_text("input")
        assert local.execute("%load_ext binder_autorun").reply["status"] == "ok"
        connected = local.execute(f"%binder_on --url {own_server.url} --token {own_server.token} --sync proj")
        assert connected.reply["status"] == "ok", connected.text
        assert (Path(own_server.root_dir) / "proj" / "in.txt").read_text() == "input"
        wrote = local.execute("open('proj/out.txt', 'w').write('output')")
        assert wrote.reply["status"] == "ok", wrote.text
        assert (tmp_path / "proj" / "out.txt").read_text() == "output"
    finally:
        local.shutdown()
