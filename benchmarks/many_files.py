"""Many small files (issue 10): push and pull of 1,000 files of 0.1-3 KB in 10 folders.

What ``%binder_push`` / ``%binder_pull`` / sync's first push run (``open_transport`` +
``Transfer``) on a remote kernel of the shared server, on loopback and through a proxy adding
50 ms RTT (``harness.CuttableProxy``), with files moving one at a time (``workers=1``, how it
was) and side by side (the default ``transfer.WORKERS`` connections); then the same push
again with nothing changed (the unchanged are found with one digest request, then nothing
moves). The same through the kernel channel (what a kernel gateway gets; one kernel answers
one request at a time, so small files go many to an execute), with the executes counted.
Info rows, no target: a file is one request through the contents API, so the time is about
files x round trip / workers; the sha256 of every copy is checked.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from binder_autorun.server import JupyterServer, ServerInfo
from binder_autorun.session import KernelSession
from binder_autorun.transfer import WORKERS, KernelTransport, Transfer, open_transport

from harness import Context, CuttableProxy, log, now, temp_dir

FILES = 1000
FOLDERS = 10


def make_tree(root: Path) -> dict[str, str]:
    made = {}
    for index in range(FILES):
        rel = f"d{index % FOLDERS}/f{index:04d}.txt"
        data = os.urandom(100 + (index * 29) % 2900)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        made[rel] = hashlib.sha256(data).hexdigest()
    return made


def shas(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def timed(fn: Callable[[], object]) -> float:
    t0 = now()
    fn()
    return now() - t0


def run(ctx: Context) -> None:
    """Push, re-push and pull 1,000 small files, one at a time vs side by side, near and far."""
    rep, server = ctx.rep, ctx.server
    proxy = CuttableProxy(server.port, delay=0.025)
    links = {"loopback": server.url, "50 ms RTT": f"http://127.0.0.1:{proxy.port}{server.base_url}"}
    local = Path(temp_dir("bench-many-"))
    made = make_tree(local / "tree")
    remote_root = Path(server.root_dir)
    bad: list[str] = []
    try:
        for link, url in links.items():
            session = KernelSession.start(JupyterServer(ServerInfo(url, server.token)), "python3")
            try:
                transport = open_transport(session, "auto")
                for workers in (1, WORKERS):
                    sub = f"many-{uuid.uuid4().hex[:8]}"
                    log(f"many_files: {link}, {FILES} files, {workers} at a time")
                    push = timed(lambda: Transfer(transport, local, out=io.StringIO(), quiet=True, workers=workers).push(["tree"], to=sub))
                    again = timed(lambda: Transfer(transport, local, out=io.StringIO(), quiet=True, workers=workers).push(["tree"], to=sub))
                    back = local / f"back-{workers}-{uuid.uuid4().hex[:4]}"
                    pull = timed(lambda: Transfer(transport, back, out=io.StringIO(), quiet=True, workers=workers).pull([f"{sub}/tree"]))
                    if shas(remote_root / sub / "tree") != made or shas(back / sub / "tree") != made:
                        bad.append(f"{link}/{workers}")
                    rep.row("many", f"{link}, {workers} at a time: push / unchanged re-push / pull",
                            f"{push:6.2f} s / {again:5.2f} s / {pull:6.2f} s")
                    shutil.rmtree(back, ignore_errors=True)
                    shutil.rmtree(remote_root / sub, ignore_errors=True)
                kernel_channel(ctx, session, link, local, made, bad)
            finally:
                session.shutdown()
    finally:
        proxy.close()
    rep.row("many", f"sha256 of every copy == original ({FILES} files each)", "yes" if not bad else f"NO: {', '.join(bad)}")


def kernel_channel(ctx: Context, session: KernelSession, link: str, local: Path, made: dict[str, str], bad: list[str]) -> None:
    """Push, re-push and pull the tree through the kernel channel, counting the executes."""
    transport = open_transport(session, "kernel")
    assert isinstance(transport, KernelTransport)
    executes = [0]
    call_through = transport.helper.call_through

    def counted(function: str, *args: object) -> object:
        executes[0] += 1
        return call_through(function, *args)

    transport.helper.call_through = counted  # type: ignore[assignment,method-assign]
    sub = f"many-kernel-{uuid.uuid4().hex[:8]}"
    remote_root = Path(ctx.server.root_dir)
    log(f"many_files: {link}, {FILES} files, kernel channel")
    counts = []
    times = []
    back = local / f"back-kernel-{uuid.uuid4().hex[:4]}"
    for step in (lambda: Transfer(transport, local, out=io.StringIO(), quiet=True).push(["tree"], to=sub),
                 lambda: Transfer(transport, local, out=io.StringIO(), quiet=True).push(["tree"], to=sub),
                 lambda: Transfer(transport, back, out=io.StringIO(), quiet=True).pull([f"{sub}/tree"])):
        executes[0] = 0
        times.append(timed(step))
        counts.append(executes[0])
    if shas(remote_root / sub / "tree") != made or shas(back / sub / "tree") != made:
        bad.append(f"{link}/kernel channel")
    ctx.rep.row("many", f"{link}, kernel channel: push / unchanged re-push / pull",
                f"{times[0]:6.2f} s / {times[1]:5.2f} s / {times[2]:6.2f} s  ({counts[0]} / {counts[1]} / {counts[2]} executes)")
    shutil.rmtree(back, ignore_errors=True)
    shutil.rmtree(remote_root / sub, ignore_errors=True)
