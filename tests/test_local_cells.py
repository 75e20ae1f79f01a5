"""Local cells that really are local, through a real local ipykernel routed to a real
jupyter_server: magics that run code inside ``%%local``, completion and inspection
of local cells, our own magics' completion, ``%load_ext``/``%unload_ext``/
``%reload_ext`` of this extension, and ``user_expressions``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from binder_autorun.assist import with_own_magics
from binder_autorun.launch import LocalServer

from .kernel_driver import LocalKernel, Result, routed_kernel

PID = "__import__('os').getpid()"


@pytest.fixture
def routed(remote_server: LocalServer, tmp_path: Path) -> Iterator[LocalKernel]:
    """A local kernel in remote mode on the shared server (token via the environment)."""
    local = routed_kernel(tmp_path, remote_server.url, remote_server.token)
    yield local
    local.shutdown()


def value(result: Result) -> str:
    """The text/plain of a cell's execute_result."""
    assert result.reply["status"] == "ok", result.text
    return str(result.of("execute_result")[0]["data"]["text/plain"])


def pids(kernel: LocalKernel) -> tuple[int, int]:
    """(local kernel pid, remote kernel pid)."""
    return int(value(kernel.execute(f"%%local\n{PID}"))), int(value(kernel.execute(PID)))


@pytest.mark.timeout(60)
def test_code_that_magics_run_inside_a_local_cell_stays_local(routed: LocalKernel) -> None:
    local_pid, remote_pid = pids(routed)
    assert local_pid != remote_pid
    cells = [
        "%%local\n%%time\nimport os; a = os.getpid()",
        f"%%local\n%time b = {PID}",
        f"%%local\nc = []\n%timeit -n1 -r1 c.append({PID})",
        "%%local\n%%timeit -n1 -r1 import os\nget_ipython().user_ns['d'] = os.getpid()",
        f"%%local\n%%prun -q\ne = {PID}",
        f"%%local\n%%capture captured\nf = {PID}\nprint('captured text')",
        f"%%local\nget_ipython().run_cell({'g = ' + PID!r})",
    ]
    for cell in cells:
        result = routed.execute(cell)
        assert result.reply["status"] == "ok", f"{cell!r}: {result.text}"
        assert "captured text" not in result.text
    names = "abcdefg"
    assert value(routed.execute("%%local\n[a, b, c[0], d, e, f, g]")) == str([local_pid] * len(names))
    # nothing of it reached the remote kernel
    assert value(routed.execute(f"[n for n in {names!r} if n in globals()]")) == "[]"
    assert int(value(routed.execute(PID))) == remote_pid


@pytest.mark.timeout(60)
def test_completion_and_inspection_of_a_local_cell_are_local(routed: LocalKernel) -> None:
    routed.execute("%%local\nlocal_only_variable_abc = 1\ndef local_fn(alpha):\n    'Local docstring.'")
    routed.execute("remote_only_variable_xyz = 2")
    code = "%%local\nlocal_only_var"
    reply = routed.complete(code)
    assert "local_only_variable_abc" in reply["matches"]
    assert reply["cursor_start"] == code.index("local_only_var") and reply["cursor_end"] == len(code)
    assert "remote_only_variable_xyz" not in routed.complete("%%local\nremote_only_var")["matches"]
    info = routed.inspect("%%local\nlocal_fn", len("%%local\nlocal_f"))
    assert info["found"] is True and "Local docstring." in info["data"]["text/plain"]
    # a routed cell still completes from the remote namespace
    assert "remote_only_variable_xyz" in routed.complete("x = 1\nremote_only_var")["matches"]


def test_own_magics_join_matches_of_another_range() -> None:
    types = "_jupyter_types_experimental"
    reply = {"status": "ok", "matches": ["local_x", "locals"], "cursor_start": 2, "cursor_end": 5,
             "metadata": {types: [{"start": 2, "end": 5, "text": "local_x", "type": "instance", "signature": ""}]}}
    merged = with_own_magics(reply, "%%loc", 5)
    assert merged["matches"] == ["%%local", "%%local_x", "%%locals"]  # each still gives the same text
    assert (merged["cursor_start"], merged["cursor_end"]) == (0, 5)
    assert [(e["start"], e["end"], e["text"]) for e in merged["metadata"][types]] == [(0, 5, "%%local"), (0, 5, "%%local_x")]
    assert with_own_magics(reply, "loc", 3) is reply and with_own_magics(reply, "%tim", 4) is reply
    wider = {"matches": ["x %binder_on_x", "y %binder_oz"], "cursor_start": 0, "cursor_end": 11}
    assert with_own_magics(wider, "x %binder_o", 11)["matches"] == ["%binder_off", "%binder_on", "%binder_on_x"]
    assert with_own_magics({"matches": []}, "a\n%b", 4)["matches"][0] == "%binder_off"


@pytest.mark.timeout(60)
def test_own_magics_complete(routed: LocalKernel) -> None:
    for code, expected in [("%binder_o", {"%binder_on", "%binder_off"}), ("%%loc", {"%%local"}), ("x = 1\n%binder_st", {"%binder_status"})]:
        reply = routed.complete(code)
        start = code.rindex("%%" if "%%" in code else "%")
        assert expected <= set(reply["matches"]), (code, reply["matches"])
        assert (reply["cursor_start"], reply["cursor_end"]) == (start, len(code))
        # every match replaces the same range and gives what typing it would
        typed = reply["metadata"].get("_jupyter_types_experimental", [])
        assert all((entry["start"], entry["end"]) == (start, len(code)) for entry in typed)
        assert not typed or expected <= {entry["text"] for entry in typed}
    assert not any(match.startswith("%binder") for match in routed.complete("%tim")["matches"])


@pytest.mark.timeout(90)
def test_extension_magics_act_locally_and_reload_keeps_the_session(routed: LocalKernel) -> None:
    local_pid, remote_pid = pids(routed)
    assert routed.execute("kept = 'yes'").reply["status"] == "ok"
    reloaded = routed.execute("%reload_ext binder_autorun")
    assert reloaded.reply["status"] == "ok", reloaded.text
    assert int(value(routed.execute(PID))) == remote_pid, "after %reload_ext cells still go to the same remote kernel"
    assert value(routed.execute("kept")) == "'yes'"

    unloaded = routed.execute("%unload_ext binder_autorun")
    assert unloaded.reply["status"] == "ok", unloaded.text
    assert int(value(routed.execute(PID))) == local_pid, "%unload_ext stops routing"
    assert routed.execute("%load_ext binder_autorun").reply["status"] == "ok"
    assert int(value(routed.execute(PID))) == local_pid, "%load_ext alone does not switch remote mode on"
    assert routed.execute("%binder_on").reply["status"] == "ok"
    assert int(value(routed.execute(PID))) == remote_pid, "the session was kept: a bare %binder_on resumes it"
    # none of them reached the remote kernel
    assert value(routed.execute("'binder_autorun' in __import__('sys').modules")) == "False"
    assert value(routed.execute("[line for line in In[:-1] if 'load_ext' in line]")) == "[]"


@pytest.mark.timeout(60)
def test_user_expressions_are_evaluated_where_the_cell_ran(routed: LocalKernel) -> None:
    local_pid, remote_pid = pids(routed)
    asked = {"p": PID, "v": "remote_value * 2"}

    def evaluated(code: str, silent: bool = False) -> dict[str, str]:
        result = routed.execute(code, silent=silent, user_expressions=asked)
        assert result.reply["status"] == "ok", result.text
        return {name: item["data"]["text/plain"] if item["status"] == "ok" else item["ename"]
                for name, item in result.reply["user_expressions"].items()}

    assert evaluated("remote_value = 21") == {"p": str(remote_pid), "v": "42"}
    assert evaluated("", silent=True) == {"p": str(remote_pid), "v": "42"}, "a variable inspector's empty cell"
    assert evaluated("%%local\nremote_value = 5") == {"p": str(local_pid), "v": "10"}
    failed = routed.execute("1/0", user_expressions=asked)
    assert failed.reply["status"] == "error" and failed.reply["user_expressions"] == {}
    # an empty cell's silent remote request leaves the numbering alone
    count = routed.execute("1").reply["execution_count"]
    evaluated("", silent=True)
    assert routed.execute("2").reply["execution_count"] == count + 1
    assert routed.execute("%binder_off").reply["status"] == "ok"
    assert evaluated("", silent=True) == {"p": str(local_pid), "v": "10"}
