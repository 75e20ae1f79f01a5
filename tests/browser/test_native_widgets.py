"""The reference: widgets on JupyterLab's own kernel, no binder_autorun.

These validate the harness (and chromium + JupyterLab + jupyterlab_widgets) and
pin down the native behaviour the routed tests (test_routed_widgets.py) expect
from the bridge, including which messages the widget manager sends.

One notebook and one page go through every step in turn (opening a JupyterLab
page costs far more than running a cell); each step names itself on failure.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .lab import LabServer
from .notebook import Notebook, step

pytestmark = pytest.mark.browser

OpenNotebook = Callable[[list[str]], Notebook]

SLIDER, SET_7, PRINT_SEEN, BUTTON, INTO_OUTPUT, SET_5_PID, PRINT_VALUE, PID = range(8)
CELLS = [
    "import ipywidgets as w, os\nseen = []\ns = w.IntSlider(value=3)\ns.observe(lambda change: seen.append(change['new']), 'value')\ns",
    "s.value = 7",
    "print('value', s.value, 'seen', seen)",
    "out = w.Output()\nb = w.Button(description='Go')\n"
    "def go(_):\n    with out:\n        print('clicked', b.description)\n"
    "b.on_click(go)\nw.VBox([b, out])",
    "with out:\n    print('from a cell')",
    "s.value = 5; print(os.getpid())",
    "print(s.value)",
    "import os; print(os.getpid())",
]


def test_native_widgets(open_notebook: OpenNotebook, lab: LabServer) -> None:
    """Slider sync both ways, Button → Output widget, page reload, kernel restart."""
    nb = open_notebook(CELLS)

    with step("IntSlider renders with its value; kernel→page and page→kernel updates arrive"):
        nb.run_cell(SLIDER)
        assert nb.wait_widget(SLIDER, ".widget-slider").is_visible()
        assert nb.slider_readout(SLIDER) == "3"
        nb.run_cell(SET_7)
        nb.wait_readout(SLIDER, "7")
        nb.press_slider(SLIDER, "ArrowRight")
        nb.wait_readout(SLIDER, "8")
        # the page's update reaches the kernel before this cell's execute_request
        assert nb.run_cell(PRINT_SEEN) == "value 8 seen [7, 8]"

    with step("a Button's on_click callback and a cell print into an Output widget"):
        nb.run_cell(BUTTON)
        nb.click_button(BUTTON, "Go")
        output = nb.widget(BUTTON, ".widget-output")
        nb.wait_until(lambda: "clicked Go" in output.inner_text(), "the click's output in the Output widget",
                      detail=lambda: nb.output_text(BUTTON))
        assert nb.run_cell(INTO_OUTPUT) == ""  # the Output widget captures it, not the cell
        nb.wait_until(lambda: "from a cell" in output.inner_text(), "cell output in the Output widget",
                      detail=output.inner_text)

    with step("after a page reload the slider shows its current kernel-side value and syncs; "
              "the widget manager asked for the states over jupyter.widget.control"):
        pid = int(nb.run_cell(SET_5_PID))
        nb.wait_readout(SLIDER, "5")
        before = len(lab.kernel_messages(pid))
        nb.reload()
        nb.wait_readout(SLIDER, "5")
        nb.press_slider(SLIDER, "ArrowRight")
        nb.wait_readout(SLIDER, "6")
        assert nb.run_cell(PRINT_VALUE) == "6"
        received = [m for m in lab.kernel_messages(pid)[before:] if m["dir"] == "in"]
        control_opens = [m for m in received
                         if m["msg_type"] == "comm_open" and m["content"]["target_name"] == "jupyter.widget.control"]
        assert control_opens, [m["msg_type"] for m in received]
        comm_id = control_opens[0]["content"]["comm_id"]
        assert any(m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
                   and m["content"]["data"].get("method") == "request_states" for m in received)

    with step("a kernel restart keeps the old views but marks them disconnected (comm_live false); "
              "the page asks the new kernel for its (no) widgets over jupyter.widget.control"):
        nb.restart_kernel()
        nb.wait_until(lambda: nb.widget(SLIDER, ".widget-slider.jupyter-widgets-disconnected").count() == 1,
                      "the slider to be marked disconnected",
                      detail=lambda: nb.widget(SLIDER, ".widget-slider").get_attribute("class"))
        new_pid = int(nb.run_cell(PID))
        assert new_pid != pid
        received = [m for m in lab.kernel_messages(new_pid) if m["dir"] == "in"]
        assert any(m["msg_type"] == "comm_open" and m["content"]["target_name"] == "jupyter.widget.control"
                   for m in received), [m["msg_type"] for m in received]
