"""Sync latency (issue 10): a ``pass`` cell with ``%binder_sync`` on a tree of 1,000 unchanged files.

The routed kernel runs in a temporary folder holding ``sync-XXXX/`` (1,000 small files in 10
folders); ``%binder_sync sync-XXXX`` mirrors it into the remote kernel's folder (the server's
root: the first sync pushes all 1,000). Then ``pass`` cells are timed the way latency.py times
them, in the same run and interleaved (who goes first rotates): native local ipykernel (b),
raw websocket round trip with TCP_QUICKACK (c), routed without sync (info) and routed with
sync (a). Before each synced cell the local tree is asked what changed (inotify: a quiet tree
costs one read); the remote kernel's answer (its own inotify watch) comes back as a
user_expression of the cell's own execute request, so the cell stays one round trip.
Target: a <= 1.3 x (b + c), the core's latency ratio.

Checked: no file is pushed or pulled while nothing changes (``%binder_status``), and a file
a remote cell writes into the tree comes back (sync is really on).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from binder_autorun.transfer import SKIP_DIRS
from binder_autorun.watch import Tree

from harness import (TOKEN_ENV, Context, LocalKernel, RawKernelWS, Target, log, median, ms, now, pct, rest,
                     start_remote_kernel, state_env, temp_dir)

FILES = 1000
FOLDERS = 10


def make_tree(root: Path) -> None:
    for d in range(FOLDERS):
        folder = root / f"d{d:02d}"
        folder.mkdir(parents=True)
        for f in range(FILES // FOLDERS):
            (folder / f"f{f:03d}.txt").write_bytes(os.urandom(50 + (d * 100 + f) % 950))


def counts(kernel: LocalKernel) -> str:
    """The sync line of ``%binder_status`` (pushed/pulled counts)."""
    status = kernel.run_ok("%binder_status")
    text = status.stream_text() + status.stream_text("stderr") + "".join(d["data"].get("text/plain", "") for d in status.displays())
    found = re.search(r"pushed \d+ \([^)]*\), pulled \d+ \([^)]*\)", text)
    if found is None:
        raise RuntimeError(f"%binder_status shows no sync state: {text[-300:]!r}")
    return found.group(0)


def run(ctx: Context) -> None:
    """Measure a synced ``pass`` cell against native + raw."""
    rep, url, token = ctx.rep, ctx.server.url, ctx.server.token
    n = 40 if ctx.quick else 100
    warm = 10
    folder = f"sync-{uuid.uuid4().hex[:8]}"
    cwd = Path(temp_dir("bench-sync-"))
    make_tree(cwd / folder)
    remote_copy = Path(ctx.server.root_dir) / folder

    log(f"sync_latency: native kernel, raw websocket client, routed kernel; %binder_sync of {FILES} files")
    native = LocalKernel()
    http = rest(url, token)
    kid = start_remote_kernel(http, url)
    synced = LocalKernel(env={TOKEN_ENV: token, **state_env()}, cwd=str(cwd))
    raw = None
    res: dict[str, list[float]] = {"native": [], "raw": [], "routed": [], "synced": []}
    try:
        raw = RawKernelWS(url, token, kid, quickack=True)
        routed = ctx.routed()
        synced.run_ok("%load_ext binder_autorun")
        synced.run_ok(f"%binder_on --url {url}")
        start = synced.run_ok(f"%binder_sync {folder}")
        log(f"sync_latency: first sync took {start.seconds:.1f} s")
        if sum(1 for p in remote_copy.rglob("*") if p.is_file()) != FILES:
            raise RuntimeError(f"the first sync did not mirror the {FILES} files into {remote_copy}")
        modes: dict[str, Callable[[], float]] = {
            "native": lambda: native.run("pass").seconds,
            "raw": lambda: raw.execute("pass").seconds,
            "routed": lambda: routed.run_ok("pass").seconds,
            "synced": lambda: synced.run_ok("pass").seconds,
        }
        for _ in range(warm):
            for sample in modes.values():
                sample()
        before = counts(synced)
        log(f"sync_latency: {n} interleaved samples per mode")
        order = list(modes)
        for i in range(n):
            for key in order[i % 4:] + order[:i % 4]:
                res[key].append(modes[key]())
        after = counts(synced)
        if after != before:
            rep.note(f"sync_latency: files moved while nothing changed: {before} -> {after}")
        # sync is really on: what a remote cell writes into the tree comes back
        synced.run_ok(f"open({folder + '/d00/written-remotely.txt'!r}, 'w').write('x')")
        came_back = (cwd / folder / "d00" / "written-remotely.txt").exists()
        if not came_back:
            rep.note("sync_latency: a file written by a remote cell was not pulled back (is sync on?)")
        scans, rescans = [], []  # what the local half of a synced cell costs (the same check, in this process)
        for watch, times in ((True, scans), (False, rescans)):
            tree = Tree(str(cwd / folder), SKIP_DIRS, watch=watch)
            tree.changes()
            for _ in range(20):
                t0 = now()
                tree.changes()
                times.append(now() - t0)
            tree.close()
        synced.run_ok("%binder_sync --off")
        synced.run_ok("%binder_off")
    finally:
        if raw is not None:
            raw.close()
        native.stop()
        synced.stop()
        http.delete(url + f"api/kernels/{kid}", timeout=30)
        shutil.rmtree(remote_copy, ignore_errors=True)
        shutil.rmtree(cwd, ignore_errors=True)

    for key, label in (("native", "(b) native local ipykernel `pass`"),
                       ("raw", "(c) raw websocket round trip, TCP_QUICKACK"),
                       ("routed", "routed `pass` without sync, info"),
                       ("synced", f"(a) routed `pass`, %binder_sync on {FILES} unchanged files")):
        xs = res[key]
        rep.row("sync", f"{label} [n={len(xs)}]", f"median {ms(median(xs))}  p10 {ms(pct(xs, .1))}  p90 {ms(pct(xs, .9))}")
    rep.row("sync", "sync's own cost per cell (median synced - routed)",
            ms(median(res["synced"]) - median(res["routed"])))
    rep.row("sync", f"  of which the local check of {FILES} files (same check in this process), info",
            f"{median(scans) * 1e6:9.1f} us")
    rep.row("sync", f"  a full rescan of {FILES} files instead (no inotify), info", ms(median(rescans)))
    rep.row("sync", "files moved during the samples / remote write pulled back",
            f"{'none' if after == before else f'{before} -> {after}'} / {'yes' if came_back else 'NO'}")
    base = median(res["native"]) + median(res["raw"])
    rep.target(Target(f"sync: `pass` with %binder_sync ({FILES} files) <= 1.3 x (native + raw)",
                      median(res["synced"]) / base, 1.3,
                      f"synced {median(res['synced']) * 1e3:.2f} ms vs native {median(res['native']) * 1e3:.2f} + "
                      f"raw {median(res['raw']) * 1e3:.2f} = {base * 1e3:.2f} ms (routed without sync "
                      f"{median(res['routed']) * 1e3:.2f} ms)"))
