"""A server URL pasted as Jupyter prints it (``.../lab?token=...``) connects; the token is taken
from it and shown nowhere (issue 8, item 14)."""

from __future__ import annotations

import logging
from pathlib import Path

import nbformat
import pytest

from binder_autorun.errors import AuthError
from binder_autorun.launch import LocalServer
from binder_autorun.server import JupyterServer, ServerInfo, normalize_url

from .kernel_driver import LocalKernel
from .test_cli import _run, _write

#: what a person copies from Jupyter's log or the browser, after the server's URL (base_url included)
PASTED = ["lab?token={t}", "tree?token={t}", "lab/tree/sub/x.ipynb?token={t}", "notebooks/x.ipynb?token={t}",
          "?token={t}", "voila/render/x.ipynb?token={t}#top", "doc/tree/x.ipynb?foo=1&token={t}"]


@pytest.mark.parametrize("tail", PASTED)
def test_pasted_urls_give_the_base_url_and_the_token(tail: str) -> None:
    info = ServerInfo("https://hub.example.org/user/someone/" + tail.format(t="SECRET1234"))
    assert info.url == "https://hub.example.org/user/someone/"
    assert info.token == "SECRET1234"
    assert "SECRET1234" not in repr(info) + info.ws_url


def test_an_explicit_token_wins_and_user_names_are_not_pages() -> None:
    assert ServerInfo("http://host:8888/lab?token=FROMURL", "GIVEN").token == "GIVEN"
    assert normalize_url("https://hub.example.org/user/lab/tree?token=x") == "https://hub.example.org/user/lab/"
    assert normalize_url("http://127.0.0.1:8888/login?next=%2Ftree") == "http://127.0.0.1:8888/"


@pytest.mark.timeout(60)
def test_the_real_server_accepts_the_pasted_url(remote_server: LocalServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = remote_server.token
    server = JupyterServer(ServerInfo(f"{remote_server.url}lab?token={token}"))
    assert "version" in server.api_info()
    assert server.url == remote_server.url
    with pytest.raises(AuthError) as refused:  # an explicit wrong token wins over the URL's
        JupyterServer(ServerInfo(f"{remote_server.url}lab?token={token}", "wrong")).api_info()
    shown = [repr(server), repr(server.info), str(refused.value)] + [r.getMessage() for r in caplog.records]
    assert all(token not in text for text in shown)


@pytest.mark.timeout(120)
def test_cli_and_magic_connect_with_a_pasted_url(remote_server: LocalServer, tmp_path: Path) -> None:
    token = remote_server.token
    source = _write(tmp_path / "nb.ipynb", ["import os\nos.getcwd()"])
    out = tmp_path / "out.ipynb"
    result = _run([str(source), "--url", f"{remote_server.url}lab?token={token}", "-o", str(out)], token="")
    assert result.returncode == 0, result.stderr
    saved = out.read_text()
    cell = [c for c in nbformat.reads(saved, as_version=4).cells if c.cell_type == "code"][0]
    assert cell.outputs[0]["data"]["text/plain"] == repr(str(remote_server.root_dir))
    assert token not in saved + result.stdout + result.stderr

    kernel = LocalKernel(tmp_path)
    try:
        kernel.execute("%load_ext binder_autorun")
        on = kernel.execute(f"%binder_on --url {remote_server.url}tree?token={token}")
        assert on.reply["status"] == "ok", on.text
        where = kernel.execute("import os\nos.getcwd()")
        assert where.of("execute_result")[0]["data"]["text/plain"] == repr(str(remote_server.root_dir))
        status = kernel.execute("%binder_status")
        assert remote_server.url in status.stdout
        seen = on.text + repr(on.reply) + where.text + status.text + kernel.execute("%config BinderAutorun").text
        assert token not in seen
    finally:
        kernel.shutdown()
