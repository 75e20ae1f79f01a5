"""No token on the line or in the environment, and a server that wants one: %binder_on asks
for it with a password prompt, so no saved cell ever holds it; where nobody can be asked,
one sentence says which variable to set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from binder_autorun.launch import LocalServer

from .kernel_driver import LocalKernel


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[LocalKernel]:
    local = LocalKernel(tmp_path)  # conftest keeps BINDER_AUTORUN_TOKEN out of the environment
    assert local.execute("%load_ext binder_autorun").reply["status"] == "ok"
    yield local
    local.shutdown()


@pytest.mark.timeout(60)
def test_the_token_is_asked_for_with_a_password_prompt(kernel: LocalKernel, remote_server: LocalServer) -> None:
    result = kernel.execute(f"%binder_on --url {remote_server.url}", answers=[remote_server.token])
    assert result.reply["status"] == "ok", result.text
    [prompt] = result.prompts
    assert prompt["password"] is True and "BINDER_AUTORUN_TOKEN" in prompt["prompt"]
    assert remote_server.url in prompt["prompt"] and remote_server.token not in prompt["prompt"]
    assert remote_server.token not in result.text
    assert "connected to" in result.stderr
    remote = kernel.execute("import os; os.getpid()")
    assert remote.reply["status"] == "ok" and int(remote.of("execute_result")[0]["data"]["text/plain"]) != kernel.km.provisioner.pid  # type: ignore[union-attr]
    history = kernel.execute("%%local\nprint(repr(In))")
    assert remote_server.token not in history.text


@pytest.mark.timeout(60)
def test_without_stdin_one_sentence_names_the_variable(kernel: LocalKernel, remote_server: LocalServer) -> None:
    result = kernel.execute(f"%binder_on --url {remote_server.url}", allow_stdin=False)
    assert result.reply["status"] == "error"
    [error] = result.of("error")
    assert error["traceback"] and len(error["traceback"]) == 1
    assert "needs a token" in error["evalue"] and "BINDER_AUTORUN_TOKEN" in error["evalue"]
    assert kernel.execute("%%local\n1 + 1").reply["status"] == "ok"  # still a working local kernel


@pytest.mark.timeout(60)
def test_a_wrong_token_typed_at_the_prompt_is_refused_without_echo(kernel: LocalKernel, remote_server: LocalServer) -> None:
    result = kernel.execute(f"%binder_on --url {remote_server.url}", answers=["not-the-token"])
    assert result.reply["status"] == "error"
    assert "rejected the token" in result.reply["evalue"] and "not-the-token" not in result.text
