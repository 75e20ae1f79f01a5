"""The routing decision, as a pure function, and the top-level-only routing on a real
in-process IPython shell (the notebook-level tests cover the rest)."""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from binder_autorun.errors import NotConnected
from binder_autorun.router import CellRouter, classify, stays_local, strip_local_magic


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
        ("%load_ext binder_autorun\n", True),
        ("%unload_ext binder_autorun\n", True),
        ("%reload_ext   binder_autorun  \n", True),
        ("%load_ext binder_autorun\n%binder_on --local\n", True),
        ("reload_ext binder_autorun\n", True),
        ("%load_ext autoreload\n", False),
        ("%reload_ext binder_autorun_fork\n", False),
        ("%load_ext binder_autorun.router\n", False),
    ],
)
def test_stays_local(cell: str, local: bool) -> None:
    assert stays_local(cell.splitlines(keepends=True)) is local


def test_transformer_routes_only_while_active() -> None:
    active = [False]
    route = CellRouter(lambda: active[0]).transform
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


def test_nothing_is_routed_inside_a_running_cell() -> None:
    router = CellRouter(lambda: True)
    router.depth = 1  # what a %%time or a nested run_cell of a local cell transforms
    assert router.transform(["x = 1\n"]) == ["x = 1\n"]
    assert router.transform(["%%local\n", "x = 1\n"]) == ["x = 1\n"]


@pytest.mark.parametrize(
    ("cell", "active", "kind"),
    [("x\n", True, "remote"), ("x\n", False, "local"), ("%%local\nx\n", True, "local"), ("\n \n", True, "empty"), ("", False, "empty")],
)
def test_classify(cell: str, active: bool, kind: str) -> None:
    assert classify(cell.splitlines(keepends=True), active) == kind


# -- on a real IPython shell ------------------------------------------------------


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[InteractiveShell]:
    """A plain in-process IPython shell (no history file; builtins it adds are removed after)."""
    added = {"__IPYTHON__", "display"} - set(builtins.__dict__)
    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.ipython_dir = str(tmp_path / "ipython")
    shell = InteractiveShell(config=config)
    yield shell
    for name in added:
        builtins.__dict__.pop(name, None)


@pytest.fixture
def routing(shell: InteractiveShell) -> Iterator[CellRouter]:
    """A router in remote mode; anything it routed fails with NotConnected (no session here)."""
    router = CellRouter(lambda: True)
    router.install(shell)
    yield router
    router.uninstall(shell)


#: stands for this process's pid in the expected values (a pid in a test id differs per
#: pytest-xdist worker, and the workers must collect the same tests)
PID = "<pid>"


@pytest.mark.parametrize(
    ("cell", "name", "expected"),
    [
        ("%%local\n%%time\nimport os; x = os.getpid()\n", "x", PID),
        ("%%local\n%time x = __import__('os').getpid()\n", "x", PID),
        ("%%local\nx = []\n%timeit -n1 -r1 x.append(__import__('os').getpid())\n", "x", [PID]),
        ("%%local\n%%timeit -n1 -r1 import os\nget_ipython().user_ns['x'] = os.getpid()\n", "x", PID),
        ("%%local\n%%capture captured\nx = __import__('os').getpid()\nprint(x)\n", "x", PID),
        ("%%local\n%%prun -q\nx = __import__('os').getpid()\n", "x", PID),
        ("%%local\nget_ipython().run_cell('x = __import__(\"os\").getpid()')\n", "x", PID),
        ("%%local\nget_ipython().run_cell('%%local\\nx = 7')\n", "x", 7),
    ],
)
def test_what_a_local_cell_runs_stays_local(shell: InteractiveShell, routing: CellRouter, cell: str, name: str, expected: object) -> None:
    result = shell.run_cell(cell, store_history=True)
    assert result.success, result.error_in_exec or result.error_before_exec
    pid = os.getpid()
    assert shell.user_ns[name] == (pid if expected == PID else [pid] if expected == [PID] else expected)
    assert routing.depth == 0 and routing.cell == "local"


def test_top_level_cells_are_routed_and_classified(shell: InteractiveShell, routing: CellRouter) -> None:
    result = shell.run_cell("y = 1\n", store_history=True)
    assert isinstance(result.error_in_exec, NotConnected), "a top-level cell must be routed"
    assert "y" not in shell.user_ns and routing.cell == "remote" and routing.depth == 0
    shell.run_cell("", store_history=True)
    assert routing.cell == "empty"
    # a local cell that fails still counts itself out
    assert not shell.run_cell("%%local\nraise ValueError('x')\n").success
    assert routing.depth == 0 and routing.cell == "local"


def test_uninstall_restores_the_shell(shell: InteractiveShell) -> None:
    router = CellRouter(lambda: True)
    router.install(shell)
    router.install(shell)
    assert shell.input_transformers_cleanup.count(router.transform) == 1
    router.uninstall(shell)
    assert "run_cell_async" not in shell.__dict__ and router.transform not in shell.input_transformers_cleanup
    assert shell.run_cell("z = 3\n").success and shell.user_ns["z"] == 3


def test_strip_keeps_other_first_lines() -> None:
    assert strip_local_magic(["%%local?\n"]) == ["%%local?\n"]
    assert strip_local_magic(["\n", "%%local\n", "a\n"]) == ["a\n"]
