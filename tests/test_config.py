"""Configuration by environment and %config, and server-side limits passed through."""

from __future__ import annotations

from pathlib import Path

import pytest

from binder_autorun.cli import TOKEN_ENV
from binder_autorun.launch import LocalServer

from .kernel_driver import LocalKernel


@pytest.mark.timeout(60)
def test_bare_binder_on_uses_the_environment(remote_server: LocalServer, tmp_path: Path) -> None:
    local = LocalKernel(tmp_path, env={"BINDER_AUTORUN_URL": remote_server.url, TOKEN_ENV: remote_server.token})
    try:
        local.execute("%load_ext binder_autorun")
        connect = local.execute("%binder_on")
        assert connect.reply["status"] == "ok", connect.text
        assert remote_server.url in local.execute("%binder_status").stdout
        where = local.execute("import os\nos.getcwd()").of("execute_result")[0]["data"]["text/plain"]
        assert where == repr(str(remote_server.root_dir))
    finally:
        local.shutdown()


@pytest.mark.timeout(60)
def test_config_traits(remote_server: LocalServer, tmp_path: Path) -> None:
    local = LocalKernel(tmp_path)
    try:
        local.execute("%load_ext binder_autorun")
        local.execute(f"%config BinderAutorun.url = {remote_server.url!r}")
        local.execute(f"%config BinderAutorun.token = {remote_server.token!r}")
        local.execute("%config BinderAutorun.cell_timeout = 1.5")
        assert local.execute("%binder_on").reply["status"] == "ok"
        slow = local.execute("import time\ntime.sleep(20)", timeout=20)
        assert slow.reply["status"] == "error" and slow.reply["ename"] == "KeyboardInterrupt"
        assert slow.seconds < 6
        assert "ran longer than 1.5 s and was interrupted" in slow.stderr
        listing = local.execute("%config BinderAutorun").stdout
        assert "cell_timeout" in listing and "auto_relaunch" in listing
        assert remote_server.token not in listing
    finally:
        local.shutdown()


@pytest.mark.timeout(60)
def test_server_rate_limit_warning_reaches_the_user(remote_server: LocalServer, tmp_path: Path) -> None:
    """A default server drops output above 1 MB/s and says so; that sentence must get through."""
    local = LocalKernel(tmp_path, env={TOKEN_ENV: remote_server.token})
    try:
        local.execute("%load_ext binder_autorun")
        local.execute(f"%binder_on --url {remote_server.url}")
        result = local.execute("for i in range(30):\n    print('x' * 200_000)", timeout=40)
        assert result.reply["status"] == "ok"
        assert "IOPub data rate exceeded" in result.stderr
        assert "iopub_data_rate_limit" in result.stderr
    finally:
        local.shutdown()
