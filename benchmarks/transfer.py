"""Transfer (issue 10): push and pull of a 200 MB generated file through the package vs the
same bytes through the server's own API.

- ours: what ``%binder_push`` / ``%binder_pull`` run (``BinderAutorun.transfer``):
  ``open_transport(session)`` (contents API, kernel channel for hidden files; the kernel-folder
  probe included, as the magic does it each time) and ``Transfer.push`` / ``Transfer.pull`` on
  a remote kernel of the shared server (base_url ``/user/bench/``);
- raw push: contents-API PUTs of base64 chunks (``chunk`` 1, 2, ... -1, straight into the
  final name, no rename) at 8, 16 and 32 MB chunks; the best of the three is the baseline;
- raw pull: ``GET files/PATH`` streamed to a local file (8 MB reads).

Runs alternate (the order rotates each repetition; the short pulls run 3 times each per
repetition) and the best of N counts. The fixed cost of one call (a 1-byte file, ours vs raw)
is shown beside it. Targets:
push and pull <= 1.2 x raw. Also: peak RSS growth of this process (the one doing the
transfer) sampled every 2 ms from /proc/self/statm, after ``malloc_trim(0)`` so memory that
an earlier run freed but the allocator kept does not hide the growth; sha256 of the pushed
and pulled copies against the original. The kernel-channel transport's push and pull (one
run, info). Everything lives in temporary directories, removed at the end.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import io
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from binder_autorun.server import JupyterServer
from binder_autorun.session import KernelSession
from binder_autorun.transfer import Transfer, open_transport

from harness import Context, Target, log, median, ms, now, rest, temp_dir

SIZE_MB = 200
RAW_CHUNKS_MB = (8, 16, 32)
PULL_EACH = 3  # a pull takes a fraction of a second on loopback: three of each per repetition

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:
    _LIBC = None


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measured(fn: Callable[[], object], every: float = 0.002) -> tuple[float, float]:
    """Seconds ``fn`` took and the peak RSS growth (MB) of this process meanwhile."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    base = rss()
    top = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            top[0] = max(top[0], rss())
            time.sleep(every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = now()
    try:
        fn()
    finally:
        seconds = now() - t0
        done.set()
        sampler.join()
    return seconds, (max(top[0], rss()) - base) / 1e6


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def generate(path: Path, size_mb: int) -> None:
    """Incompressible bytes, every MB different (index in front of a random block)."""
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(size_mb):
            f.write(i.to_bytes(8, "little") + block[8:])


def run(ctx: Context) -> None:
    """Measure push and pull of a 200 MB file, ours vs raw, and the kernel-channel figures."""
    rep, server = ctx.rep, ctx.server
    reps = 2 if ctx.quick else 3
    size = SIZE_MB << 20
    root = Path(server.root_dir)
    sub = f"xfer-{uuid.uuid4().hex[:8]}"  # the remote folder (under the server root = the kernel's folder)
    remote_dir = root / sub
    local = Path(temp_dir("bench-xfer-"))
    source = local / "big.bin"
    log(f"transfer: generating {SIZE_MB} MB in {local}")
    generate(source, SIZE_MB)
    original = sha256(source)

    http = rest(server.url, server.token)
    http.put(server.url + "api/contents/" + sub, json={"type": "directory"}, timeout=60).raise_for_status()
    session = KernelSession.start(JupyterServer(server.info), "python3")

    def transfer() -> Transfer:  # what BinderAutorun.transfer() builds for the magics
        return Transfer(open_transport(session, "auto"), local, out=io.StringIO(), quiet=True)

    def raw_put(chunk_mb: int) -> Callable[[], None]:
        chunk = chunk_mb << 20
        name = f"{sub}/raw-{chunk_mb}.bin"

        def put() -> None:
            n = 0
            with open(source, "rb") as f:
                data, following = f.read(chunk), f.read(chunk)
                while data:
                    n += 1
                    body = (b'{"type": "file", "format": "base64", "chunk": %d, "content": "' % (-1 if not following else n)
                            + base64.b64encode(data) + b'"}')
                    http.put(server.url + "api/contents/" + name, data=body, headers={"Content-Type": "application/json"},
                             timeout=600).raise_for_status()
                    data, following = following, f.read(chunk)
        return put

    def raw_get() -> None:
        with http.get(server.url + f"files/{sub}/pull.bin", stream=True, timeout=600) as r, \
                open(local / "raw-get.bin", "wb") as f:
            r.raise_for_status()
            for block in r.iter_content(8 << 20):
                f.write(block)

    def ours_push() -> None:
        transfer().push(["big.bin"], to=sub)

    def ours_pull() -> None:
        transfer().pull([f"{sub}/pull.bin"], to="back")

    def reset() -> None:
        """Outside the timing: no copy left from an earlier run (every push and pull moves all the bytes)."""
        for path in (remote_dir / "big.bin", local / "back" / sub / "pull.bin", local / "raw-get.bin",
                     *remote_dir.glob("raw-*.bin")):
            path.unlink(missing_ok=True)

    shutil.copyfile(source, remote_dir / "pull.bin")  # what the pulls fetch
    cases: dict[str, Callable[[], None]] = {f"raw PUT {mb} MB chunks": raw_put(mb) for mb in RAW_CHUNKS_MB}
    cases["ours push"] = ours_push
    cases["raw GET files/ streamed"] = raw_get
    cases["ours pull"] = ours_pull
    copies = {"ours push": remote_dir / "big.bin", "ours pull": local / "back" / sub / "pull.bin",
              "raw GET files/ streamed": local / "raw-get.bin"}
    best: dict[str, tuple[float, float]] = {}
    sums: dict[str, str] = {}
    try:
        for i in range(reps):
            order = list(cases)[i % len(cases):] + list(cases)[:i % len(cases)]  # who goes first rotates
            log(f"transfer: repetition {i + 1}/{reps}: {', '.join(order)}")
            for name in order:
                for _ in range(PULL_EACH if name in ("ours pull", "raw GET files/ streamed") else 1):
                    reset()
                    seconds, growth = measured(cases[name])
                    old = best.get(name)
                    best[name] = (min(seconds, old[0]), max(growth, old[1])) if old else (seconds, growth)
                    copy = copies.get(name) or next(remote_dir.glob("raw-*.bin"))
                    sums[name] = sha256(copy)  # the last run's copy (untimed)
        reset()

        # the fixed cost of one magic call: a 1-byte file each way (the transport is opened each time, as the magic does)
        (local / "tiny.bin").write_bytes(b"x")
        tiny: dict[str, list[float]] = {"ours push": [], "raw PUT": [], "ours pull": [], "raw GET": []}
        for _ in range(7):
            t0 = now()
            transfer().push(["tiny.bin"], to=sub)
            t1 = now()
            http.put(server.url + f"api/contents/{sub}/tiny-raw.bin", timeout=60,
                     json={"type": "file", "format": "base64", "content": base64.b64encode(b"x").decode()}).raise_for_status()
            t2 = now()
            transfer().pull([f"{sub}/tiny.bin"], to="back-tiny")
            t3 = now()
            http.get(server.url + f"files/{sub}/tiny-raw.bin", timeout=60).raise_for_status()
            t4 = now()
            for key, seconds in zip(tiny, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                tiny[key].append(seconds)
            (remote_dir / "tiny.bin").unlink()
            shutil.rmtree(local / "back-tiny")

        # the kernel channel (servers without a contents API, e.g. kernel gateways): one run each, info
        log("transfer: kernel-channel transport push and pull (one run each)")
        kernel = Transfer(open_transport(session, "kernel"), local, out=io.StringIO(), quiet=True)
        best["kernel channel push"] = measured(lambda: kernel.push(["big.bin"], to=sub))
        sums["kernel channel push"] = sha256(remote_dir / "big.bin")
        best["kernel channel pull"] = measured(lambda: kernel.pull([f"{sub}/pull.bin"], to="back-kernel"))
        sums["kernel channel pull"] = sha256(local / "back-kernel" / sub / "pull.bin")
    finally:
        session.shutdown()
        shutil.rmtree(remote_dir, ignore_errors=True)
        shutil.rmtree(local, ignore_errors=True)  # 200 MB copies: not left for the end of the run

    mb = size / 1e6
    for name, (seconds, growth) in best.items():
        runs = "1 run" if name.startswith("kernel") else f"best of {reps * (PULL_EACH if 'pull' in name or 'GET' in name else 1)}"
        rep.row("transfer", f"{name} ({SIZE_MB} MiB) [{runs}]",
                f"{seconds:7.2f} s  {mb / seconds:6.1f} MB/s  peak RSS growth {growth:6.1f} MB")
    rep.row("transfer", "fixed cost per call, 1-byte file [n=7]: ours push / raw PUT",
            f"median {ms(median(tiny['ours push']))} / {ms(median(tiny['raw PUT']))}")
    rep.row("transfer", "fixed cost per call, 1-byte file [n=7]: ours pull / raw GET",
            f"median {ms(median(tiny['ours pull']))} / {ms(median(tiny['raw GET']))}")
    bad = [name for name, digest in sums.items() if digest != original]
    rep.row("transfer", f"sha256 of every copy == original ({len(sums)} copies)", "yes" if not bad else f"NO: {', '.join(bad)}")
    if bad:
        rep.note(f"transfer: sha256 differs from the original for {', '.join(bad)}")
    raw_push_name = min((n for n in best if n.startswith("raw PUT")), key=lambda n: best[n][0])
    raw_push, raw_pull = best[raw_push_name][0], best["raw GET files/ streamed"][0]
    ours_push_s, ours_pull_s = best["ours push"][0], best["ours pull"][0]
    rep.target(Target(f"transfer: push {SIZE_MB} MiB <= 1.2 x best raw contents PUT", ours_push_s / raw_push, 1.2,
                      f"{ours_push_s:.2f} s vs {raw_push:.2f} s ({raw_push_name}); peak RSS growth "
                      f"{best['ours push'][1]:.0f} vs {best[raw_push_name][1]:.0f} MB; sha256 {'equal' if 'ours push' not in bad else 'DIFFERS'}"))
    rep.target(Target(f"transfer: pull {SIZE_MB} MiB <= 1.2 x raw files/ GET", ours_pull_s / raw_pull, 1.2,
                      f"{ours_pull_s:.2f} s vs {raw_pull:.2f} s; peak RSS growth "
                      f"{best['ours pull'][1]:.0f} vs {best['raw GET files/ streamed'][1]:.0f} MB; "
                      f"sha256 {'equal' if 'ours pull' not in bad else 'DIFFERS'}"))
