#!/usr/bin/env python
"""binder_autorun benchmark: latency, bulk transfer, launch and recovery, in one run.

Everything runs on loopback: a real jupyter_server (``LocalServer`` with a
Binder-like ``base_url``), real local ipykernels driven by jupyter_client, and
an independent minimal websocket client (``RawKernelWS``, *not* the package's
channel) as the "what the wire costs" baseline.

    /work/venv/bin/python benchmarks/bench.py            # full run (~2-3 min)
    /work/venv/bin/python benchmarks/bench.py --quick    # fewer repetitions (~1 min)

Sections and the targets they check (issues 3, 4 and 5, "Performance"):

1. latency   routed ``pass`` <= 1.3 x (native local ``pass`` + raw websocket round trip with QUICKACK)
2. bulk      routed 100,000 lines + 20 MB image <= 1.5 x max(native, raw transfer); output complete;
             peak extra memory of the routing kernel <= 4 x payload
3. launch    (url, token) -> first routed result <= 1.2 x (POST api/kernels + ws connect + 1 execute, raw)
4. recovery  reconnect after cut connections <= 2 s; server death detected (cell fails) <= 5 s

The exit status is 0 whatever the results: read the PASS/FAIL lines.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
import contextlib
import json
import os
import platform
import shutil
import queue
import socket
import statistics
import subprocess
import struct
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import requests
import websocket
import zmq
from jupyter_client import KernelManager

from binder_autorun.launch import LocalServer

BASE_URL = "/user/bench/"
TOKEN_ENV = "BINDER_AUTORUN_TOKEN"
V1 = "v1.kernel.websocket.jupyter.org"
QUICKACK = getattr(socket, "TCP_QUICKACK", None)

# 100,000 printed lines + an image/png bundle of IMAGE_B64_CHARS base64 characters.
N_LINES = 100_000
IMAGE_B64_CHARS = 20_000_000  # 15,000,000 random bytes -> 20,000,000 base64 characters
BULK_CELL = f"""\
import base64, os
from IPython.display import display
for i in range({N_LINES}):
    print(f'line {{i}}')
display({{'image/png': base64.b64encode(os.urandom({IMAGE_B64_CHARS * 3 // 4})).decode('ascii'),
          'text/plain': '<bench image>'}}, raw=True)
"""

now = time.perf_counter


def log(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Small statistics helpers


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def ms(x: float) -> str:
    return f"{x * 1000:9.2f} ms"


# ---------------------------------------------------------------------------------------------
# A local ipykernel driven through jupyter_client (the frontend's view)


@dataclass
class CellRun:
    seconds: float
    reply: dict[str, Any]
    outputs: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)  # (t, msg_type, content)
    t_end: float = 0.0  # perf_counter() when reply and idle had both arrived

    def stream_text(self, name: str = "stdout") -> str:
        return "".join(c["text"] for _, k, c in self.outputs if k == "stream" and c.get("name") == name)

    def displays(self) -> list[dict[str, Any]]:
        return [c for _, k, c in self.outputs if k in ("display_data", "execute_result")]


class LocalKernel:
    """A real local ipykernel; ``run`` times execute_request -> (reply and idle) at the client."""

    def __init__(self, env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=dict(os.environ, **(env or {})), cwd=cwd or os.getcwd())
        self.kc = self.km.blocking_client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.poller = zmq.Poller()
        self.shell_sock = self.kc.shell_channel.socket
        self.iopub_sock = self.kc.iopub_channel.socket
        self.poller.register(self.shell_sock, zmq.POLLIN)
        self.poller.register(self.iopub_sock, zmq.POLLIN)
        # drain start-up iopub traffic
        time.sleep(0.05)
        while self.kc.iopub_channel.msg_ready():
            self.kc.iopub_channel.get_msg(timeout=0)

    @property
    def pid(self) -> int:
        return int(self.km.provisioner.pid)  # type: ignore[union-attr]

    def run(self, code: str, timeout: float = 120.0, on_msg: Callable[[float, dict[str, Any]], None] | None = None,
            keep_outputs: bool = True) -> CellRun:
        t0 = now()
        msg_id = self.kc.execute(code, allow_stdin=False)
        reply: dict[str, Any] | None = None
        idle = False
        outputs: list[tuple[float, str, dict[str, Any]]] = []
        deadline = t0 + timeout
        while reply is None or not idle:
            left = deadline - now()
            if left <= 0:
                raise TimeoutError(f"cell did not finish within {timeout:g} s: {code[:60]!r}")
            events = dict(self.poller.poll(int(left * 1000) + 1))
            if self.iopub_sock in events:
                while self.kc.iopub_channel.msg_ready():
                    msg = self.kc.iopub_channel.get_msg(timeout=0)
                    if msg["parent_header"].get("msg_id") != msg_id:
                        continue
                    t = now()
                    kind = msg["msg_type"]
                    if kind == "status":
                        idle = idle or msg["content"]["execution_state"] == "idle"
                    elif kind != "execute_input" and keep_outputs:
                        outputs.append((t, kind, msg["content"]))
                    if on_msg is not None:
                        on_msg(t, msg)
            if self.shell_sock in events:
                while self.kc.shell_channel.msg_ready():
                    msg = self.kc.shell_channel.get_msg(timeout=0)
                    if msg["parent_header"].get("msg_id") == msg_id:
                        reply = msg["content"]
        t1 = now()
        return CellRun(t1 - t0, reply, outputs, t1)

    def run_ok(self, code: str, **kw: Any) -> CellRun:
        result = self.run(code, **kw)
        if result.reply.get("status") != "ok":
            raise RuntimeError(f"cell failed: {code[:80]!r}: {result.reply.get('ename')}: {result.reply.get('evalue')}")
        return result

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.kc.stop_channels()
        with contextlib.suppress(Exception):
            self.km.shutdown_kernel(now=True)


_TEMP_DIRS: list[str] = []


def temp_dir(prefix: str) -> str:
    """A temporary directory removed at the end of the run."""
    path = tempfile.mkdtemp(prefix=prefix)
    _TEMP_DIRS.append(path)
    return path


_STATE_DIR = temp_dir("bench-state-")


def state_env() -> dict[str, str]:
    """Keep the package's saved-servers file (reattach) private to this run."""
    return {"BINDER_AUTORUN_STATE": os.path.join(_STATE_DIR, "servers.json")}


def routed_kernel(url: str, token: str) -> LocalKernel:
    """A local ipykernel with the extension loaded and remote mode on (token via the environment)."""
    kernel = LocalKernel(env={TOKEN_ENV: token, **state_env()})
    kernel.run_ok("%load_ext binder_autorun")
    kernel.run_ok(f"%binder_on --url {url}")
    return kernel


def vm_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0]) * 1024
    return out


def reset_hwm(pid: int) -> bool:
    """Reset a process's peak RSS (VmHWM) to its current RSS (Linux: clear_refs 5)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# An independent minimal kernel websocket client (baseline; not the package's channel)


def rest(url: str, token: str) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"token {token}"
    s.trust_env = False
    return s


def start_remote_kernel(http: requests.Session, url: str) -> str:
    r = http.post(url + "api/kernels", json={"name": "python3"}, timeout=60)
    r.raise_for_status()
    return str(r.json()["id"])


def v1_encode(channel: str, header: dict, parent: dict, metadata_: dict, content: dict) -> bytes:
    parts = [channel.encode()] + [json.dumps(p).encode() for p in (header, parent, metadata_, content)]
    offsets = [8 * (1 + 1 + 4 + 1)]
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


def v1_decode(frame: bytes) -> tuple[str, dict, dict, dict]:
    (n,) = struct.unpack_from("<Q", frame, 0)
    offs = struct.unpack_from(f"<{n}Q", frame, 8)
    mv = memoryview(frame)
    channel = bytes(mv[offs[0]:offs[1]]).decode()
    header = json.loads(bytes(mv[offs[1]:offs[2]]))
    parent = json.loads(bytes(mv[offs[2]:offs[3]]))
    content = json.loads(bytes(mv[offs[4]:offs[5]]))
    return channel, header, parent, content


class RawKernelWS:
    """Minimal websocket-client kernel client: v1 protocol, TCP_NODELAY, optional QUICKACK per recv."""

    def __init__(self, url: str, token: str, kernel_id: str, quickack: bool = True) -> None:
        self.session = uuid.uuid4().hex
        self.quickack = quickack and QUICKACK is not None
        ws_url = "ws" + url[4:] + f"api/kernels/{kernel_id}/channels?session_id={self.session}"
        self.ws = websocket.create_connection(
            ws_url, header=[f"Authorization: token {token}"], subprotocols=[V1], timeout=60,
            skip_utf8_validation=True, suppress_origin=True,
            sockopt=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        if self.ws.getsubprotocol() != V1:
            raise RuntimeError("server did not accept the v1 kernel websocket protocol")

    def send(self, msg_type: str, content: dict[str, Any], channel: str = "shell") -> str:
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": msg_type, "username": "bench", "session": self.session,
                  "date": datetime.now(timezone.utc).isoformat(), "version": "5.3"}
        self.ws.send(v1_encode(channel, header, {}, {}, content), websocket.ABNF.OPCODE_BINARY)
        return msg_id

    def recv(self) -> tuple[str, dict, dict, dict]:
        if self.quickack:
            self.ws.sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        opcode, data = self.ws.recv_data()
        if opcode != websocket.ABNF.OPCODE_BINARY:
            raise RuntimeError(f"unexpected websocket opcode {opcode}")
        return v1_decode(data)

    def execute(self, code: str, keep_outputs: bool = True) -> CellRun:
        t0 = now()
        msg_id = self.send("execute_request", {"code": code, "silent": False, "store_history": True,
                                               "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        reply = None
        idle = False
        outputs: list[tuple[float, str, dict[str, Any]]] = []
        while reply is None or not idle:
            channel, header, parent, content = self.recv()
            if parent.get("msg_id") != msg_id:
                continue
            kind = header["msg_type"]
            if channel == "shell" and kind == "execute_reply":
                reply = content
            elif channel == "iopub":
                if kind == "status":
                    idle = idle or content.get("execution_state") == "idle"
                elif kind != "execute_input" and keep_outputs:
                    outputs.append((now(), kind, content))
        t1 = now()
        return CellRun(t1 - t0, reply, outputs, t1)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close(timeout=1)


# ---------------------------------------------------------------------------------------------
# A cuttable TCP proxy (thread-based socket forwarder)


class CuttableProxy:
    """Forwards 127.0.0.1:port -> 127.0.0.1:target_port; ``cut()`` closes every live connection.

    ``blackhole()`` instead makes existing connections silently drop all data (a network that
    vanished without a reset); new connections forward normally. ``delay`` (seconds, one way)
    holds every chunk that long before forwarding it (pure propagation delay: chunks are not
    serialized behind each other; TCP handshakes themselves are not delayed).
    """

    def __init__(self, target_port: int, delay: float = 0.0) -> None:
        self.target_port = target_port
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs: dict[int, tuple[socket.socket, socket.socket]] = {}
        self.dead: set[int] = set()
        self.lock = threading.Lock()
        self.accepted: list[tuple[float, bytes]] = []  # (time, first bytes from the client)
        self._n = 0
        self._closed = False
        self.down = False
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept_loop, daemon=True, name="proxy-accept").start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                self._held.append(client)  # accepted, never answered (a connection timing out)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self._n += 1
                key = self._n
                self.pairs[key] = (client, upstream)
            threading.Thread(target=self._pump, args=(key, client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(key, upstream, client, False), daemon=True).start()

    @staticmethod
    def _chunks(src: socket.socket) -> Iterator[bytes]:
        """What ``src`` sends, chunk by chunk, ACKed at once (QUICKACK), until it closes."""
        while True:
            try:
                if QUICKACK is not None:
                    src.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
                data = src.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            yield data

    def _pump(self, key: int, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        if self.delay > 0:
            self._pump_delayed(key, src, dst)
            return
        first = from_client
        for data in self._chunks(src):
            if first:
                self.accepted.append((now(), data[:120]))
                first = False
            if key in self.dead:
                continue  # blackholed: swallow
            try:
                dst.sendall(data)
            except OSError:
                break
        self._close(key)

    def _pump_delayed(self, key: int, src: socket.socket, dst: socket.socket) -> None:
        pending: queue.SimpleQueue = queue.SimpleQueue()

        def sender() -> None:
            while True:
                item = pending.get()
                if item is None:
                    break
                due, data = item
                time.sleep(max(0.0, due - now()))
                try:
                    dst.sendall(data)
                except OSError:
                    break
            self._close(key)

        threading.Thread(target=sender, daemon=True).start()
        for data in self._chunks(src):
            pending.put((now() + self.delay, data))
        pending.put(None)

    def _close(self, key: int) -> None:
        with self.lock:
            pair = self.pairs.pop(key, None)
        for s in pair or ():
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def cut(self) -> int:
        with self.lock:
            keys = list(self.pairs)
        for key in keys:
            self._close(key)
        return len(keys)

    def blackhole(self, down: bool = False) -> int:
        """Silently drop all data of live connections; ``down``: also of every new one."""
        with self.lock:
            keys = list(self.pairs)
            self.dead.update(keys)
            self.down = self.down or down
        return len(keys)

    def ws_connects_after(self, t: float) -> list[float]:
        return [ta - t for ta, head in self.accepted if ta > t and b"/channels" in head.split(b"\r\n", 1)[0]]

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.close()
        self.cut()
        for s in self._held:
            with contextlib.suppress(OSError):
                s.close()


# ---------------------------------------------------------------------------------------------
# Results and reporting


@dataclass
class Target:
    name: str
    measured: float
    limit: float
    detail: str

    @property
    def ok(self) -> bool:
        return self.measured <= self.limit


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []
        self.targets: list[Target] = []
        self.notes: list[str] = []

    def row(self, section: str, what: str, value: str) -> None:
        self.rows.append((section, what, value))
        print(f"  {section:<9} {what:<62} {value}", flush=True)

    def target(self, t: Target) -> None:
        self.targets.append(t)

    def note(self, text: str) -> None:
        self.notes.append(text)
        log("NOTE " + text)


# ---------------------------------------------------------------------------------------------
# 1. Latency


def bench_latency(rep: Report, server: LocalServer, n: int, n_naive: int) -> dict[str, Any]:
    """Samples of the three modes are interleaved (a, b, c in turn), so a machine that gets busier
    or quieter during the run moves all three alike."""
    url, token = server.url, server.token
    warm = 20
    res: dict[str, Any] = {"native": [], "raw": [], "routed": []}

    log("latency: starting a native kernel, a raw websocket client and a routed kernel")
    native = LocalKernel()
    http = rest(url, token)
    kid = start_remote_kernel(http, url)
    try:
        raw = RawKernelWS(url, token, kid, quickack=True)
        routed = routed_kernel(url, token)
        res["routed_kernel"] = routed
        modes: dict[str, Callable[[], float]] = {
            "native": lambda: native.run("pass").seconds,
            "raw": lambda: raw.execute("pass").seconds,
            "routed": lambda: routed.run_ok("pass").seconds,
        }
        for _ in range(warm):
            for sample in modes.values():
                sample()
        log(f"latency: {n} interleaved samples per mode")
        order = list(modes)
        for i in range(n):
            for key in order[i % 3:] + order[:i % 3]:  # rotate who goes first
                res[key].append(modes[key]())
        raw.close()
        log("latency: raw websocket client without QUICKACK")
        naive = RawKernelWS(url, token, kid, quickack=False)
        for _ in range(5):
            naive.execute("pass")
        res["naive"] = [naive.execute("pass").seconds for _ in range(n_naive)]
        naive.close()
    finally:
        native.stop()
        http.delete(url + f"api/kernels/{kid}", timeout=30)

    for key, label in (("native", "(b) native local ipykernel `pass`"),
                       ("raw", "(c) raw websocket round trip, TCP_QUICKACK"),
                       ("naive", "(d) raw websocket round trip, no QUICKACK"),
                       ("routed", "(a) routed `pass` (binder_autorun)")):
        xs = res[key]
        rep.row("latency", f"{label} [n={len(xs)}]",
                f"median {ms(median(xs))}  p10 {ms(pct(xs, .1))}  p90 {ms(pct(xs, .9))}")
    base = median(res["native"]) + median(res["raw"])
    rep.target(Target("latency: routed <= 1.3 x (native + raw-quickack)", median(res["routed"]) / base, 1.3,
                      f"routed {median(res['routed']) * 1e3:.2f} ms vs native {median(res['native']) * 1e3:.2f} + "
                      f"raw {median(res['raw']) * 1e3:.2f} = {base * 1e3:.2f} ms"))
    rep.row("latency", "delayed-ACK trap: no-QUICKACK / QUICKACK raw", f"{median(res['naive']) / median(res['raw']):8.1f} x")
    return res


# ---------------------------------------------------------------------------------------------
# 2. Bulk


def check_bulk(run: CellRun) -> tuple[int, int, str]:
    text = run.stream_text()
    lines = text.count("\n")
    ok_lines = lines == N_LINES and text.startswith("line 0\n") and text.endswith(f"line {N_LINES - 1}\n")
    images = [d.get("data", {}).get("image/png", "") for d in run.displays()]
    size = max((len(x) for x in images), default=0)
    problems = []
    if not ok_lines:
        problems.append(f"{lines} lines")
    if size != IMAGE_B64_CHARS:
        problems.append(f"image {size} chars")
    if run.reply.get("status") != "ok":
        problems.append(f"reply {run.reply.get('status')}")
    extra = [c["text"][:80] for _, k, c in run.outputs if k == "stream" and c.get("name") == "stderr"]
    if extra:
        problems.append(f"stderr: {extra[0]!r}")
    return lines, size, ", ".join(problems) or "complete"


def bench_bulk(rep: Report, server: LocalServer, routed: LocalKernel, reps: int) -> dict[str, Any]:
    url, token = server.url, server.token
    res: dict[str, Any] = {"native": [], "raw": [], "routed": []}
    payload = N_LINES * len("line 99999\n") + IMAGE_B64_CHARS

    log("bulk: native kernel, raw websocket client and routed kernel, interleaved")
    native = LocalKernel()
    http = rest(url, token)
    kid = start_remote_kernel(http, url)
    pid = routed.pid
    statuses: list[str] = []
    mems: list[int] = []
    native_mems: list[int] = []
    hwm_reset = False
    try:
        native.run_ok("pass")
        raw = RawKernelWS(url, token, kid, quickack=True)
        raw.execute("pass")
        for i in range(reps):
            log(f"bulk: round {i + 1}/{reps}")
            before = vm_status(native.pid)
            reset_hwm(native.pid)
            r = native.run(BULK_CELL)
            after = vm_status(native.pid)
            res["native"].append(r.seconds)
            res.setdefault("native_status", check_bulk(r)[2])
            native_mems.append(after["VmHWM"] - before["VmRSS"])

            r = raw.execute(BULK_CELL)
            res["raw"].append(r.seconds)
            res.setdefault("raw_status", check_bulk(r)[2])

            before = vm_status(pid)
            hwm_reset = reset_hwm(pid)
            r = routed.run(BULK_CELL)
            after = vm_status(pid)
            statuses.append(check_bulk(r)[2])
            res["routed"].append(r.seconds)
            mems.append(after["VmHWM"] - (before["VmRSS"] if hwm_reset else before["VmHWM"]))
        raw.close()
        res["native_mem"] = max(native_mems)
    finally:
        native.stop()
        http.delete(url + f"api/kernels/{kid}", timeout=30)
    res["routed_status"] = statuses[0] if all(s == statuses[0] for s in statuses) else "; ".join(statuses)
    res["routed_mem"] = max(mems)
    res["routed_mems"] = mems
    res["hwm_reset"] = hwm_reset
    res["payload"] = payload

    for key, label in (("native", "(b) native local ipykernel"), ("raw", "(c) raw websocket transfer"),
                       ("routed", "(a) routed end to end")):
        xs = res[key]
        rep.row("bulk", f"{label} [n={len(xs)}]",
                f"median {xs and median(xs):8.3f} s  min {min(xs):7.3f} s  output: {res[key + '_status']}")
    mb = 1e6
    rep.row("bulk", "payload (stdout text + image base64)", f"{payload / mb:8.2f} MB")
    rep.row("bulk", "peak extra memory, routing kernel (VmHWM - RSS before)",
            f"{res['routed_mem'] / mb:8.1f} MB = {res['routed_mem'] / payload:.2f} x payload (max of "
            + ", ".join(f"{m / mb:.0f}" for m in res["routed_mems"]) + " MB)"
            + ("" if hwm_reset else " (VmHWM not resettable: delta of VmHWM)"))
    rep.row("bulk", "peak extra memory, native kernel (for comparison)",
            f"{res['native_mem'] / mb:8.1f} MB = {res['native_mem'] / payload:.2f} x payload (max of "
            + ", ".join(f"{m / mb:.0f}" for m in native_mems) + " MB)")
    base = max(median(res["native"]), median(res["raw"]))
    rep.target(Target("bulk: routed <= 1.5 x max(native, raw)", median(res["routed"]) / base, 1.5,
                      f"routed {median(res['routed']):.3f} s vs max(native {median(res['native']):.3f}, "
                      f"raw {median(res['raw']):.3f}) s; output {res['routed_status']}"))
    rep.target(Target("bulk: complete routed output (0 = complete)", 0.0 if res["routed_status"] == "complete" else 1.0,
                      0.0, res["routed_status"]))
    rep.target(Target("bulk: peak extra memory <= 4 x payload", res["routed_mem"] / payload, 4.0,
                      f"{res['routed_mem'] / mb:.1f} MB for a {payload / mb:.1f} MB payload"))
    return res


# ---------------------------------------------------------------------------------------------
# 3. Launch


def load_standin() -> tuple[Any, str | None]:
    """The BinderHub stand-in of tests/ (another engineer's), or why it cannot be used."""
    repo = Path(__file__).resolve().parent.parent
    if not (repo / "tests" / "binderhub_standin.py").exists():
        return None, "tests/binderhub_standin.py does not exist"
    try:
        import binder_autorun.magics as magics_mod
        if "--binderhub" not in Path(magics_mod.__file__).read_text():
            return None, "the package's %binder_on has no -r/--binderhub option"
        sys.path.insert(0, str(repo))
        from tests import binderhub_standin  # noqa: PLC0415
    except Exception as exc:
        return None, f"cannot import it: {type(exc).__name__}: {exc}"
    return binderhub_standin, None


def raw_launch(http: requests.Session, url: str, token: str) -> tuple[float, tuple[float, float, float]]:
    """POST api/kernels + websocket connect + one execute round trip, raw; returns (total, parts)."""
    t0 = now()
    kid = start_remote_kernel(http, url)
    t1 = now()
    raw = RawKernelWS(url, token, kid)
    t2 = now()
    r = raw.execute("1 + 1")
    t3 = now()
    raw.close()
    assert r.reply.get("status") == "ok"
    http.delete(url + f"api/kernels/{kid}", timeout=30)
    return t3 - t0, (t1 - t0, t2 - t1, t3 - t2)


def first_result(kernel: LocalKernel, connect_cell: str) -> tuple[CellRun, CellRun]:
    on = kernel.run_ok(connect_cell)
    first = kernel.run_ok("1 + 1")
    got = [c["data"].get("text/plain") for _, k, c in first.outputs if k == "execute_result"]
    if got != ["2"]:
        raise RuntimeError(f"first routed cell gave {got}")
    return on, first


def launch_series(server_url: str, token: str, reps: int, hub_url: str | None, label: str = "") -> dict[str, Any]:
    """``reps`` x (raw launch, routed --url launch, routed -r launch through the stand-in at ``hub_url``)."""
    res: dict[str, Any] = {"routed": [], "raw": [], "raw_parts": [], "routed_parts": [], "ready": [], "ready_parts": []}
    http = rest(server_url, token)
    for i in range(reps):
        log(f"launch{label}: raw POST api/kernels + ws connect + execute ({i + 1}/{reps})")
        total, parts = raw_launch(http, server_url, token)
        res["raw"].append(total)
        res["raw_parts"].append(parts)

        log(f"launch{label}: routed %binder_on --url + first cell ({i + 1}/{reps})")
        kernel = LocalKernel(env={TOKEN_ENV: token, **state_env()})
        try:
            kernel.run_ok("%load_ext binder_autorun")
            t0 = now()
            on, first = first_result(kernel, f"%binder_on --url {server_url}")
            res["routed"].append(first.t_end - t0)
            res["routed_parts"].append((on.seconds, first.seconds))
            kernel.run_ok("%binder_off --shutdown")
        finally:
            kernel.stop()

        if hub_url is not None:
            log(f"launch{label}: routed %binder_on -r through the BinderHub stand-in ({i + 1}/{reps})")
            kernel = LocalKernel(env=state_env())
            try:
                kernel.run_ok("%load_ext binder_autorun")
                _READY_AT.clear()
                t0 = now()
                on, first = first_result(kernel, f"%binder_on -r bench/cache-hit-{uuid.uuid4().hex[:8]} --binderhub {hub_url}")
                if len(_READY_AT) != 1:
                    raise RuntimeError(f"stand-in sent {len(_READY_AT)} ready events")
                res["ready"].append(first.t_end - _READY_AT[0])
                res["ready_parts"].append((_READY_AT[0] - t0, on.t_end - _READY_AT[0], first.seconds))
                kernel.run_ok("%binder_off --shutdown")
            finally:
                kernel.stop()
    return res


_READY_AT: list[float] = []


def start_standin(standin: Any, server: Any) -> Any:
    handler = standin._Handler
    if not getattr(handler, "_bench_timed", False):
        original_ready = handler._ready

        def timed_ready(self: Any, provider: str, spec: str) -> None:
            original_ready(self, provider, spec)
            _READY_AT.append(now())  # the ready event has been written to the client's socket

        handler._ready = timed_ready
        handler._bench_timed = True
    return standin.BinderHubStandIn(temp_dir("bench-hub-"), user="bench", server=server,
                                    hold_seconds=5.0).start()


def bench_launch(rep: Report, server: LocalServer, reps: int, rtt_reps: int, one_way: float) -> dict[str, Any]:
    standin, why = load_standin()
    if why is not None:
        rep.note(f"launch: BinderHub stand-in not used ({why}); the target uses (url, token) -> first routed result")
    hub = start_standin(standin, server) if standin is not None else None
    try:
        res = launch_series(server.url, server.token, reps, hub.url if hub else None)
    finally:
        if hub is not None:
            hub.stop()

    def med(xs: list[float]) -> str:
        return f"median {ms(median(xs))}  min {ms(min(xs))}"

    parts = list(zip(*res["raw_parts"]))
    rep.row("launch", f"raw: POST api/kernels [n={reps}]", med(list(parts[0])))
    rep.row("launch", "raw: websocket connect (server waits for the kernel)", med(list(parts[1])))
    rep.row("launch", "raw: first execute round trip", med(list(parts[2])))
    rep.row("launch", "raw: total = kernel start + connect + 1 execute", med(res["raw"]))
    rparts = list(zip(*res["routed_parts"]))
    rep.row("launch", "routed --url: %binder_on cell", med(list(rparts[0])))
    rep.row("launch", "routed --url: first routed cell `1 + 1`", med(list(rparts[1])))
    rep.row("launch", "routed --url: (url, token) -> first routed result", med(res["routed"]))
    base = median(res["raw"])
    if res["ready"]:
        dparts = list(zip(*res["ready_parts"]))
        rep.row("launch", "routed -r (stand-in): %binder_on start -> ready event", med(list(dparts[0])))
        rep.row("launch", "routed -r (stand-in): ready -> %binder_on cell done", med(list(dparts[1])))
        rep.row("launch", "routed -r (stand-in): first routed cell `1 + 1`", med(list(dparts[2])))
        rep.row("launch", "routed -r (stand-in): ready event -> first routed result", med(res["ready"]))
        rep.target(Target("launch: ready -> first result <= 1.2 x (kernel start+connect+exec)",
                          median(res["ready"]) / base, 1.2,
                          f"{median(res['ready']) * 1e3:.0f} ms vs {base * 1e3:.0f} ms (BinderHub stand-in, cache hit; "
                          f"min {min(res['ready']) * 1e3:.0f} vs {min(res['raw']) * 1e3:.0f} ms)"))
    rep.target(Target("launch: (url,token) -> first result <= 1.2 x (same)", median(res["routed"]) / base, 1.2,
                      f"{median(res['routed']) * 1e3:.0f} ms vs {base * 1e3:.0f} ms"))

    if rtt_reps:
        # the same through a proxy adding latency: extra round trips show as multiples of the RTT
        rtt = 2 * one_way
        proxy = CuttableProxy(server.port, delay=one_way)
        purl = f"http://127.0.0.1:{proxy.port}{server.base_url}"
        fake = type("ProxiedServer", (), {"url": purl, "token": server.token, "running": True})()
        hub = start_standin(standin, fake) if standin is not None else None
        try:
            wan = launch_series(purl, server.token, rtt_reps, hub.url if hub else None, label=f" (RTT {rtt * 1e3:.0f} ms)")
        finally:
            if hub is not None:
                hub.stop()
            proxy.close()
        label = f"RTT {rtt * 1e3:.0f} ms"

        def extra(xs: list[float]) -> str:
            return (f"= raw + {(median(xs) - median(wan['raw'])) / rtt:.1f} RTT (median), "
                    f"+ {(min(xs) - min(wan['raw'])) / rtt:.1f} RTT (min)")

        rep.row("launch", f"{label}: raw total [n={rtt_reps}]", med(wan["raw"]))
        rep.row("launch", f"{label}: routed --url (url, token) -> first result", med(wan["routed"]))
        rep.row("launch", "", extra(wan["routed"]))
        if wan["ready"]:
            rep.row("launch", f"{label}: routed -r ready -> first result", med(wan["ready"]))
            rep.row("launch", "", extra(wan["ready"]))
            rep.note(f"launch with {label} (info, no target): ready -> first result {median(wan['ready']) * 1e3:.0f} ms vs "
                     f"raw {median(wan['raw']) * 1e3:.0f} ms = {median(wan['ready']) / median(wan['raw']):.2f} x; "
                     "kernel start time varies a lot between runs, so read the min column for the fixed extra cost")
    return res


# ---------------------------------------------------------------------------------------------
# 4. Recovery


# each tick is a stream line (checked for completeness) and a display_data (published at once by the
# routing kernel, so arrival times are not blurred by ipykernel's 200 ms stream flush interval)
TICK_CELL = """\
import time
from IPython.display import display
for i in range({n}):
    print('tick', i, flush=True)
    display({{'text/plain': f'dtick {{i}}'}}, raw=True)
    time.sleep({dt})
"""


def tick_of(msg: dict[str, Any]) -> int | None:
    if msg["msg_type"] == "display_data":
        text = msg["content"]["data"].get("text/plain", "")
        if text.startswith("dtick "):
            return int(text.split()[1])
    return None


def ticks_seen(run: CellRun) -> list[int]:
    out = []
    for line in run.stream_text().splitlines():
        if line.startswith("tick "):
            out.append(int(line.split()[1]))
    return out


def bench_cut(server: LocalServer, mode: str, random_cuts: int = 0) -> dict[str, Any]:
    """Break every proxied connection mid-cell; time until the next tick arrives (or the cell fails).

    mode "cut": close them (FIN both ways); "blackhole": keep them open but drop all data (a
    network path that vanished silently), new connections work; "down": blackhole and never
    answer new connections either (network down for good).

    ``random_cuts`` (mode "cut" only): afterwards, that many more cells with a tick every 2 ms
    whose connections are cut at a random moment (not just after a message arrived, so
    messages are in flight): counts outputs lost or duplicated.
    """
    proxy = CuttableProxy(server.port)
    purl = f"http://127.0.0.1:{proxy.port}{server.base_url}"
    kernel = routed_kernel(purl, server.token)
    n, dt, cut_at = 40, 0.05, 10
    state: dict[str, Any] = {"cut": None, "after": [], "dticks": []}

    def on_msg(t: float, msg: dict[str, Any]) -> None:
        tick = tick_of(msg)
        if tick is None:
            return
        state["dticks"].append(tick)
        if state["cut"] is None and tick == cut_at:
            state["cut"] = now()
            state["n"] = proxy.cut() if mode == "cut" else proxy.blackhole(down=mode == "down")
        elif state["cut"] is not None:
            state["after"].append(t)

    def losses(run: CellRun, dticks: list[int], count: int) -> tuple[list[int], list[int], int, bool]:
        ticks = ticks_seen(run)
        missing = sorted(set(range(count)) - set(ticks))
        dmissing = sorted(set(range(count)) - set(dticks))
        dups = len(ticks) - len(set(ticks)) + len(dticks) - len(set(dticks))
        return missing, dmissing, dups, ticks == sorted(ticks) and dticks == sorted(dticks)

    result: dict[str, Any] = {"hung": False}
    try:
        kernel.run_ok("pass")
        try:
            # the cell ends remotely ~1.5 s after the break; the package re-opens the websocket within
            # seconds in every mode, so a reply that has not come after 15 s is not coming
            run = kernel.run(TICK_CELL.format(n=n, dt=dt), on_msg=on_msg, timeout=15)
            missing, dmissing, dups, in_order = losses(run, state["dticks"], n)
            result.update(missing=missing, dmissing=dmissing, dups=dups, in_order=in_order,
                          status=run.reply.get("status"), ename=run.reply.get("ename", ""),
                          evalue=run.reply.get("evalue", ""), fail_after=run.t_end - state["cut"])
        except TimeoutError:
            result.update(hung=True, status="no reply within 15 s (hung)",
                          dmissing=sorted(set(range(n)) - set(state["dticks"])))
        result["next_msg"] = state["after"][0] - state["cut"] if state["after"] else float("nan")
        result["ws_reconnect"] = (proxy.ws_connects_after(state["cut"]) or [float("nan")])[0]
        if result["hung"]:
            result["after_cell"] = "not run (the local kernel is still inside the hung cell)"
        elif mode != "down":
            try:
                result["after_cell"] = kernel.run("1 + 1", timeout=15).reply.get("status")
            except TimeoutError:
                result["after_cell"] = "hung"
        result["random"] = []
        for _ in range(random_cuts if mode == "cut" else 0):
            fast_n, seen, done = 300, [], threading.Event()

            def cut_later() -> None:
                if done.wait(0.2 + 0.3 * (uuid.uuid4().int % 1000) / 1000):
                    return
                proxy.cut()

            def on_fast(t: float, msg: dict[str, Any]) -> None:
                tick = tick_of(msg)
                if tick is not None:
                    seen.append(tick)

            threading.Thread(target=cut_later, daemon=True).start()
            try:
                run = kernel.run(TICK_CELL.format(n=fast_n, dt=0.002), on_msg=on_fast, timeout=30)
                done.set()
                missing, dmissing, dups, in_order = losses(run, seen, fast_n)
                result["random"].append({"status": run.reply.get("status"), "missing": missing,
                                         "dmissing": dmissing, "dups": dups, "in_order": in_order})
            except TimeoutError:
                done.set()
                result["random"].append({"status": "hung", "missing": [], "dmissing": [], "dups": 0, "in_order": False})
    finally:
        kernel.stop()
        proxy.close()
    return result


def bench_death() -> dict[str, Any]:
    """SIGKILL a server's process group mid-cell; time until the routed cell fails."""
    root = temp_dir("bench-death-")
    server = LocalServer(root_dir=root, base_url=BASE_URL)
    server.start()
    kernel = routed_kernel(server.url, server.token)
    state: dict[str, Any] = {"kill": None}
    import psutil  # noqa: PLC0415  (jupyter_server depends on it)
    children: list[psutil.Process] = []

    def on_msg(t: float, msg: dict[str, Any]) -> None:
        if state["kill"] is None and tick_of(msg) == 5:
            children.extend(psutil.Process(server.process.pid).children(recursive=True))
            state["kill"] = now()
            server.kill()
            state["killed"] = now()

    try:
        kernel.run_ok("pass")
        run = kernel.run(TICK_CELL.format(n=600, dt=0.05), on_msg=on_msg, timeout=60)
        detect = run.t_end - state["kill"] if state["kill"] else float("nan")
        err_text = run.reply.get("evalue", "")
        ename = run.reply.get("ename", "")
        nxt = kernel.run("1 + 1", timeout=30)
        local = kernel.run("%%local\n21 * 2", timeout=30)
        local_out = [c["data"].get("text/plain") for _, k, c in local.outputs if k == "execute_result"]
        return {
            "detect": detect, "status": run.reply.get("status"), "ename": ename, "evalue": err_text,
            "next_seconds": nxt.seconds, "next_status": nxt.reply.get("status"), "next_evalue": nxt.reply.get("evalue", ""),
            "local_ok": local.reply.get("status") == "ok" and local_out == ["42"],
        }
    finally:
        kernel.stop()
        server.stop()
        for child in children:  # the server's kernels run in their own sessions: end them too
            with contextlib.suppress(psutil.Error):
                child.kill()


def bench_recovery(rep: Report, server: LocalServer, random_cuts: int, silent: bool) -> None:
    log("recovery: cut every proxied connection mid-cell")
    cut = bench_cut(server, "cut", random_cuts=random_cuts)
    rep.row("recovery", "(a) cut connections mid-cell: websocket re-opened (at proxy) after", ms(cut["ws_reconnect"]))
    rep.row("recovery", "(a) cut connections mid-cell: next output at the client after", ms(cut["next_msg"]))
    rep.row("recovery", "    cell status / stream+display ticks missing / dup / in order / next",
            f"{cut['status']} / {cut.get('missing')} {cut.get('dmissing')} / {cut.get('dups')} / "
            f"{cut.get('in_order')} / {cut.get('after_cell')}")
    lost = sum(len(r["missing"]) + len(r["dmissing"]) for r in cut["random"])
    dup = sum(r["dups"] for r in cut["random"])
    runs_lossy = sum(bool(r["missing"] or r["dmissing"]) for r in cut["random"])
    bad = [r["status"] for r in cut["random"] if r["status"] != "ok"]
    if cut["random"]:
        rep.row("recovery", f"(b) cut at a random moment, tick every 2 ms [n={len(cut['random'])}]",
                f"{runs_lossy} of {len(cut['random'])} cells lost output: {lost} lost, {dup} duplicated"
                + (f", statuses {bad}" if bad else ""))
        for r in cut["random"]:
            if r["missing"] or r["dmissing"] or r["dups"]:
                rep.row("recovery", "    lost ticks (stream / display_data)", f"{r['missing']} / {r['dmissing']}")
    rep.target(Target("recovery: reconnect after a drop <= 2 s", cut["next_msg"], 2.0,
                      f"next output {cut['next_msg'] * 1e3:.0f} ms after the cut (ticks every 50 ms); "
                      f"websocket back after {cut['ws_reconnect'] * 1e3:.0f} ms"))
    first_bad = len(cut.get("missing") or []) + len(cut.get("dmissing") or []) + (cut.get("dups") or 0)
    rep.target(Target("recovery: outputs lost+duplicated across cuts (count)",
                      first_bad + lost + dup + len(bad) + (0 if cut["status"] == "ok" else 1), 0,
                      f"cut after an arrival: {first_bad}; random-moment cuts: {lost} lost, {dup} dup in "
                      f"{len(cut['random'])} cells"))

    if silent:
        log("recovery: silent loss (proxy blackholes the live connections; new ones work)")
        bh = bench_cut(server, "blackhole")
        rep.row("recovery", "(c) silent loss (blackhole), info: websocket re-opened after", ms(bh["ws_reconnect"]))
        rep.row("recovery", "    next output at the client after", ms(bh["next_msg"]))
        rep.row("recovery", "    cell status / display ticks missing / next cell",
                f"{bh['status']} / {len(bh.get('dmissing') or [])} / {bh.get('after_cell')}")
        rep.target(Target("recovery (silent loss): cell ends (no hang), seconds", float("inf") if bh["hung"]
                          else bh["fail_after"], 30.0,
                          f"{bh['status']}; {len(bh.get('dmissing') or [])} display ticks lost; "
                          f"websocket back after {bh['ws_reconnect']:.2f} s"))
        log("recovery: network down for good (blackhole everything)")
        down = bench_cut(server, "down")
        rep.row("recovery", "(d) network down for good: routed cell failed after",
                "hung" if down["hung"] else ms(down["fail_after"]))
        rep.row("recovery", "    reply", f"{down['status']} {down.get('ename', '')}: {str(down.get('evalue', ''))[:100]}")
        rep.target(Target("recovery: network down for good detected <= 5 s", float("inf") if down["hung"]
                          else down["fail_after"], 5.0, f"{down['status']} {down.get('ename', '')}"))

    log("recovery: SIGKILL the server's process group mid-cell")
    death = bench_death()
    rep.row("recovery", "(e) server SIGKILLed mid-cell: routed cell failed after", ms(death["detect"]))
    rep.row("recovery", "    reply", f"{death['status']} {death['ename']}: {death['evalue'][:110]}")
    rep.row("recovery", "    next remote cell fails after", f"{ms(death['next_seconds'])} ({death['next_status']})")
    rep.row("recovery", "    %%local still works", str(death["local_ok"]))
    clear = death["status"] == "error" and "Lost the remote kernel" in death["evalue"]
    rep.target(Target("recovery: death detection <= 5 s", death["detect"], 5.0,
                      f"{death['detect'] * 1e3:.0f} ms; clear message: {clear}"))


# ---------------------------------------------------------------------------------------------


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy so far (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU time of this process and the children it has reaped (kernels, servers)."""
    import resource  # noqa: PLC0415
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def environment(rep: Report) -> None:
    def v(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"
    print("Environment")
    print(f"  python {platform.python_version()} ({sys.executable}) on {platform.platform()}")
    print(f"  CPUs {os.cpu_count()}; TCP_QUICKACK {'available' if QUICKACK is not None else 'NOT available'}")
    print("  " + ", ".join(f"{p} {v(p)}" for p in ("binder_autorun", "ipykernel", "ipython", "jupyter_server",
                                                    "jupyter_client", "websocket-client", "tornado", "pyzmq")))
    import binder_autorun  # noqa: PLC0415
    package = Path(binder_autorun.__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(package), "log", "-1", "--format=%h %cd", "--date=iso"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(package), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
        print(f"  package measured: {package} at {head or '?'}"
              + (f", with uncommitted changes in {', '.join(dirty)}" if dirty else ", clean"))
    except (OSError, subprocess.SubprocessError):
        print(f"  package measured: {package}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (~1 min)")
    parser.add_argument("-n", type=int, default=None, help="latency samples per mode (default 200, quick 50)")
    parser.add_argument("--only", choices=["latency", "bulk", "launch", "recovery"], action="append",
                        help="run only these sections (bulk needs latency's routed kernel: it starts one)")
    parser.add_argument("--no-silent", action="store_true", help="skip the silent-loss and network-down scenarios")
    args = parser.parse_args(argv)
    n = args.n or (50 if args.quick else 200)
    n_naive = 20 if args.quick else 50
    bulk_reps = 2 if args.quick else 3
    launch_reps = 5 if args.quick else 9
    sections = args.only or ["latency", "bulk", "launch", "recovery"]

    t_start = now()
    busy0, own0 = busy_cpu_seconds(), own_cpu_seconds()
    rep = Report()
    environment(rep)
    root = temp_dir("bench-root-")
    server = LocalServer(root_dir=root, base_url=BASE_URL)
    server.start()
    print(f"  jupyter_server at {server.url} (base_url {BASE_URL}); mode {'quick' if args.quick else 'full'}\n")
    print("Measurements")
    routed: LocalKernel | None = None
    try:
        for section in sections:
            try:
                if section == "latency":
                    routed = bench_latency(rep, server, n, n_naive)["routed_kernel"]
                elif section == "bulk":
                    if routed is None:
                        routed = routed_kernel(server.url, server.token)
                        routed.run_ok("pass")
                    bench_bulk(rep, server, routed, bulk_reps)
                elif section == "launch":
                    bench_launch(rep, server, launch_reps, rtt_reps=2 if args.quick else 5, one_way=0.020)
                elif section == "recovery":
                    bench_recovery(rep, server, random_cuts=3 if args.quick else 6, silent=not args.no_silent)
            except Exception:
                rep.note(f"section {section} crashed:\n{traceback.format_exc()}")
    finally:
        if routed is not None:
            routed.stop()
        server.stop()
        for path in _TEMP_DIRS:
            shutil.rmtree(path, ignore_errors=True)

    wall = now() - t_start
    foreign = max(0.0, (busy_cpu_seconds() - busy0) - (own_cpu_seconds() - own0))
    share = foreign / (wall * (os.cpu_count() or 1))
    print(f"\n  other processes on this machine used {foreign:.0f} CPU-s during the run "
          f"({share:.0%} of {os.cpu_count()} CPUs){'  << BUSY MACHINE: timings are noisy' if share > 0.15 else ''}")
    print("\nTargets (measured / limit)")
    for t in rep.targets:
        print(f"  {'PASS' if t.ok else 'FAIL'}  {t.name:<62} {t.measured:8.3f} / {t.limit:<5g}  {t.detail}")
    failed = sum(not t.ok for t in rep.targets)
    print(f"\ntargets: {len(rep.targets) - failed} PASS, {failed} FAIL; whole run {now() - t_start:.0f} s")
    if rep.notes:
        print("\nNotes")
        for note in rep.notes:
            print("  - " + note.replace("\n", "\n    "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
