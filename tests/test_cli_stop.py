"""``binder-autorun run`` stopping: --timeout covers local cells too; Ctrl-C stops cleanly,
says where, writes what ran and leaves no process behind (issue 8, item 11)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from binder_autorun.cli import TOKEN_ENV
from binder_autorun.launch import LocalServer

from .test_cli import _run, _write


STUBBORN = ("%%local\nimport time\nprint('stubborn', flush=True)\nopen('started', 'w').close()\nwhile True:\n"
            "    try:\n        time.sleep(0.05)\n    except KeyboardInterrupt:\n        print('ignored', flush=True)")


def _code_cells(path: Path) -> list[nbformat.NotebookNode]:
    return [cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


def _processes_in(folder: Path) -> list[str]:
    """Live processes working in ``folder`` or below (local kernel, local server, remote kernels)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        cwd, status = proc.info["cwd"], proc.info["status"]
        if cwd and status != psutil.STATUS_ZOMBIE and Path(cwd).is_relative_to(folder):
            found.append(f"{proc.info['pid']}: {' '.join(proc.info['cmdline'] or [])}")
    return found


def _wait_gone(folder: Path, seconds: float = 10) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := _processes_in(folder)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _start(args: list[str], token: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "binder_autorun.cli", "run", *args],
        env=dict(os.environ, **{TOKEN_ENV: token}), cwd=cwd, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_file(path: Path, seconds: float = 60) -> None:
    """Wait until a cell wrote ``path``: it is running its long part now."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    time.sleep(0.2)


def _wait_for(proc: subprocess.Popen[str], text: str, seconds: float = 60) -> str:
    """stderr of ``proc`` up to and including ``text`` (the progress line of a cell)."""
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + seconds
    while text not in seen:
        assert time.monotonic() < deadline, f"never saw {text!r}: {seen}"
        char = proc.stderr.read(1)
        assert char, f"the command ended before {text!r}: {seen}"
        seen += char
    return seen


@pytest.mark.timeout(90)
def test_timeout_covers_local_cells(remote_server: LocalServer, tmp_path: Path) -> None:
    """nbconvert's timeout covers every cell; so does ours, %%local ones included."""
    source = _write(tmp_path / "nb.ipynb", [
        "%%local\nimport time\nprint('local loop', flush=True)\nwhile True:\n    time.sleep(0.05)",
        "print('next')",
    ])
    out = tmp_path / "out.ipynb"
    started = time.monotonic()
    result = _run([str(source), "--url", remote_server.url, "-o", str(out), "--timeout", "2"], remote_server.token, timeout=60)
    assert time.monotonic() - started < 40
    assert result.returncode == 1, result.stderr
    assert "cell 1 of 2 ran longer than the --timeout of 2 s and was interrupted." in result.stderr
    assert "[1/2] %%local ... timed out" in result.stderr and "Traceback" not in result.stderr
    first, second = _code_cells(out)
    assert first.outputs[0]["text"] == "local loop\n"
    assert any("ran longer than 2 s (--timeout) and was interrupted" in o.get("text", "") for o in first.outputs)
    assert [o["ename"] for o in first.outputs if o["output_type"] == "error"] == ["KeyboardInterrupt"]
    assert second.outputs == [] and second.execution_count is None


@pytest.mark.timeout(120)
def test_ctrl_c_stops_cleanly_writes_what_ran_and_leaves_nothing(tmp_path: Path) -> None:
    """First Ctrl-C: the running (remote) cell is interrupted, the run stops there; exit 130."""
    project = tmp_path / "project"
    project.mkdir()
    source = _write(project / "nb.ipynb", [
        "x = 1",
        "import time\nprint('sleeping', flush=True)\nopen('started', 'w').close()\ntime.sleep(60)",
        "print('never')",
    ])
    out = tmp_path / "out.ipynb"
    proc = _start([str(source), "--local", "-o", str(out)], "", cwd=tmp_path)
    try:
        seen = _wait_for(proc, "[2/3] import time ... ")
        _wait_file(project / "started")  # the remote cell is sleeping now
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stderr = seen + proc.communicate(timeout=30)[1]
    finally:
        proc.kill()
    assert time.monotonic() - interrupted < 15, "Ctrl-C took too long to stop the run"
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert f"binder-autorun: interrupted in cell 2 of 3; wrote {out} with what ran." in stderr
    first, second, third = _code_cells(out)
    assert first.execution_count == 1
    assert second.outputs[0]["text"] == "sleeping\n"
    assert [o["ename"] for o in second.outputs if o["output_type"] == "error"] == ["KeyboardInterrupt"]
    assert third.outputs == [] and third.execution_count is None
    # the local kernel, the private server and its (remote) kernel all worked in the project folder
    assert _wait_gone(project) == []


@pytest.mark.timeout(120)
def test_second_ctrl_c_stops_a_cell_that_ignores_the_first(remote_server: LocalServer, tmp_path: Path) -> None:
    source = _write(tmp_path / "nb.ipynb", [STUBBORN, "print('never')"])
    out = tmp_path / "out.ipynb"
    kernels_before = {k["id"] for k in _kernels(remote_server)}
    proc = _start([str(source), "--url", remote_server.url, "-o", str(out)], remote_server.token, cwd=tmp_path)
    try:
        seen = _wait_for(proc, "[1/2] %%local ... ")
        _wait_file(tmp_path / "started")
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert proc.poll() is None, "the first Ctrl-C should wait for the cell"
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stderr = seen + proc.communicate(timeout=30)[1]
    finally:
        proc.kill()
    assert time.monotonic() - interrupted < 10
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert "interrupted in cell 1 of 2" in stderr and "[1/2] %%local ... interrupted" in stderr
    first, second = _code_cells(out)
    assert "stubborn\n" in first.outputs[0]["text"] and "ignored" in "".join(o.get("text", "") for o in first.outputs)
    assert second.outputs == []
    assert _wait_gone(tmp_path) == [], "the local kernel is still running"
    assert {k["id"] for k in _kernels(remote_server)} <= kernels_before, "the remote kernel was left running"


def _kernels(server: LocalServer) -> list[dict[str, str]]:
    import requests

    response = requests.get(server.url + "api/kernels", headers={"Authorization": f"token {server.token}"}, timeout=10)
    response.raise_for_status()
    return response.json()



@pytest.mark.timeout(90)
def test_timeout_stops_the_run_when_the_cell_ignores_the_interrupt(remote_server: LocalServer, tmp_path: Path) -> None:
    source = _write(tmp_path / "nb.ipynb", [STUBBORN, "print('never')"])
    out = tmp_path / "out.ipynb"
    started = time.monotonic()
    result = _run([str(source), "--url", remote_server.url, "-o", str(out), "--timeout", "2"], remote_server.token, timeout=60)
    assert time.monotonic() - started < 40
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert ("binder-autorun: cell 1 of 2 ran longer than the --timeout of 2 s and went on after the interrupt; "
            "the run was stopped.") in result.stderr
    first, second = _code_cells(out)
    assert "ignored" in "".join(o.get("text", "") for o in first.outputs) and second.outputs == []
    assert _wait_gone(tmp_path) == [], "the local kernel is still running"


@pytest.mark.timeout(90)
def test_sigterm_stops_at_once_and_writes_what_ran(remote_server: LocalServer, tmp_path: Path) -> None:
    kernels_before = {k["id"] for k in _kernels(remote_server)}
    source = _write(tmp_path / "nb.ipynb", ["print('one')", "import time\ntime.sleep(60)"])
    out = tmp_path / "out.ipynb"
    proc = _start([str(source), "--url", remote_server.url, "-o", str(out)], remote_server.token, cwd=tmp_path)
    try:
        seen = _wait_for(proc, "[2/2] import time ... ")
        time.sleep(0.5)
        proc.terminate()
        stderr = seen + proc.communicate(timeout=30)[1]
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and f"binder-autorun: terminated in cell 2 of 2; wrote {out} with what ran." in stderr
    first, _ = _code_cells(out)
    assert first.outputs[0]["text"] == "one\n"
    assert _wait_gone(tmp_path) == []
    assert {k["id"] for k in _kernels(remote_server)} <= kernels_before, "the remote kernel was left running"
