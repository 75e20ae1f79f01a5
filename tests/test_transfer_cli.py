"""`binder-autorun run NB --push PATH... --pull PATH... [--sync]` against a real jupyter_server
(base_url /user/someone/): pushed files are there for the first cell, pulled ones land beside
the notebook, --sync brings back what the run wrote; one sentence when a path is missing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from binder_autorun.cli import TOKEN_ENV
from binder_autorun.launch import LocalServer


def _notebook(path: Path, cells: list[str]) -> Path:
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    return path


def _run(args: list[str], token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "binder_autorun.cli", "run", *args], env=dict(os.environ, **{TOKEN_ENV: token}),
                          capture_output=True, text=True, timeout=150, stdin=subprocess.DEVNULL)


@pytest.mark.timeout(180)
def test_push_pull_and_sync_around_a_run(own_server: LocalServer, tmp_path: Path) -> None:
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    payload = os.urandom(100_000)
    (folder / "data" / "in.bin").write_bytes(payload)
    (folder / "notes.txt").write_text("notes")
    source = _notebook(folder / "nb.ipynb", [
        "import hashlib, os\nprint(hashlib.sha256(open('data/in.bin', 'rb').read()).hexdigest())",
        "os.makedirs('results', exist_ok=True)\nopen('results/out.txt', 'w').write('done')\nopen('synced.txt', 'w').write('s')",
    ])
    out = tmp_path / "out.ipynb"
    result = _run([str(source), "--url", own_server.url, "-o", str(out), "--push", "data", "--pull", "results/", "-q"], own_server.token)
    assert result.returncode == 0, result.stderr
    cells = [cell for cell in nbformat.read(out, as_version=4).cells if cell.cell_type == "code"]
    assert cells[0].outputs[0]["text"].strip() == hashlib.sha256(payload).hexdigest()  # there before the first cell
    assert (folder / "results" / "out.txt").read_text() == "done"
    assert "pushed 1 file" in result.stderr and "pulled 1 file" in result.stderr
    assert own_server.token not in result.stderr + result.stdout
    assert not (folder / "synced.txt").exists()  # not asked for

    # --sync: the whole folder goes, and what the run wrote comes back
    (own_server.root_dir / "synced.txt").unlink()
    result = _run([str(source), "--url", own_server.url, "-o", str(out), "--sync", "-q"], own_server.token)
    assert result.returncode == 0, result.stderr
    assert (own_server.root_dir / "notes.txt").read_text() == "notes"
    assert (folder / "synced.txt").read_text() == "s"

    # a missing path: one sentence, nothing ran
    result = _run([str(source), "--url", own_server.url, "-o", str(tmp_path / "x.ipynb"), "--push", "nope.csv"], own_server.token)
    assert result.returncode == 2 and "no local file or folder 'nope.csv'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.ipynb").exists()
