"""``binder-autorun run``: a whole notebook routed, from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from binder_autorun.cli import TOKEN_ENV
from binder_autorun.launch import LocalServer


def _write(path: Path, cells: list[str | tuple[str, list[str]]]) -> Path:
    notebook = nbformat.v4.new_notebook()
    for cell in cells:
        source, tags = (cell, []) if isinstance(cell, str) else cell
        notebook.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags} if tags else {}))
    notebook.cells.insert(0, nbformat.v4.new_markdown_cell("# a notebook"))
    nbformat.write(notebook, path)
    return path


def _run(args: list[str], token: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **{TOKEN_ENV: token})
    return subprocess.run(
        [sys.executable, "-m", "binder_autorun.cli", "run", *args],
        env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd,
    )


@pytest.mark.timeout(120)
def test_runs_every_cell_remotely_with_remote_counts(own_server: LocalServer, tmp_path: Path) -> None:
    source = _write(tmp_path / "nb.ipynb", [
        "import os\nremote = os.getpid()\nprint('remote', remote, os.getcwd())",
        "%%local\nimport os\nprint('local', os.getpid())",
        "remote * 0 + 7",
        ("skipped = True", ["skip-execution"]),
        ("raise ValueError('expected')", ["raises-exception"]),
        "'skipped' in globals()",
    ])
    out = tmp_path / "out.ipynb"
    result = _run([str(source), "--url", own_server.url, "-o", str(out)], own_server.token)
    assert result.returncode == 0, result.stderr
    cells = [cell for cell in nbformat.read(out, as_version=4).cells if cell.cell_type == "code"]
    remote_pid = int(cells[0].outputs[0]["text"].split()[1])
    local_pid = int(cells[1].outputs[0]["text"].split()[1])
    assert remote_pid != local_pid
    # a kernel of the remote server ran cell 1, in the server's root
    assert cells[0].outputs[0]["text"].split()[2] == str(own_server.root_dir)
    assert cells[2].outputs[0]["data"]["text/plain"] == "7"
    assert cells[3].outputs == [] and cells[3].execution_count is None
    assert cells[4].outputs[0]["ename"] == "ValueError"
    assert cells[5].outputs[0]["data"]["text/plain"] == "False"
    # execution counts: one sequence, the remote kernel's (fresh kernel: 1, 2, ...)
    assert [cell.execution_count for cell in cells if cell.execution_count] == [1, 2, 3, 4, 5]
    assert cells[2].outputs[0]["execution_count"] == 3
    # progress: one line per code cell
    assert "[1/6] import os ... ok (In [1]" in result.stderr
    assert "[5/6] raise ValueError('expected') ... error" in result.stderr
    assert own_server.token not in out.read_text() + result.stdout + result.stderr


@pytest.mark.timeout(120)
def test_stops_at_the_first_error_like_nbconvert(remote_server: LocalServer, tmp_path: Path) -> None:
    source = _write(tmp_path / "nb.ipynb", ["x = 1", "1/0", "print('never')"])
    out = tmp_path / "out.ipynb"
    result = _run([str(source), "--url", remote_server.url, "-o", str(out)], remote_server.token)
    assert result.returncode == 1
    assert "a cell failed: ZeroDivisionError: division by zero (use --allow-errors to go on)." in result.stderr
    cells = [cell for cell in nbformat.read(out, as_version=4).cells if cell.cell_type == "code"]
    assert cells[1].outputs[0]["ename"] == "ZeroDivisionError"
    assert cells[2].outputs == []

    allowed = _run([str(source), "--url", remote_server.url, "-o", str(out), "--allow-errors"], remote_server.token)
    assert allowed.returncode == 0, allowed.stderr
    cells = [cell for cell in nbformat.read(out, as_version=4).cells if cell.cell_type == "code"]
    assert cells[2].outputs[0]["text"] == "never\n"


@pytest.mark.timeout(120)
def test_timeout_interrupts_the_remote_cell(remote_server: LocalServer, tmp_path: Path) -> None:
    source = _write(tmp_path / "nb.ipynb", ["import time\nprint('waiting', flush=True)\ntime.sleep(60)", "print('next')"])
    out = tmp_path / "out.ipynb"
    started = time.monotonic()
    result = _run([str(source), "--url", remote_server.url, "-o", str(out), "--timeout", "2"], remote_server.token)
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert "cell 1 of 2 ran longer than the --timeout of 2 s and was interrupted." in result.stderr
    assert "Traceback" not in result.stderr
    cell = [c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"][0]
    errors = [o for o in cell.outputs if o["output_type"] == "error"]
    assert [e["ename"] for e in errors] == ["KeyboardInterrupt"] and cell.outputs[0]["text"] == "waiting\n"
    assert any("ran longer than 2 s (--timeout) and was interrupted" in o.get("text", "") for o in cell.outputs)


@pytest.mark.timeout(120)
def test_local_target_and_bad_token(tmp_path: Path) -> None:
    source = _write(tmp_path / "nb.ipynb", ["import os\nos.getcwd()"])
    out = tmp_path / "out.ipynb"
    root = tmp_path / "root"
    root.mkdir()
    result = _run([str(source), "--local", str(root), "-o", str(out)], token="")
    assert result.returncode == 0, result.stderr
    cell = [c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"][0]
    assert cell.outputs[0]["data"]["text/plain"] == repr(str(root))

    bad = _run([str(source), "--url", "http://127.0.0.1:9/", "-o", str(out)], token="NOTSHOWN42")
    assert bad.returncode != 0
    assert "Could not reach the Jupyter server at http://127.0.0.1:9/" in bad.stderr
    assert "NOTSHOWN42" not in bad.stderr + bad.stdout
    assert "Traceback" not in bad.stderr


@pytest.mark.timeout(120)
def test_a_notebook_that_connects_itself_runs_under_the_cli_target(own_server: LocalServer, tmp_path: Path) -> None:
    """The CLI connects first; the notebook's own %binder_on cell is skipped, not an error."""
    source = _write(tmp_path / "nb.ipynb", ["%load_ext binder_autorun", "%binder_on --local", "import os\nos.getcwd()"])
    out = tmp_path / "out.ipynb"
    result = _run([str(source), "--url", own_server.url, "-o", str(out)], own_server.token)
    assert result.returncode == 0, result.stderr
    cells = [c for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"]
    assert "skipped" in cells[1].outputs[0]["text"]
    assert cells[2].outputs[0]["data"]["text/plain"] == repr(str(own_server.root_dir))
