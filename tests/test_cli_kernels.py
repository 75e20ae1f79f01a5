"""``binder-autorun run``: the notebook's kernelspec chooses the remote kernel; the local one is
always Python (issue 8, item 10)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from binder_autorun.launch import LocalServer

from .conftest import BASE_URL
from .test_cli import _run

#: a kernel whose language_info differs from the local kernel's, so we can tell whose was saved
MARKED_KERNEL = '''
from ipykernel.ipkernel import IPythonKernel


class MarkedKernel(IPythonKernel):
    language_info = {**IPythonKernel.language_info, "pygments_lexer": "remote-marked"}
'''


@pytest.fixture(scope="module")
def two_kernel_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A server with python3 and a second spec, ``remote-py``, that exists only there."""
    tmp_path = tmp_path_factory.mktemp("two-kernels")
    jupyter_path = tmp_path / "jupyter-path"
    spec = jupyter_path / "kernels" / "remote-py"
    spec.mkdir(parents=True)
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "marked_kernel.py").write_text(MARKED_KERNEL)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 "--IPKernelApp.kernel_class=marked_kernel.MarkedKernel"],
        "display_name": "Remote Py (marked)",
        "language": "python",
        "env": {"WHICH_KERNEL": "remote-py", "PYTHONPATH": str(modules)},
    }))
    root = tmp_path / "remote-root"
    root.mkdir()
    server = LocalServer(root_dir=root, base_url=BASE_URL, env={"JUPYTER_PATH": str(jupyter_path)})
    server.start()
    yield server
    server.stop()


def _notebook(path: Path, name: str, display: str, language: str) -> Path:
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os\nos.environ.get('WHICH_KERNEL')"),
        nbformat.v4.new_code_cell("%%local\nimport sys\nsys.executable"),
    ])
    notebook.metadata["kernelspec"] = {"name": name, "display_name": display, "language": language}
    nbformat.write(notebook, path)
    return path


@pytest.mark.timeout(120)
def test_the_notebooks_kernelspec_picks_the_remote_kernel(two_kernel_server: LocalServer, tmp_path: Path) -> None:
    source = _notebook(tmp_path / "nb.ipynb", "remote-py", "Remote Py (marked)", "python")
    out = tmp_path / "out.ipynb"
    result = _run([str(source), "--url", two_kernel_server.url, "-o", str(out)], two_kernel_server.token)
    assert result.returncode == 0, result.stderr
    saved = nbformat.read(out, as_version=4)
    remote, local = [cell for cell in saved.cells if cell.cell_type == "code"]
    assert remote.outputs[0]["data"]["text/plain"] == "'remote-py'"
    assert local.outputs[0]["data"]["text/plain"] == repr(sys.executable)  # the local side is plain Python
    assert saved.metadata["kernelspec"] == {"name": "remote-py", "display_name": "Remote Py (marked)", "language": "python"}
    assert saved.metadata["language_info"]["pygments_lexer"] == "remote-marked"  # the remote kernel's, as natively


@pytest.mark.timeout(120)
def test_a_missing_remote_kernel_is_one_sentence_before_anything_runs(two_kernel_server: LocalServer, tmp_path: Path) -> None:
    source = _notebook(tmp_path / "nb.ipynb", "ir", "R", "R")
    out = tmp_path / "out.ipynb"
    started = time.monotonic()
    result = _run([str(source), "--url", two_kernel_server.url, "-o", str(out)], two_kernel_server.token)
    assert time.monotonic() - started < 20
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"binder-autorun: The server at {two_kernel_server.url} has no kernel 'ir' (it has: python3, remote-py); "
        "choose one with --kernel-name."
    ]
    assert not out.exists()

    # --kernel-name overrides the kernelspec for the remote; the saved notebook keeps its own
    chosen = _run([str(source), "--url", two_kernel_server.url, "--kernel-name", "remote-py", "-o", str(out)], two_kernel_server.token)
    assert chosen.returncode == 0, chosen.stderr
    saved = nbformat.read(out, as_version=4)
    assert saved.cells[0].outputs[0]["data"]["text/plain"] == "'remote-py'"
    assert saved.metadata["kernelspec"]["name"] == "ir"
