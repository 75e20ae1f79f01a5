"""The reference: widgets on JupyterLab's own kernel, no binder_autorun.

These validate the harness (and chromium + JupyterLab + jupyterlab_widgets) and
pin down the native behaviour the routed tests (test_routed_widgets.py) expect
from the bridge, including which messages the widget manager sends.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from .lab import LabServer
from .notebook import Notebook

pytestmark = pytest.mark.browser

OpenNotebook = Callable[[list[str]], Notebook]


def test_slider_renders_and_syncs_both_ways(open_notebook: OpenNotebook) -> None:
    """IntSlider renders with its value; kernel→page and page→kernel updates arrive."""
    nb = open_notebook([
        "import ipywidgets as w\nseen = []\ns = w.IntSlider(value=3)\ns.observe(lambda change: seen.append(change['new']), 'value')\ns",
        "s.value = 7",
        "print('value', s.value, 'seen', seen)",
    ])
    nb.run_cell(0)
    assert nb.wait_widget(0, ".widget-slider").is_visible()
    assert nb.slider_readout(0) == "3"
    nb.run_cell(1)
    nb.wait_readout(0, "7")
    nb.press_slider(0, "ArrowRight")
    nb.wait_readout(0, "8")
    # the page's update reaches the kernel before this cell's execute_request
    assert nb.run_cell(2) == "value 8 seen [7, 8]"


def test_button_prints_into_output_widget(open_notebook: OpenNotebook) -> None:
    """A Button's on_click callback prints into an Output widget."""
    nb = open_notebook([
        "import ipywidgets as w\nout = w.Output()\nb = w.Button(description='Go')\n"
        "def go(_):\n    with out:\n        print('clicked', b.description)\n"
        "b.on_click(go)\nw.VBox([b, out])",
        "with out:\n    print('from a cell')",
    ])
    nb.run_cell(0)
    nb.click_button(0, "Go")
    nb.wait_until(lambda: "clicked Go" in nb.widget(0, ".widget-output").inner_text(), "the click's output in the Output widget",
                  detail=lambda: nb.output_text(0))
    assert nb.run_cell(1) == ""  # the Output widget captures it, not the cell
    nb.wait_until(lambda: "from a cell" in nb.widget(0, ".widget-output").inner_text(), "cell output in the Output widget")


def test_reload_restores_widgets(open_notebook: OpenNotebook, lab: LabServer) -> None:
    """After a page reload the slider shows its current kernel-side value again, and
    the widget manager asked the kernel for the states over jupyter.widget.control."""
    nb = open_notebook([
        "import ipywidgets as w, os\ns = w.IntSlider(value=3)\ns",
        "s.value = 5; print(os.getpid())",
        "print(s.value)",
    ])
    nb.run_cell(0)
    pid = int(nb.run_cell(1))
    nb.wait_readout(0, "5")
    before = len(lab.kernel_messages(pid))
    nb.reload()
    nb.wait_readout(0, "5")
    nb.press_slider(0, "ArrowRight")
    nb.wait_readout(0, "6")
    assert nb.run_cell(2) == "6"
    received = [m for m in lab.kernel_messages(pid)[before:] if m["dir"] == "in"]
    control_opens = [m for m in received if m["msg_type"] == "comm_open" and m["content"]["target_name"] == "jupyter.widget.control"]
    assert control_opens, [m["msg_type"] for m in received]
    comm_id = control_opens[0]["content"]["comm_id"]
    assert any(m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
               and m["content"]["data"].get("method") == "request_states" for m in received)


def test_restart_disconnects_widgets(open_notebook: OpenNotebook, lab: LabServer) -> None:
    """A kernel restart keeps the old views but marks them disconnected (comm_live
    false: class jupyter-widgets-disconnected); the page then asks the new kernel
    for its (no) widgets over jupyter.widget.control."""
    nb = open_notebook(["import ipywidgets as w\ns = w.IntSlider(value=3)\ns", "import os; print(os.getpid())"])
    nb.run_cell(0)
    nb.wait_readout(0, "3")
    old_pid = int(nb.run_cell(1))
    nb.restart_kernel()
    nb.wait_until(lambda: nb.widget(0, ".widget-slider.jupyter-widgets-disconnected").count() == 1,
                  "the slider to be marked disconnected", detail=lambda: nb.widget(0, ".widget-slider").get_attribute("class"))
    new_pid = int(nb.run_cell(1))
    assert new_pid != old_pid
    received = [m for m in lab.kernel_messages(new_pid) if m["dir"] == "in"]
    assert any(m["msg_type"] == "comm_open" and m["content"]["target_name"] == "jupyter.widget.control" for m in received), \
        [m["msg_type"] for m in received]
