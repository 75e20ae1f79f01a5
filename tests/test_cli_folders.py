"""``binder-autorun run``: where the kernels work (issue 8, item 9) and paths checked before
anything runs (item 12)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from binder_autorun.cli import main
from binder_autorun.launch import LocalServer

from .test_cli import _run, _write


def _code_cells(path: Path) -> list[nbformat.NotebookNode]:
    return [cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


@pytest.mark.timeout(120)
def test_local_runs_the_remote_kernel_in_the_notebooks_folder(tmp_path: Path) -> None:
    """As nbconvert does: relative data paths work, whatever folder the command runs from."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "data.txt").write_text("relative data\n")
    source = _write(project / "analysis.ipynb", [
        "import os\nprint(os.getcwd())\nprint(open('data.txt').read(), end='')",
        "%%local\nimport os\nos.getcwd()",
    ])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out.ipynb"
    result = _run(["project/analysis.ipynb", "--local", "-o", str(out)], token="", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    remote, local = _code_cells(out)
    assert remote.outputs[0]["text"] == f"{project}\nrelative data\n"
    assert local.outputs[0]["data"]["text/plain"] == repr(str(project))
    assert source.exists()


@pytest.mark.timeout(120)
def test_cwd_sets_the_remote_kernels_folder(remote_server: LocalServer, tmp_path: Path) -> None:
    sub = remote_server.root_dir / "sub dir"
    sub.mkdir(exist_ok=True)
    source = _write(tmp_path / "nb.ipynb", ["import os\nos.getcwd()"])
    out = tmp_path / "out.ipynb"
    result = _run([str(source), "--url", remote_server.url, "--cwd", "sub dir", "-o", str(out)], remote_server.token)
    assert result.returncode == 0, result.stderr
    assert _code_cells(out)[0].outputs[0]["data"]["text/plain"] == repr(str(sub))

    missing = _run([str(source), "--url", remote_server.url, "--cwd", "no/such", "-o", str(out)], remote_server.token)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (
        f"binder-autorun: The server at {remote_server.url} has no folder 'no/such' for --cwd (it is relative to the server's root)."
    )
    assert "Traceback" not in missing.stderr and "[1/1]" not in missing.stderr


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run main() and return its one line of complaint (exit status 2, no traceback)."""
    status = main(["run", *argv])
    captured = capsys.readouterr()
    assert status == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_bad_paths_are_one_sentence_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # an unreachable server: a check that ran after connecting would say "Could not reach" instead
    server = ["--url", "http://127.0.0.1:9/"]
    good = _write(tmp_path / "nb.ipynb", ["1"])
    assert _fails([str(tmp_path / "missing.ipynb"), *server], capsys) == (
        f"binder-autorun: {tmp_path / 'missing.ipynb'} does not exist; give the path of a notebook (.ipynb)."
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _fails([str(empty), *server], capsys) == f"binder-autorun: {empty} holds no notebooks (*.ipynb) to run."
    text = tmp_path / "notes.ipynb"
    text.write_text("not json at all")
    assert _fails([str(text), *server], capsys).startswith(f"binder-autorun: {text} is not a Jupyter notebook (")
    nowhere = tmp_path / "no" / "such" / "out.ipynb"
    assert _fails([str(good), *server, "-o", str(nowhere)], capsys) == (
        f"binder-autorun: Cannot write {nowhere}: the folder {nowhere.parent} does not exist."
    )
    assert _fails([str(good), *server, "-o", str(tmp_path)], capsys) == (
        f"binder-autorun: -o {tmp_path} is a folder; give a file name, like {tmp_path / 'out.ipynb'}."
    )
    assert _fails([str(good), "--cwd", "sub"], capsys).startswith("binder-autorun: --cwd needs a target")
    assert not (tmp_path / "nb.remote.ipynb").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_output_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path / "nb.ipynb", ["1"])
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert _fails([str(good), "--url", "http://127.0.0.1:9/", "-o", str(locked / "out.ipynb")], capsys) == (
            f"binder-autorun: Cannot write {locked / 'out.ipynb'}: permission denied."
        )
    finally:
        locked.chmod(0o700)
