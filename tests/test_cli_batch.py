"""``binder-autorun run`` with several notebooks or a folder: one server, fresh kernels each,
a summary, --log-output as papermill streams it (issue 11, section 2)."""

from __future__ import annotations

import ast
import re
import signal
import time
from pathlib import Path

import nbformat
import pytest
import requests

from binder_autorun.batch import notebooks_in
from binder_autorun.cli import main
from binder_autorun.errors import BinderAutorunError
from binder_autorun.launch import LocalServer

from .test_cli import _run, _write
from .test_cli_stop import _start, _wait_file, _wait_for


def _code_cells(path: Path) -> list[nbformat.NotebookNode]:
    return [cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


def _value(cell: nbformat.NotebookNode) -> object:
    return ast.literal_eval(cell.outputs[-1]["data"]["text/plain"])


def _summary(stderr: str) -> dict[str, list[str]]:
    """The summary table's rows by notebook: [status, cells, time, output]."""
    lines = stderr[stderr.index("  notebook  "):].splitlines()[1:]
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines if line.startswith("  ")]
    return {row[0]: row[1:] for row in rows}


def _kernel_ids(server: LocalServer) -> set[str]:
    response = requests.get(server.url + "api/kernels", headers={"Authorization": f"token {server.token}"}, timeout=10)
    return {kernel["id"] for kernel in response.json()}


@pytest.mark.timeout(240)
def test_a_folder_runs_on_one_server_with_fresh_kernels_and_streams_its_output(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / ".ipynb_checkpoints").mkdir(parents=True)
    _write(project / "a.ipynb", [
        "import os, time\nprint('first', flush=True)\ntime.sleep(3)\nprint('second')\nleftover = 1\n(os.getpid(), os.getppid(), os.getcwd())",
        "%%local\nimport os\nos.getpid()",
        "import sys\nprint('to stderr', file=sys.stderr)\n'rich ' + 'value'",
    ])
    _write(project / "b.ipynb", ["1/0", "print('never')"])
    _write(project / "c.ipynb", ["import os\n('leftover' in globals(), os.getpid(), os.getppid())", "%%local\nimport os\nos.getpid()"])
    for skipped in ("a.remote.ipynb", ".hidden.ipynb", ".ipynb_checkpoints/a-checkpoint.ipynb"):
        _write(project / skipped, ["raise SystemExit('must not run')"])
    proc = _start(["project", "--local", "-o", "out", "--log-output"], "", cwd=tmp_path)
    try:
        assert proc.stdout is not None
        arrived: dict[str, float] = {}
        for line in proc.stdout:
            arrived.setdefault(line.rstrip("\n"), time.monotonic())
        stderr = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr  # b failed
    assert "binder_autorun/" not in stderr, stderr  # no traceback of ours (b's own is logged)
    # --log-output: each output as it arrives, stdout to stdout, stderr (and errors) to stderr, rich ones as text/plain
    assert arrived["second"] - arrived["first"] > 2, "'first' was held back until the cell ended"
    assert "'rich value'" in arrived and "to stderr" not in arrived
    assert "to stderr" in stderr and "ZeroDivisionError" in stderr
    assert "[1/3] import os, time ... \n" in stderr and "[1/3] ... ok (In [1]" in stderr  # progress makes room for output

    summary = _summary(stderr)
    out = tmp_path / "out"
    assert list(summary) == ["project/a.ipynb", "project/b.ipynb", "project/c.ipynb"]  # sorted; outputs, hidden, checkpoints skipped
    assert [row[:2] for row in summary.values()] == [["ok", "3/3"], ["failed", "1/2"], ["ok", "2/2"]]
    assert [row[3] for row in summary.values()] == [f"out/{name}.remote.ipynb" for name in "abc"]
    assert all(row[2].endswith(" s") for row in summary.values())
    assert sorted(path.name for path in out.iterdir()) == ["a.remote.ipynb", "b.remote.ipynb", "c.remote.ipynb"]

    a_remote, a_local, _ = _code_cells(out / "a.remote.ipynb")
    a_pid, a_server, a_cwd = _value(a_remote)  # type: ignore[misc]
    assert a_cwd == str(project)  # --local: the notebook's folder, as for one notebook
    c_remote, c_local = _code_cells(out / "c.remote.ipynb")
    leftover, c_pid, c_server = _value(c_remote)  # type: ignore[misc]
    assert leftover is False and c_pid != a_pid, "c ran on a's remote kernel"
    assert c_server == a_server, "each notebook launched a server of its own"
    assert _value(c_local) != _value(a_local), "c ran on a's local kernel"
    assert c_remote.execution_count == 1
    b_cells = _code_cells(out / "b.remote.ipynb")
    assert b_cells[0].outputs[0]["ename"] == "ZeroDivisionError" and b_cells[1].outputs == []


@pytest.mark.timeout(240)
def test_cwd_applies_to_each_and_fail_fast_stops_the_rest(remote_server: LocalServer, tmp_path: Path) -> None:
    (remote_server.root_dir / "batch dir").mkdir(exist_ok=True)
    paths = [_write(tmp_path / "n1.ipynb", ["import os\nos.getcwd()"]), _write(tmp_path / "n2.ipynb", ["import os\nos.getcwd()"]),
             _write(tmp_path / "n3.ipynb", ["raise ValueError('n3 fails')"]), _write(tmp_path / "n4.ipynb", ["print('never')"])]
    before = _kernel_ids(remote_server)
    result = _run([*map(str, paths), "--url", remote_server.url, "--cwd", "batch dir", "--fail-fast"], remote_server.token, timeout=200)
    assert result.returncode == 1, result.stderr
    for name in ("n1", "n2"):
        assert _value(_code_cells(tmp_path / f"{name}.remote.ipynb")[0]) == str(remote_server.root_dir / "batch dir")
    summary = _summary(result.stderr)
    assert [row[:2] for row in summary.values()] == [["ok", "1/1"], ["ok", "1/1"], ["failed", "1/1"], ["not run", "0/1"]]
    assert summary[str(paths[3])][2:] == ["-", "-"]
    assert (tmp_path / "n3.remote.ipynb").exists() and not (tmp_path / "n4.remote.ipynb").exists()
    assert "binder-autorun: 4 notebooks: 2 ok, 1 failed, 1 not run" in result.stderr
    assert _kernel_ids(remote_server) <= before, "a remote kernel of the batch was left running"
    assert remote_server.token not in result.stdout + result.stderr


@pytest.mark.timeout(240)
def test_ctrl_c_stops_the_batch_after_writing_the_current_notebook(remote_server: LocalServer, tmp_path: Path) -> None:
    started = remote_server.root_dir / f"started-{tmp_path.name}"  # the remote kernel works in the server's root
    first = _write(tmp_path / "a.ipynb", ["print('a ran')"])
    second = _write(tmp_path / "b.ipynb", ["x = 1", f"import time\nopen({started.name!r}, 'w').close()\ntime.sleep(60)", "print('never')"])
    third = _write(tmp_path / "c.ipynb", ["print('never')"])
    proc = _start([str(tmp_path), "--url", remote_server.url, "-o", str(tmp_path / "out")], remote_server.token, cwd=tmp_path)
    try:
        seen = _wait_for(proc, "[2/3] import time ... ", seconds=120)
        _wait_file(started)
        proc.send_signal(signal.SIGINT)
        stderr = seen + proc.communicate(timeout=30)[1]
    finally:
        proc.kill()
        started.unlink(missing_ok=True)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    summary = _summary(stderr)
    assert [summary[str(path)][:2] for path in (first, second, third)] == [["ok", "1/1"], ["interrupted", "2/3"], ["not run", "0/1"]]
    _, sleeping, never = _code_cells(tmp_path / "out" / "b.remote.ipynb")
    assert [o["ename"] for o in sleeping.outputs if o["output_type"] == "error"] == ["KeyboardInterrupt"] and never.outputs == []
    assert not (tmp_path / "out" / "c.remote.ipynb").exists()


def test_batch_paths_are_one_sentence_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = ["--url", "http://127.0.0.1:9/"]  # unreachable: a check after connecting would say so instead
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        _write(tmp_path / folder / "same.ipynb", ["1"])
    one, two = tmp_path / "x" / "same.ipynb", tmp_path / "y" / "same.ipynb"

    def fails(*argv: str) -> str:
        assert main(["run", *argv, *server]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    out = tmp_path / "out"
    assert fails(str(one), str(two), "-o", str(out)) == (
        f"binder-autorun: {one} and {two} would both be written to {out / 'same.remote.ipynb'}; run them separately."
    )
    (tmp_path / "file.txt").write_text("")
    assert fails(str(one), str(two), "-o", str(tmp_path / "file.txt")) == (
        f"binder-autorun: -o {tmp_path / 'file.txt'} is a file; with several notebooks -o names a folder to write them into."
    )
    assert fails(str(one), str(tmp_path / "nope.ipynb")) == (
        f"binder-autorun: {tmp_path / 'nope.ipynb'} does not exist; give the path of a notebook (.ipynb)."
    )
    assert not list(tmp_path.glob("*/*.remote.ipynb"))
    with pytest.raises(BinderAutorunError):
        notebooks_in(tmp_path)  # only folders below, no notebooks in it
