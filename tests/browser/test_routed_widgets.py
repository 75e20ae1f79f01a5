"""Widgets through binder_autorun in a real browser: the page talks to the local
JupyterLab kernel, which routes every cell (and, with the bridge, every comm) to a
kernel of ``remote_server``. Each test mirrors a native one in
test_native_widgets.py: the routed notebook must behave the same.

One notebook and one page go through every step in turn (opening a JupyterLab
page and routing it cost far more than running a cell); each step names itself
on failure. The page reload and the remote restart come last.
"""

from __future__ import annotations

import base64
import re
import struct
import zlib
from collections.abc import Callable

import pytest

from binder_autorun.launch import LocalServer

from .notebook import Notebook, step

pytestmark = pytest.mark.browser

OpenNotebook = Callable[[list[str]], Notebook]

#: How long the first remote widget may take to render (fails fast without a bridge).
RENDER = 15.0


def routed(remote: LocalServer, *cells: str) -> list[str]:
    """Cells that load the extension, note the local pid, route to ``remote``, then ``cells``.
    Index 0 prints the local pid; index 1 is %binder_on; ``cells`` start at index 2."""
    return ["%load_ext binder_autorun\nimport os\nprint(os.getpid())", f"%binder_on --url {remote.url}", *cells]


def start(nb: Notebook) -> int:
    """Run the two routing cells; return the local kernel's pid."""
    local_pid = int(nb.run_cell(0))
    nb.run_cell(1, timeout=60)
    assert not nb.errors(1), nb.output_text(1)
    return local_pid


def png(width: int, height: int) -> bytes:
    """A valid grey PNG of the given size (no imaging library needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


IMAGE_PNG = base64.b64encode(png(37, 23)).decode()

# cell indexes (0 and 1 are the routing cells of ``routed``)
(REMOTE_PID, LOCAL_PID, SLIDER, SET_7, PRINT_SEEN, BUTTON, INTO_OUTPUT, INTERACT, IMAGE, LOCAL_SLIDER,
 REMOTE_SLIDER, SET_LOCAL, SET_REMOTE, PRINT_LOCAL, PRINT_REMOTE, SET_5, PRINT_VALUE, RESTART, NEW_PID) = range(2, 21)
CELLS = [
    "import os\nos.getpid()",
    "%%local\nimport os\nprint(os.getpid())",
    "import ipywidgets as w\nseen = []\ns = w.IntSlider(value=3, max=50)\n"
    "s.observe(lambda change: seen.append(change['new']), 'value')\ns",
    "s.value = 7",
    "import os\nprint('value', s.value, 'seen', seen, 'pid', os.getpid())",
    "out = w.Output()\nb = w.Button(description='Go')\n"
    "def go(_):\n    with out:\n        print('clicked', b.description)\n"
    "b.on_click(go)\nw.VBox([b, out])",
    "with out:\n    print('from a cell')",
    "from ipywidgets import interact\n@interact(x=(0, 10))\ndef f(x=5):\n    print('square', x * x, os.getpid())",
    f"import base64\nimg = w.Image(value=base64.b64decode('{IMAGE_PNG}'), format='png')\nimg",
    "%%local\nimport ipywidgets as w\nlocal_s = w.IntSlider(value=1)\nlocal_s",
    "remote_s = w.IntSlider(value=10)\nremote_s",
    "%%local\nlocal_s.value = 2",
    "remote_s.value = 20",
    "%%local\nprint('local', local_s.value)",
    "print('remote', remote_s.value)",
    "s.value = 5",
    "print(s.value)",
    "%binder_restart",
    "import os\nprint(os.getpid())",
]


def test_routed_widgets(open_notebook: OpenNotebook, remote: LocalServer) -> None:
    """Cells and widgets of a notebook routed to a remote kernel behave as natively:
    remote and %%local cells, slider sync both ways, Output + Button, interact, a
    binary-buffer Image, a %%local widget beside remote ones, a page reload, a remote restart."""
    nb = open_notebook(routed(remote, *CELLS))
    local_pid = start(nb)

    with step("smoke: after %binder_on a cell runs in another process (the remote kernel); "
              "%%local still runs in the page's own kernel"):
        remote_pid = int(nb.run_cell(REMOTE_PID))
        assert remote_pid != local_pid
        assert int(nb.run_cell(LOCAL_PID)) == local_pid

    with step("a remote IntSlider renders with the remote's state; kernel→page and page→kernel updates "
              "arrive, and the remote's observe callback sees the page's change"):
        nb.run_cell(SLIDER)
        nb.wait_widget(SLIDER, ".widget-slider", timeout=RENDER)
        assert nb.slider_readout(SLIDER) == "3"
        assert nb.widget(SLIDER, ".noUi-handle").get_attribute("aria-valuemax") == "50.0"
        nb.run_cell(SET_7)
        nb.wait_readout(SLIDER, "7")
        nb.press_slider(SLIDER, "ArrowRight")
        nb.wait_readout(SLIDER, "8")
        # the page's update reaches the remote kernel before this cell's execute_request
        values, pid = nb.run_cell(PRINT_SEEN).split(" pid ")
        assert values == "value 8 seen [7, 8]"
        assert int(pid) != local_pid

    with step("`with out: print()` in a cell and in a remote Button callback land in the Output widget"):
        nb.run_cell(BUTTON)
        nb.wait_widget(BUTTON, ".widget-button", timeout=RENDER)
        assert nb.run_cell(INTO_OUTPUT) == ""  # captured by the Output widget, not shown in the cell
        output = nb.widget(BUTTON, ".widget-output")
        nb.wait_until(lambda: "from a cell" in output.inner_text(), "cell output in the Output widget",
                      detail=output.inner_text)
        nb.click_button(BUTTON, "Go")
        nb.wait_until(lambda: "clicked Go" in output.inner_text(), "the click's output in the Output widget",
                      detail=output.inner_text)

    with step("`interact` shows f(5); moving its slider re-runs f remotely and updates the output"):
        nb.run_cell(INTERACT)
        nb.wait_widget(INTERACT, ".widget-slider", timeout=RENDER)
        output = nb.widget(INTERACT, ".widget-output")
        nb.wait_until(lambda: "square 25" in output.inner_text(), "f(5) in the interact output", detail=output.inner_text)
        assert str(local_pid) not in output.inner_text()
        nb.press_slider(INTERACT, "ArrowRight")
        nb.wait_until(lambda: "square 36" in output.inner_text() and "square 25" not in output.inner_text(),
                      "f(6) replacing f(5)", detail=output.inner_text)

    with step("an Image widget's value travels as a binary buffer; the page shows an <img> "
              "whose source decodes to an image of the right size"):
        nb.run_cell(IMAGE)
        image = nb.wait_widget(IMAGE, "img.widget-image", timeout=RENDER)
        source = image.get_attribute("src") or ""
        assert re.match(r"^(blob:|data:image/png)", source), source
        size = nb.wait_until(lambda: image.evaluate(
            "img => img.complete && img.naturalWidth ? [img.naturalWidth, img.naturalHeight] : null"), "the image to load")
        assert size == [37, 23]

    with step("a %%local slider (the page's own kernel) and a remote slider both work"):
        nb.run_cell(LOCAL_SLIDER)
        nb.wait_widget(LOCAL_SLIDER, ".widget-slider")
        nb.run_cell(REMOTE_SLIDER)
        nb.wait_widget(REMOTE_SLIDER, ".widget-slider", timeout=RENDER)
        nb.run_cell(SET_LOCAL)
        nb.run_cell(SET_REMOTE)
        nb.wait_readout(LOCAL_SLIDER, "2")
        nb.wait_readout(REMOTE_SLIDER, "20")
        nb.press_slider(LOCAL_SLIDER, "ArrowRight")
        nb.press_slider(REMOTE_SLIDER, "ArrowRight")
        nb.wait_readout(LOCAL_SLIDER, "3")
        nb.wait_readout(REMOTE_SLIDER, "21")
        assert nb.run_cell(PRINT_LOCAL) == "local 3"
        assert nb.run_cell(PRINT_REMOTE) == "remote 21"

    with step("after a page reload the remote slider shows the remote's current value and still syncs both ways"):
        nb.run_cell(SET_5)
        nb.wait_readout(SLIDER, "5")
        nb.reload()
        nb.wait_widget(SLIDER, ".widget-slider", timeout=RENDER)
        nb.wait_readout(SLIDER, "5")
        nb.press_slider(SLIDER, "ArrowRight")
        nb.wait_readout(SLIDER, "6")
        assert nb.run_cell(PRINT_VALUE) == "6"

    with step("%binder_restart leaves no live remote widget on the page (closed, or marked disconnected "
              "as after a native restart), and cells run on the new remote kernel"):
        nb.run_cell(RESTART, timeout=60)
        assert not nb.errors(RESTART), nb.output_text(RESTART)
        for index in (SLIDER, INTERACT, REMOTE_SLIDER):
            nb.wait_until(lambda: nb.widget(index, ".widget-slider:not(.jupyter-widgets-disconnected)").count() == 0,
                          f"the remote slider in cell {index} to be closed or disconnected",
                          detail=lambda: nb.output_text(index))
        assert int(nb.run_cell(NEW_PID)) != remote_pid
