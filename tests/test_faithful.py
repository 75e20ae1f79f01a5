"""Routed cells equal the same cells run natively: outputs, counts, reply status."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import pytest

from .conftest import merged_outputs, normalized, run_native_on_server, run_routed


def _png(width: int = 3, height: int = 2) -> bytes:
    """A small valid PNG, made here (no image library needed)."""
    lines = b"".join(b"\x00" + b"".join(bytes([10 * x, 20 * y, 30]) for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(lines)) + chunk(b"IEND", b"")


PNG_B64 = base64.b64encode(_png()).decode()

CELLS = [
    "a = 1; print(a)",
    "a + 41",
    "'unicode: héllo ✓ 🚀 日本'",
    "print('日本語 ✓ and 🚀')",
    "import sys\nprint('to stderr', file=sys.stderr)\nprint('to stdout')\nsys.stdout.write('no newline')",
    "from IPython.display import display, HTML, Markdown, JSON, Image, update_display, clear_output\n"
    "h = display(HTML('<b>first</b>'), display_id='d1')\n"
    "update_display(HTML('<i>second</i>'), display_id='d1')",
    "Markdown('**bold** result')",
    "display(JSON({'a': [1, 2, {'b': None}]}), metadata={'custom': 'meta'})",
    f"import base64\nImage(data=base64.b64decode('{PNG_B64}'), width=30)",
    "display({'application/x.binder-test+json': {'k': [1, 2]}, 'text/plain': 'custom mime'}, raw=True,\n"
    "        metadata={'application/x.binder-test+json': {'expanded': True}})",
    "for i in range(3):\n    clear_output(wait=True)\n    print('step', i)",
    "print('before'); clear_output(); print('after')",
    "!echo from the shell",
    "%pwd",
    "%precision 3",
    "import math; math.pi",
    "%%writefile written.txt\nhello file",
    "open('written.txt').read()",
    "import asyncio\nawait asyncio.sleep(0.01)\n'awaited'",
    "1/0",
    "def broken(:\n    pass",
    "try:\n    {}['missing']\nexcept KeyError:\n    get_ipython().showtraceback()\nprint('went on')",
    "print('x' * 100_000)",
    "for i in range(2000):\n    print(i)",
    "x = 5\nx",
    "_",
    "Out[2]",
    "In[1]",
    "len(In) > 5, _i1",
    "%who_ls int",
    "None",
    "print('last'); 3;",
    # a formatter that raises: one error output beside the result, and ipykernel's own reply for it
    "class BadHtml:\n    def _repr_html_(self):\n        raise ValueError('no html')\n"
    "    def __repr__(self):\n        return 'BadHtml()'\nBadHtml()",
    "display(BadHtml())",
    "%nonexistent_magic",  # a UsageError: natively only its stderr line
    "%%nonexistent_cell_magic\nx",
]


@pytest.mark.timeout(240)
def test_routed_equals_native(own_server) -> None:
    """The same cells on two fresh kernels of the same server: one natively (nbclient over
    ZeroMQ, as the server itself talks to it), one routed from a local notebook kernel."""
    native = run_native_on_server(CELLS, own_server)
    (Path(own_server.root_dir) / "written.txt").unlink()  # both runs start from the same directory
    routed = run_routed(CELLS, own_server, Path(own_server.root_dir))

    assert len(routed.replies) == len(native.replies) == len(CELLS)
    for index, (mine, theirs) in enumerate(zip(routed.cells, native.cells)):
        source = CELLS[index]
        assert merged_outputs(mine) == merged_outputs(theirs), f"outputs differ for cell {index}: {source!r}"
        assert routed.replies[index]["status"] == native.replies[index]["status"], source
        assert routed.replies[index]["execution_count"] == native.replies[index]["execution_count"], source
        for key in ("ename", "evalue", "traceback"):
            assert normalized(routed.replies[index].get(key)) == normalized(native.replies[index].get(key)), (source, key)
    # the counts are the remote's, starting at 1 on a fresh kernel
    assert [r["execution_count"] for r in routed.replies] == list(range(1, len(CELLS) + 1))
    # streams are not split into one output per remote chunk
    many_lines = CELLS.index("for i in range(2000):\n    print(i)")
    assert len(routed.cells[many_lines].outputs) <= max(3, len(native.cells[many_lines].outputs))
    # sanity: the comparison saw every kind of output
    kinds = {o["output_type"] for cell in routed.cells for o in cell.outputs}
    assert kinds == {"stream", "execute_result", "display_data", "error"}
