"""The routing decision, as a pure function (the notebook-level tests cover the rest)."""

from __future__ import annotations

import pytest

from binder_autorun.router import make_transformer, stays_local, strip_local_magic


@pytest.mark.parametrize(
    ("cell", "local"),
    [
        ("a = 1\nprint(a)\n", False),
        ("%%local\nx = 1\n", True),
        ("\n\n%%local\nx = 1\n", True),
        ("%%local?\n", True),
        ("%binder_off\n", True),
        ("%binder_on --url http://h/ --token t\n", True),
        ("  %binder_status --log\n", True),
        ("%binder_on?\n", True),
        ("%timeit x\n", False),
        ("%%writefile f.txt\nhello\n", False),
        ("!ls\n", False),
        ("%%localish\n", False),
        ("%binder_online\n", False),
        ("# %%local\nx\n", False),
        ("await something()\n", False),
        ("%config BinderAutorun.cell_timeout = 5\n", True),
        ("%config BinderAutorun\n", True),
        ("%config InlineBackend.figure_format = 'svg'\n", False),
        ("exit\n", True),
        ("quit()\n", True),
        ("exit_code = 3\n", False),
        ("", True),
        ("\n   \n", True),
    ],
)
def test_stays_local(cell: str, local: bool) -> None:
    assert stays_local(cell.splitlines(keepends=True)) is local


def test_transformer_routes_only_while_active() -> None:
    active = [False]
    route = make_transformer(lambda: active[0])
    assert route.has_side_effects is True  # type: ignore[attr-defined]
    cell = ["x = 'it''s'\n", "print(x)\n"]
    assert route(cell) == cell
    active[0] = True
    (line,) = route(cell)
    assert line == "__import__('binder_autorun')._run_remote(\"x = 'it''s'\\nprint(x)\\n\")\n"
    assert eval(line.split("_run_remote(", 1)[1].rsplit(")", 1)[0]) == "".join(cell)
    assert route(["%%local\n", "y = 2\n"]) == ["y = 2\n"]
    active[0] = False
    assert route(["%%local\n", "y = 2\n"]) == ["y = 2\n"]


def test_strip_keeps_other_first_lines() -> None:
    assert strip_local_magic(["%%local?\n"]) == ["%%local?\n"]
    assert strip_local_magic(["\n", "%%local\n", "a\n"]) == ["a\n"]
