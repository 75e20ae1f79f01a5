"""Widgets at the notebook level: what nbclient saves for a routed run — cell outputs,
Output-widget captures, and the widget state in the notebook's metadata — equals what
it saves for a native run on the same server (model ids normalized)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from binder_autorun.launch import LocalServer

from .conftest import merged_outputs, run_native_on_server, run_routed

WIDGET_CELLS = [
    "import ipywidgets as w\nfrom IPython.display import display",
    "s = w.IntSlider(value=3, min=0, max=10, description='n')\ns",
    "s.value = 7\ns.value",
    "t = w.Text('hi')\nb = w.Button(description='go', icon='check')\nw.VBox([t, b, w.HBox([w.Label('x'), w.Checkbox(True)])])",
    "out = w.Output()\ndisplay(out)\nwith out:\n    print('captured')\n    display({'text/plain': 'rich', 'text/html': '<b>rich</b>'}, raw=True)\nprint('outside')",
    "out.append_stdout('appended\\n')",
    "png = b'\\x89PNG\\r\\n\\x1a\\n' + bytes(range(256)) * 64\nimg = w.Image(value=png, format='png', width=20)\nimg",
    "from ipywidgets import interact\n@interact(x=(0, 10))\ndef f(x=4):\n    print('x is', x)\n    return x * 2",
    "dd = w.Dropdown(options=['a', 'b'], value='b')\njs = w.jslink((s, 'value'), (w.IntText(), 'value'))\ndd",
    "s.close()\ns.comm is None",
]


def _normalize(value: Any, ids: dict[str, str]) -> Any:
    """Replace widget model ids (uuid hex) by their order of first appearance."""
    if isinstance(value, str):
        return re.sub(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])", lambda m: ids.setdefault(m.group(0), f"<model {len(ids)}>"), value)
    if isinstance(value, list):
        return [_normalize(item, ids) for item in value]
    if isinstance(value, dict):
        return {_normalize(key, ids): _normalize(item, ids) for key, item in value.items()}
    return value


def _saved(run: Any) -> tuple[list[Any], Any]:
    ids: dict[str, str] = {}
    outputs = [_normalize(merged_outputs(cell), ids) for cell in run.cells]
    state = run.nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    return outputs, _normalize(state, ids)


@pytest.mark.timeout(180)
def test_widget_notebook_saves_what_a_native_run_saves(own_server: LocalServer, tmp_path: Path) -> None:
    native = run_native_on_server(WIDGET_CELLS, own_server)
    routed = run_routed(WIDGET_CELLS, own_server, tmp_path)
    native_outputs, native_state = _saved(native)
    routed_outputs, routed_state = _saved(routed)
    assert [r.get("status") for r in routed.replies] == [r.get("status") for r in native.replies] == ["ok"] * len(WIDGET_CELLS)
    assert native_state["state"], "the native run saved widget state (the comparison means something)"
    for index, (mine, theirs) in enumerate(zip(routed_outputs, native_outputs)):
        assert mine == theirs, f"cell {index}: {WIDGET_CELLS[index]!r}"
    assert routed_state == native_state
    output_models = [m for m in routed_state["state"].values() if m["model_name"] == "OutputModel"]
    captured = "".join(o.get("text", "") for model in output_models for o in model["state"].get("outputs", []))
    assert "captured\nappended\n" in captured and "x is 4\n" in captured  # Output-widget captures live in the widget
