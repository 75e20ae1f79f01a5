"""Widgets through binder_autorun in a real browser: the page talks to the local
JupyterLab kernel, which routes every cell (and, with the bridge, every comm) to a
kernel of ``remote_server``. Each test mirrors a native one in
test_native_widgets.py: the routed notebook must behave the same.
"""

from __future__ import annotations

import base64
import re
import struct
import zlib
from collections.abc import Callable

import pytest

from binder_autorun.launch import LocalServer

from .notebook import Notebook

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


def test_cells_run_remotely(open_notebook: OpenNotebook, remote: LocalServer) -> None:
    """Smoke: after %binder_on a cell runs in another process (the remote kernel),
    and %%local still runs in the page's own kernel."""
    nb = open_notebook(routed(remote, "import os\nos.getpid()", "%%local\nimport os\nprint(os.getpid())"))
    local_pid = start(nb)
    remote_pid = int(nb.run_cell(2))
    assert remote_pid != local_pid
    assert int(nb.run_cell(3)) == local_pid


def test_slider_syncs_both_ways(open_notebook: OpenNotebook, remote: LocalServer) -> None:
    """A remote IntSlider renders with the remote's state; kernel→page and page→kernel
    updates arrive, and the remote's observe callback sees the page's change."""
    nb = open_notebook(routed(
        remote,
        "import ipywidgets as w\nseen = []\ns = w.IntSlider(value=3, max=50)\n"
        "s.observe(lambda change: seen.append(change['new']), 'value')\ns",
        "s.value = 7",
        "import os\nprint('value', s.value, 'seen', seen, 'pid', os.getpid())",
    ))
    local_pid = start(nb)
    nb.run_cell(2)
    nb.wait_widget(2, ".widget-slider", timeout=RENDER)
    assert nb.slider_readout(2) == "3"
    assert nb.widget(2, ".noUi-handle").get_attribute("aria-valuemax") == "50.0"
    nb.run_cell(3)
    nb.wait_readout(2, "7")
    nb.press_slider(2, "ArrowRight")
    nb.wait_readout(2, "8")
    # the page's update reaches the remote kernel before this cell's execute_request
    values, pid = nb.run_cell(4).split(" pid ")
    assert values == "value 8 seen [7, 8]"
    assert int(pid) != local_pid


def test_button_and_output_widget(open_notebook: OpenNotebook, remote: LocalServer) -> None:
    """`with out: print()` in a cell and in a remote Button callback land in the Output widget."""
    nb = open_notebook(routed(
        remote,
        "import ipywidgets as w\nout = w.Output()\nb = w.Button(description='Go')\n"
        "def go(_):\n    with out:\n        print('clicked', b.description)\n"
        "b.on_click(go)\nw.VBox([b, out])",
        "with out:\n    print('from a cell')",
    ))
    start(nb)
    nb.run_cell(2)
    nb.wait_widget(2, ".widget-button", timeout=RENDER)
    assert nb.run_cell(3) == ""  # captured by the Output widget, not shown in the cell
    output = nb.widget(2, ".widget-output")
    nb.wait_until(lambda: "from a cell" in output.inner_text(), "cell output in the Output widget", detail=output.inner_text)
    nb.click_button(2, "Go")
    nb.wait_until(lambda: "clicked Go" in output.inner_text(), "the click's output in the Output widget", detail=output.inner_text)


def test_interact_reruns_on_slider_move(open_notebook: OpenNotebook, remote: LocalServer) -> None:
    """`interact` shows f(5); moving its slider re-runs f remotely and updates the output."""
    nb = open_notebook(routed(
        remote,
        "from ipywidgets import interact\nimport os\n@interact(x=(0, 10))\ndef f(x=5):\n    print('square', x * x, os.getpid())",
    ))
    local_pid = start(nb)
    nb.run_cell(2)
    nb.wait_widget(2, ".widget-slider", timeout=RENDER)
    output = nb.widget(2, ".widget-output")
    nb.wait_until(lambda: "square 25" in output.inner_text(), "f(5) in the interact output", detail=output.inner_text)
    assert str(local_pid) not in output.inner_text()
    nb.press_slider(2, "ArrowRight")
    nb.wait_until(lambda: "square 36" in output.inner_text() and "square 25" not in output.inner_text(),
                  "f(6) replacing f(5)", detail=output.inner_text)


def test_image_with_binary_buffer(open_notebook: OpenNotebook, remote: LocalServer) -> None:
    """An Image widget's value travels as a binary buffer; the page shows it as an <img>
    whose source decodes to an image of the right size."""
    data = base64.b64encode(png(37, 23)).decode()
    nb = open_notebook(routed(
        remote,
        f"import base64, ipywidgets as w\nimg = w.Image(value=base64.b64decode('{data}'), format='png')\nimg",
    ))
    start(nb)
    nb.run_cell(2)
    image = nb.wait_widget(2, "img.widget-image", timeout=RENDER)
    source = image.get_attribute("src") or ""
    assert re.match(r"^(blob:|data:image/png)", source), source
    size = nb.wait_until(lambda: image.evaluate("img => img.complete && img.naturalWidth ? [img.naturalWidth, img.naturalHeight] : null"),
                         "the image to load")
    assert size == [37, 23]


def test_local_widget_beside_remote(open_notebook: OpenNotebook, remote: LocalServer) -> None:
    """A %%local slider (the page's own kernel) and a remote slider both work."""
    nb = open_notebook(routed(
        remote,
        "%%local\nimport ipywidgets as w\nlocal_s = w.IntSlider(value=1)\nlocal_s",
        "import ipywidgets as w\nremote_s = w.IntSlider(value=10)\nremote_s",
        "%%local\nlocal_s.value = 2",
        "remote_s.value = 20",
        "%%local\nprint('local', local_s.value)",
        "print('remote', remote_s.value)",
    ))
    start(nb)
    nb.run_cell(2)
    nb.wait_widget(2, ".widget-slider")
    nb.run_cell(3)
    nb.wait_widget(3, ".widget-slider", timeout=RENDER)
    nb.run_cell(4)
    nb.run_cell(5)
    nb.wait_readout(2, "2")
    nb.wait_readout(3, "20")
    nb.press_slider(2, "ArrowRight")
    nb.press_slider(3, "ArrowRight")
    nb.wait_readout(2, "3")
    nb.wait_readout(3, "21")
    assert nb.run_cell(6) == "local 3"
    assert nb.run_cell(7) == "remote 21"


def test_reload_restores_remote_widgets(open_notebook: OpenNotebook, remote: LocalServer) -> None:
    """After a page reload the remote slider shows the remote's current value and
    still syncs both ways."""
    nb = open_notebook(routed(
        remote,
        "import ipywidgets as w\ns = w.IntSlider(value=3)\ns",
        "s.value = 5",
        "print(s.value)",
    ))
    start(nb)
    nb.run_cell(2)
    nb.wait_widget(2, ".widget-slider", timeout=RENDER)
    nb.run_cell(3)
    nb.wait_readout(2, "5")
    nb.reload()
    nb.wait_widget(2, ".widget-slider", timeout=RENDER)
    nb.wait_readout(2, "5")
    nb.press_slider(2, "ArrowRight")
    nb.wait_readout(2, "6")
    assert nb.run_cell(4) == "6"


def test_remote_restart_disconnects_remote_widgets(open_notebook: OpenNotebook, remote: LocalServer) -> None:
    """%binder_restart leaves no live remote widget on the page (closed, or marked
    disconnected as after a native restart), and cells run on the new remote kernel."""
    nb = open_notebook(routed(
        remote,
        "import ipywidgets as w, os\ns = w.IntSlider(value=3)\ndisplay(s)\nprint(os.getpid())",
        "%binder_restart",
        "import os\nprint(os.getpid())",
    ))
    start(nb)
    nb.run_cell(2)
    nb.wait_widget(2, ".widget-slider", timeout=RENDER)
    old_pid = int(nb.output_text(2).split()[-1])
    nb.run_cell(3, timeout=60)
    assert not nb.errors(3), nb.output_text(3)
    nb.wait_until(lambda: nb.widget(2, ".widget-slider:not(.jupyter-widgets-disconnected)").count() == 0,
                  "the remote slider to be closed or disconnected", detail=lambda: nb.output_text(2))
    assert int(nb.run_cell(4)) != old_pid
