"""``binder-autorun run`` parameters, as papermill takes, writes and records them (issue 11, section 2)."""

from __future__ import annotations

import argparse
import ast
import base64
import math
from pathlib import Path
from typing import Any

import nbformat
import pytest

from binder_autorun.cli import build_parser, main
from binder_autorun.errors import BinderAutorunError
from binder_autorun.launch import LocalServer
from binder_autorun.parameters import codify, collect, inject, resolve_type

from .test_cli import _run


def _args(*options: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", "nb.ipynb", *options])


def test_p_values_are_typed_as_papermill_types_them() -> None:
    # papermill's _resolve_type: True/False/None exactly, then int(), then float(), else the text
    typed = {"True": True, "False": False, "None": None, "7": 7, "-3": -3, "1_000": 1000, "0.5": 0.5, "1e3": 1000.0,
             "true": "true", "none": "none", "0x10": "0x10", "it's": "it's", "": ""}
    for text, value in typed.items():
        resolved = resolve_type(text)
        assert resolved == value and type(resolved) is type(value), text
    assert math.isnan(resolve_type("nan"))


def test_options_merge_in_papermills_order(tmp_path: Path) -> None:
    """base64, then files, then -y, then -p, then raw: later ones win, whatever the order on the line."""
    params_file = tmp_path / "params.yaml"
    params_file.write_text("a: from-file\nb: [1, two]\nwhen: 2024-01-02\n")
    encoded = base64.b64encode(b"a: from-base64\nz: 26").decode()
    args = _args("--parameters_raw", "c", "4", "-p", "d", "True", "-y", "a: from-yaml\nc: 3", "-f", str(params_file),
                 "-b", encoded, "--parameters", "e", "2.5")
    assert collect(args) == {"a": "from-yaml", "z": 26, "b": [1, "two"], "when": "2024-01-02", "c": "4", "d": True, "e": 2.5}
    assert list(collect(args)) == ["a", "z", "b", "when", "c", "d", "e"]
    assert _args("-r", "owner/repo").repo == "owner/repo"  # -r stays the repository, not papermill's raw


@pytest.mark.parametrize(("options", "sentence"), [
    (["-y", "[1, 2]"], "-y/--parameters_yaml must be a mapping of names to values, not a list."),
    (["-y", "a: [1"], "-y/--parameters_yaml is not valid YAML ("),
    (["-f", "missing.yaml"], "Cannot read the parameters file missing.yaml: No such file or directory."),
    (["-b", "not base64!"], "-b/--parameters_base64 is not base64-encoded UTF-8 text."),
])
def test_bad_parameters_are_one_sentence(options: list[str], sentence: str) -> None:
    with pytest.raises(BinderAutorunError) as caught:
        collect(_args(*options))
    assert str(caught.value).startswith(sentence) and "\n" not in str(caught.value)


VALUES: dict[str, Any] = {"n": 1, "x": 0.5, "big": 1e20, "s": 'it\'s "q"\n\\', "u": "été", "t": True, "f": False, "none": None,
                          "items": [1, "two", [3.0]], "d": {"k": [1, None], "2": "v"}, "inf": float("inf"), "ninf": float("-inf")}


def test_python_is_written_as_papermill_writes_it_and_reads_back() -> None:
    source = codify(VALUES, "python")
    assert source.splitlines()[:6] == ["# Parameters", "n = 1", "x = 0.5", "big = 1e+20", 's = "it\'s \\"q\\"\\n\\\\"', 'u = "\\xe9t\\xe9"']
    assert source.splitlines()[6:] == ["t = True", "f = False", "none = None", 'items = [1, "two", [3.0]]', 'd = {"k": [1, None], "2": "v"}',
                                       "inf = float('inf')", "ninf = float('-inf')"]
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # noqa: S102 - our own generated code
    assert {name: namespace[name] for name in VALUES} == VALUES


def test_r_and_julia_are_written_as_papermill_writes_them() -> None:
    values = {"_x": 1, "flag": True, "off": False, "none": None, "items": [1, "a"], "d": {"k": 2.5}, "s": 'say "hi"'}
    assert codify(values, "R") == (
        '# Parameters\nx = 1\nflag = TRUE\noff = FALSE\nnone = NULL\nitems = list(1, "a")\nd = list("k" = 2.5)\ns = "say \\"hi\\""\n'
    )
    assert codify(values, "julia") == (
        '# Parameters\n_x = 1\nflag = true\noff = false\nnone = nothing\nitems = [1, "a"]\nd = Dict("k" => 2.5)\ns = "say \\"hi\\""\n'
    )
    with pytest.raises(BinderAutorunError) as caught:
        codify(values, "scala")
    assert str(caught.value) == "Parameters cannot be written in scala: binder-autorun writes them in Python, R and Julia."


def test_injected_after_the_parameters_cell_replacing_an_earlier_injection() -> None:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("a * 2"),
    ])
    assert inject(nb, {"a": 2}, "python")
    assert [cell.source for cell in nb.cells] == ["# title", "a = 1", "# Parameters\na = 2\n", "a * 2"]
    assert nb.cells[2].metadata["tags"] == ["injected-parameters"] and nb.cells[2].cell_type == "code"
    assert inject(nb, {"a": 3}, "python")  # a re-run replaces it in place
    assert [cell.source for cell in nb.cells] == ["# title", "a = 1", "# Parameters\na = 3\n", "a * 2"]
    assert nb.metadata["papermill"] == {"default_parameters": {}, "parameters": {"a": 3}, "environment_variables": {}}

    bare = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("a")])
    assert not inject(bare, {"a": 1}, "python")  # no parameters cell: first, as papermill does
    assert [cell.source for cell in bare.cells] == ["# Parameters\na = 1\n", "a"]


def test_a_language_without_a_translator_is_one_sentence_before_anything_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("val a = 1")])
    nb.metadata["kernelspec"] = {"name": "spylon-kernel", "display_name": "Scala", "language": "scala"}
    path = tmp_path / "scala.ipynb"
    nbformat.write(nb, path)
    assert main(["run", str(path), "-p", "a", "2"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "binder-autorun: Parameters cannot be written in scala: binder-autorun writes them in Python, R and Julia."
    ]
    assert not (tmp_path / "scala.remote.ipynb").exists()


def _parameterized(path: Path) -> Path:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# parameterized"),
        nbformat.v4.new_code_cell("alpha = 0.1\nname = 'default'\nflag = False\nraw = 0\nitems = []\nwhen = None",
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("(alpha, name, flag, raw, items, when)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _result(nb: Any) -> tuple[Any, ...]:
    return ast.literal_eval(nb.cells[-1].outputs[0]["data"]["text/plain"])


@pytest.mark.timeout(180)
def test_a_papermill_notebook_runs_remotely_with_its_parameters(remote_server: LocalServer, tmp_path: Path) -> None:
    source = _parameterized(tmp_path / "nb.ipynb")
    (tmp_path / "params.yaml").write_text("name: from-file\nitems: [1, two]\nwhen: 2024-01-02\n")
    out = tmp_path / "out.ipynb"
    result = _run([str(source), "--url", remote_server.url, "-o", str(out), "-p", "alpha", "0.5", "-p", "flag", "True",
                   "-f", str(tmp_path / "params.yaml"), "-y", "name: from-yaml", "--parameters_raw", "raw", "42"], remote_server.token)
    assert result.returncode == 0, result.stderr
    saved = nbformat.read(out, as_version=4)
    assert _result(saved) == (0.5, "from-yaml", True, "42", [1, "two"], "2024-01-02")
    injected = saved.cells[2]
    assert injected.metadata["tags"] == ["injected-parameters"]
    assert injected.source == ('# Parameters\nname = "from-yaml"\nitems = [1, "two"]\nwhen = "2024-01-02"\n'
                               'alpha = 0.5\nflag = True\nraw = "42"\n')
    assert [cell.execution_count for cell in saved.cells[1:]] == [1, 2, 3]  # the injected cell ran, remotely, in order
    papermill = saved.metadata["papermill"]
    assert papermill["parameters"] == {"name": "from-yaml", "items": [1, "two"], "when": "2024-01-02", "alpha": 0.5,
                                       "flag": True, "raw": "42"}
    assert papermill["default_parameters"] == {} and papermill["environment_variables"] == {}
    assert (papermill["input_path"], papermill["output_path"], papermill["exception"]) == (str(source), str(out), None)
    assert papermill["duration"] > 0 and papermill["end_time"] > papermill["start_time"]
    assert "papermill" not in nbformat.read(source, as_version=4).metadata  # the source is left alone

    # re-running the executed notebook replaces its injected cell, as papermill does
    again = tmp_path / "again.ipynb"
    rerun = _run([str(out), "--url", remote_server.url, "-o", str(again), "--parameters", "alpha", "2"], remote_server.token)
    assert rerun.returncode == 0, rerun.stderr
    saved = nbformat.read(again, as_version=4)
    assert [("injected-parameters" in cell.metadata.get("tags", [])) for cell in saved.cells] == [False, False, True, False]
    assert saved.cells[2].source == "# Parameters\nalpha = 2\n"
    assert _result(saved) == (2, "default", False, 0, [], None)
    assert saved.metadata["papermill"]["parameters"] == {"alpha": 2}
