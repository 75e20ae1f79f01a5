"""Shared harness of the benchmark measures: servers, kernels, clients, proxy, reporting.

A measure module (latency, bulk, ...) gets a :class:`Context` with the shared
jupyter_server and the :class:`Report`; the pieces here are what they share:

- :class:`LocalKernel`: a real local ipykernel driven through jupyter_client (a light frontend);
- :class:`RawKernelWS`: an independent minimal kernel websocket client (*not* the package's
  channel), the "what the wire costs" baseline;
- :class:`CuttableProxy`: a TCP proxy that can cut, blackhole, delay and record connections;
- statistics, :class:`Target` / :class:`Report` and the environment lines.

Nothing here writes into the checkout: every file goes to a temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import queue
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import requests
import websocket
import zmq
from jupyter_client import KernelManager

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the package and tests/ of this checkout

from binder_autorun.launch import LocalServer  # noqa: E402

BASE_URL = "/user/bench/"
TOKEN_ENV = "BINDER_AUTORUN_TOKEN"
V1 = "v1.kernel.websocket.jupyter.org"
QUICKACK = getattr(socket, "TCP_QUICKACK", None)

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
        self.km.start_kernel(env=dict(os.environ, **(env or {})), cwd=cwd or _KERNEL_CWD)
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


def remove_temp_dirs() -> None:
    """Remove every directory :func:`temp_dir` made."""
    while _TEMP_DIRS:
        shutil.rmtree(_TEMP_DIRS.pop(), ignore_errors=True)


_STATE_DIR = temp_dir("bench-state-")
_KERNEL_CWD = temp_dir("bench-cwd-")  # kernels never run in (and write into) the checkout


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


def v1_encode(channel: str, header: dict, parent: dict, metadata_: dict, content: dict,
              buffers: list[bytes] | None = None) -> bytes:
    parts = [channel.encode()] + [json.dumps(p).encode() for p in (header, parent, metadata_, content)]
    parts += list(buffers or [])
    offsets = [8 * (1 + 1 + len(parts))]
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


@dataclass
class WireMsg:
    """One kernel message as the raw client received it (``t``: perf_counter at arrival)."""

    channel: str
    header: dict[str, Any]
    parent: dict[str, Any]
    content: dict[str, Any]
    buffers: list[memoryview]
    t: float

    @property
    def msg_type(self) -> str:
        return str(self.header["msg_type"])

    @property
    def parent_id(self) -> str | None:
        return self.parent.get("msg_id")


def v1_decode(frame: bytes) -> WireMsg:
    (n,) = struct.unpack_from("<Q", frame, 0)
    offs = struct.unpack_from(f"<{n}Q", frame, 8)
    mv = memoryview(frame)
    channel = bytes(mv[offs[0]:offs[1]]).decode()
    header = json.loads(bytes(mv[offs[1]:offs[2]]))
    parent = json.loads(bytes(mv[offs[2]:offs[3]]))
    content = json.loads(bytes(mv[offs[4]:offs[5]]))
    ends = list(offs[5:]) + [len(frame)]
    buffers = [mv[a:b] for a, b in zip(ends, ends[1:])]
    return WireMsg(channel, header, parent, content, buffers, now())


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

    def send(self, msg_type: str, content: dict[str, Any], channel: str = "shell",
             buffers: list[bytes] | None = None) -> str:
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": msg_type, "username": "bench", "session": self.session,
                  "date": datetime.now(timezone.utc).isoformat(), "version": "5.3"}
        self.ws.send(v1_encode(channel, header, {}, {}, content, buffers), websocket.ABNF.OPCODE_BINARY)
        return msg_id

    def recv(self) -> WireMsg:
        if self.quickack:
            self.ws.sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        opcode, data = self.ws.recv_data()
        if opcode != websocket.ABNF.OPCODE_BINARY:
            raise RuntimeError(f"unexpected websocket opcode {opcode}")
        return v1_decode(data)

    def wait(self, predicate: Callable[[WireMsg], bool]) -> WireMsg:
        """Read until a message matches ``predicate`` (the others are dropped)."""
        while True:
            msg = self.recv()
            if predicate(msg):
                return msg

    def wait_idle(self, msg_id: str) -> WireMsg:
        """Until the kernel is idle after handling ``msg_id``."""
        return self.wait(lambda m: m.parent_id == msg_id and m.msg_type == "status"
                         and m.content.get("execution_state") == "idle")

    def execute(self, code: str, keep_outputs: bool = True, on_msg: Callable[[WireMsg], None] | None = None,
                timeout: float = 600.0) -> CellRun:
        """Run ``code``; TimeoutError if its reply and idle are not in after ``timeout`` s."""
        t0 = now()
        msg_id = self.send("execute_request", {"code": code, "silent": False, "store_history": True,
                                               "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        reply = None
        idle = False
        outputs: list[tuple[float, str, dict[str, Any]]] = []
        while reply is None or not idle:
            if now() - t0 > timeout:  # the server's pings keep recv() from timing out by itself
                raise TimeoutError(f"raw cell did not finish within {timeout:g} s: {code[:60]!r}")
            msg = self.recv()
            if msg.parent_id != msg_id:
                continue
            kind = msg.msg_type
            if on_msg is not None:
                on_msg(msg)
            if msg.channel == "shell" and kind == "execute_reply":
                reply = msg.content
            elif msg.channel == "iopub":
                if kind == "status":
                    idle = idle or msg.content.get("execution_state") == "idle"
                elif kind != "execute_input" and keep_outputs:
                    outputs.append((msg.t, kind, msg.content))
        t1 = now()
        return CellRun(t1 - t0, reply, outputs, t1)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close(timeout=1)


# ---------------------------------------------------------------------------------------------
# A cuttable TCP proxy (thread-based socket forwarder)


@dataclass
class Conversation:
    """What one operation cost on the proxied link (see :meth:`CuttableProxy.conversation`)."""

    round_trips: int
    connections: int
    server_seconds: float


class CuttableProxy:
    """Forwards 127.0.0.1:port -> 127.0.0.1:target_port; ``cut()`` closes every live connection.

    ``blackhole()`` instead makes existing connections silently drop all data (a network that
    vanished without a reset); new connections forward normally. ``delay`` (seconds, one way)
    holds every chunk that long before forwarding it (pure propagation delay: chunks are not
    serialized behind each other; TCP handshakes themselves are not delayed).

    Every chunk is recorded as (time it reached the proxy, connection, from the client?, bytes):
    :meth:`conversation` counts the turns of a conversation from them.
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
        self.records: list[tuple[float, int, bool, int]] = []  # (time, connection, from client, bytes)
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

    def _chunks(self, key: int, src: socket.socket, from_client: bool) -> Iterator[bytes]:
        """What ``src`` sends, chunk by chunk (recorded), ACKed at once (QUICKACK), until it closes."""
        while True:
            try:
                if QUICKACK is not None:
                    src.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
                data = src.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            self.records.append((now(), key, from_client, len(data)))
            yield data

    def _pump(self, key: int, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        if self.delay > 0:
            self._pump_delayed(key, src, dst, from_client)
            return
        first = from_client
        for data in self._chunks(key, src, from_client):
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

    def _pump_delayed(self, key: int, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
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
        first = from_client
        for data in self._chunks(key, src, from_client):
            if first:
                self.accepted.append((now(), data[:120]))
                first = False
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

    def conversation(self, t0: float, t1: float) -> Conversation:
        """Round trips, connections opened and server time between ``t0`` and ``t1``.

        A round trip is a turn of the conversation: data from the server that follows data
        from the client (chunks ordered by when they reached the proxy). The server's time
        in a turn runs from the client's last chunk to the server's last chunk before the
        client speaks again, less the one-way delay: a kernel answering a handshake sends its
        replies and its status in separate chunks over tens of milliseconds, and the client
        waits for all of them. A new connection's TCP handshake is not delayed here; on a real
        far link each costs one more RTT.
        """
        turns, server = 0, 0.0
        asked: float | None = None
        answered: float | None = None
        for t, _, from_client, _ in sorted(r for r in list(self.records) if t0 <= r[0] <= t1):
            if from_client:
                if answered is not None:
                    assert asked is not None
                    server += max(0.0, answered - asked - self.delay)
                    answered = None
                asked = t
            elif asked is not None:
                turns += answered is None
                answered = t
        if asked is not None and answered is not None:
            server += max(0.0, answered - asked - self.delay)
        return Conversation(turns, sum(t0 <= t <= t1 for t, _ in self.accepted), server)

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


@dataclass
class Context:
    """What every measure gets: the report, the shared server (``/user/bench/``) and the options."""

    rep: Report
    server: LocalServer
    quick: bool
    options: Any
    _routed: LocalKernel | None = None

    def routed(self) -> LocalKernel:
        """A routed kernel on the shared server, started on first use and shared between measures."""
        if self._routed is None:
            self._routed = routed_kernel(self.server.url, self.server.token)
            self._routed.run_ok("pass")
        return self._routed

    def close(self) -> None:
        if self._routed is not None:
            self._routed.stop()
            self._routed = None


def uptime() -> str:
    """The load averages (other engineers' test runs share the 2 cores)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def ratio(routed: float, base: float) -> str:
    """``routed / base`` as a printable ratio."""
    return f"{routed / base:.2f} x" if base > 0 else "n/a"


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


def environment() -> None:
    """Print versions, CPUs and which package (at which commit) is measured."""
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

