"""``%binder_on -r`` in a real notebook kernel, through the BinderHub stand-in:
progress, failures, reattach after a local restart, relaunch and replay, and the
token never showing anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from binder_autorun.cli import TOKEN_ENV

from .binderhub_standin import BinderHubStandIn
from .kernel_driver import LocalKernel, Result


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[BinderHubStandIn]:
    root = tmp_path / "binder-root"
    root.mkdir()
    with BinderHubStandIn(root, user="someone") as standin:
        yield standin


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[LocalKernel]:
    local = LocalKernel(tmp_path)
    local.execute("%load_ext binder_autorun")
    yield local
    local.shutdown()


def _everything(result: Result) -> str:
    """All a user could see or save from a cell, as text."""
    return repr(result.outputs) + repr(result.reply)


def _launch(kernel: LocalKernel, hub: BinderHubStandIn, spec: str = "standin/repo", extra: str = "") -> Result:
    return kernel.execute(f"%binder_on -r {spec} --binderhub {hub.url} {extra}", timeout=60)


@pytest.mark.timeout(90)
def test_launch_shows_progress_and_connects(kernel: LocalKernel, hub: BinderHubStandIn) -> None:
    result = _launch(kernel, hub, "standin/build")
    assert result.reply["status"] == "ok", result.text
    assert hub.paths == ["/build/gh/standin/build/HEAD"]
    # one display updated in place, ending with a summary
    displays = result.of("display_data")
    assert len(displays) == 1
    display_id = displays[0]["transient"]["display_id"]
    updates = [u for u in result.of("update_display_data") if u["transient"]["display_id"] == display_id]
    assert updates, "the progress display was never updated"
    final = updates[-1]["data"]["text/plain"]
    assert "Binder ready" in final and "standin/build" in final and hub.url.rstrip("/") in final
    assert any("building" in u["data"]["text/plain"] for u in updates)
    # cells now run on the launched server, under its /user/<name>/ base_url
    where = kernel.execute("import os\nos.getcwd()")
    assert where.of("execute_result")[0]["data"]["text/plain"] == repr(str(hub.root_dir))
    status = kernel.execute("%binder_status").stdout
    assert "/user/someone/" in status and "standin/build" in status and "cull:" in status
    assert hub.server is not None and hub.server.token not in _everything(result) + status
    log = kernel.execute("%binder_status --log").stdout
    assert "Successfully installed" in log or "Step" in log or len(log.splitlines()) > 3


@pytest.mark.timeout(60)
def test_failed_build_is_one_sentence_with_the_log_tail(kernel: LocalKernel, hub: BinderHubStandIn) -> None:
    started = time.monotonic()
    result = _launch(kernel, hub, "standin/build-failure")
    assert time.monotonic() - started < 20
    assert result.reply["status"] == "error"
    errors = result.of("error")
    assert len(errors) == 1
    text = "\n".join(errors[0]["traceback"])
    assert "returned a non-zero code: 1" in text
    assert "Traceback" not in text
    # nothing was switched on: the notebook stays on its local kernel
    assert "not connected (local kernel)" in kernel.execute("%binder_status").stdout


@pytest.mark.timeout(60)
def test_bad_spec_fails_before_any_request(kernel: LocalKernel, hub: BinderHubStandIn) -> None:
    result = _launch(kernel, hub, "ftp://example.org/not-a-repo")
    assert result.reply["status"] == "error"
    assert len(result.of("error")[0]["traceback"]) == 1
    assert "owner/repo" in result.of("error")[0]["traceback"][0]
    assert hub.received == []


@pytest.mark.timeout(120)
def test_reattach_after_local_kernel_restart(kernel: LocalKernel, hub: BinderHubStandIn) -> None:
    assert _launch(kernel, hub).reply["status"] == "ok"
    kernel.execute("kept = 'remote state'")
    kernel.km.restart_kernel(now=True)
    kernel.kc.wait_for_ready(timeout=60)
    kernel.execute("%load_ext binder_autorun")
    again = _launch(kernel, hub)
    assert again.reply["status"] == "ok", again.text
    assert len(hub.received) == 1, "the restarted kernel built again instead of reattaching"
    assert "reattached" in again.stderr
    assert kernel.execute("kept").of("execute_result")[0]["data"]["text/plain"] == "'remote state'"
    # the saved record is private to its owner
    state = Path(os.environ["BINDER_AUTORUN_STATE"])
    assert state.stat().st_mode & 0o077 == 0


@pytest.mark.timeout(120)
def test_culled_server_relaunch_and_replay(kernel: LocalKernel, hub: BinderHubStandIn) -> None:
    assert _launch(kernel, hub).reply["status"] == "ok"
    kernel.execute("x = 41")
    kernel.execute("y = x + 1")
    assert hub.server is not None
    hub.server.kill()  # the Binder is culled
    gone = kernel.execute("y", timeout=20)
    assert gone.reply["status"] == "error" and gone.seconds < 5
    assert "relaunch" in "\n".join(gone.of("error")[0]["traceback"])
    assert kernel.execute("%%local\n'still local'").of("execute_result")[0]["data"]["text/plain"] == "'still local'"

    back = kernel.execute("%binder_on --relaunch --replay", timeout=60)
    assert back.reply["status"] == "ok", back.text
    assert len(hub.received) == 2
    assert "replaying [1/2] x = 41" in back.stderr and "replaying [2/2] y = x + 1" in back.stderr
    assert kernel.execute("y").of("execute_result")[0]["data"]["text/plain"] == "42"


@pytest.mark.timeout(120)
def test_auto_relaunch(kernel: LocalKernel, hub: BinderHubStandIn) -> None:
    assert _launch(kernel, hub).reply["status"] == "ok"
    kernel.execute("%%local\n%config BinderAutorun.auto_relaunch = True")
    kernel.execute("base = 10")
    assert hub.server is not None
    hub.server.kill()
    result = kernel.execute("base * 2", timeout=60)
    assert result.reply["status"] == "ok", result.text
    assert result.of("execute_result")[0]["data"]["text/plain"] == "20"
    assert "auto_relaunch is on" in result.stderr
    assert len(hub.received) == 2


@pytest.mark.timeout(120)
def test_restart_magic(kernel: LocalKernel, hub: BinderHubStandIn) -> None:
    assert _launch(kernel, hub).reply["status"] == "ok"
    kernel.execute("gone_after_restart = 1")
    restarted = kernel.execute("%binder_restart", timeout=60)
    assert restarted.reply["status"] == "ok" and "restarted the remote kernel" in restarted.stderr
    check = kernel.execute("'gone_after_restart' in globals()")
    assert check.of("execute_result")[0]["data"]["text/plain"] == "False"
    assert check.reply["execution_count"] == check.of("execute_result")[0]["execution_count"]


@pytest.mark.timeout(120)
def test_cli_launches_a_binder_and_never_saves_the_token(hub: BinderHubStandIn, tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os\nos.getcwd()")])
    source, out = tmp_path / "nb.ipynb", tmp_path / "out.ipynb"
    nbformat.write(notebook, source)
    result = subprocess.run(
        [sys.executable, "-m", "binder_autorun.cli", "run", str(source), "-r", "standin/build", "--binderhub", hub.url, "-o", str(out)],
        capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL, env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    assert "Binder ready" in result.stderr
    saved = out.read_text()
    assert repr(str(hub.root_dir)) in nbformat.reads(saved, as_version=4).cells[0].outputs[0]["data"]["text/plain"]
    assert hub.server is not None
    assert hub.server.token not in saved + result.stdout + result.stderr
    assert TOKEN_ENV not in saved
