"""A 200 MB file pushed and pulled over the contents transport with bounded memory: the
transfer runs in a fresh process that samples its resident size every 2 ms and reports the
peak over its size before each transfer, so memory that grew with the file would show."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from binder_autorun.launch import LocalServer

SIZE = 200 * 1024 * 1024

SCRIPT = r"""
import io, json, os, resource, sys, threading, time
from binder_autorun.server import JupyterServer, ServerInfo
from binder_autorun.session import KernelSession
from binder_autorun.transfer import Transfer, open_transport
url, token, path, local = sys.argv[1:5]
session = KernelSession.start(JupyterServer(ServerInfo(url, token)), "python3", path=path)
transport = open_transport(session, "auto")
def now():
    with open("/proc/self/statm") as f: return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
class Peak:  # resident size sampled every 2 ms during the transfer, minus the size before it
    def __enter__(self):
        self.base = self.top = now(); self.done = False
        self.thread = threading.Thread(target=self.sample); self.thread.start(); return self
    def sample(self):
        while not self.done:
            self.top = max(self.top, now()); time.sleep(0.002)
    def __exit__(self, *exc):
        self.done = True; self.thread.join(); self.growth = self.top - self.base
out = io.StringIO()
t = time.monotonic()
with Peak() as push_peak: pushed = Transfer(transport, local, out=out).push(["big.bin"])
push_s = time.monotonic() - t
t = time.monotonic()
with Peak() as pull_peak: pulled = Transfer(transport, local, out=out).pull(["big.bin"], to="back")
pull_s = time.monotonic() - t
after_push, after_pull, base = push_peak.growth, pull_peak.growth, 0
session.shutdown()
print(json.dumps({"push_s": push_s, "pull_s": pull_s, "push_growth": after_push, "pull_growth": after_pull,
                  "pushed": pushed.bytes, "pulled": pulled.bytes, "out": out.getvalue(), "transport": type(transport).__name__}))
"""


def _big_file(path: Path) -> str:
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for index in range(SIZE >> 20):
            piece = index.to_bytes(8, "little") + block[8:]  # every MB different
            digest.update(piece)
            handle.write(piece)
    return digest.hexdigest()


@pytest.mark.timeout(120)
def test_200_mb_round_trip_with_bounded_memory(remote_server: LocalServer, tmp_path: Path) -> None:
    name = f"large-{uuid.uuid4().hex[:6]}"
    folder = remote_server.root_dir / name
    folder.mkdir()
    expected = _big_file(tmp_path / "big.bin")
    done = subprocess.run([sys.executable, "-c", SCRIPT, remote_server.url, remote_server.token, name, str(tmp_path)],
                          capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({k: v for k, v in report.items() if k != "out"}))
    assert report["transport"] == "ContentsTransport"
    assert report["pushed"] == report["pulled"] == SIZE
    assert hashlib.sha256((folder / "big.bin").read_bytes()).hexdigest() == expected
    pulled = tmp_path / "back" / "big.bin"
    digest = hashlib.sha256()
    with open(pulled, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    assert digest.hexdigest() == expected
    # memory does not grow with the file: a few chunks' worth (8 MB chunks, base64 and the JSON body)
    assert report["push_growth"] < 80 * 1024 * 1024, report
    assert report["pull_growth"] < 80 * 1024 * 1024, report
    assert remote_server.token not in report["out"] + done.stderr
    assert not [p for p in tmp_path.rglob("*binder-partial*")] and not [p for p in folder.rglob("*binder-partial*")]
