"""Many small messages (issue 8 item 16): thousands of tiny outputs, routed vs native vs raw.

Three cells, each timed routed (a local kernel with the extension), native (a local kernel)
and as raw websocket transfer of the same messages from a kernel of the server:

- 3,000 ``display()`` calls (display_data),
- 2,000 updates of one display (update_display_data),
- 20,000 separate prints, flushed each (one stream message each).

Both frontends: a light jupyter_client one (``harness.LocalKernel``) and nbclient (whose own
per-output work competes for the 2 cores). Target per cell and frontend: routed <= 1.5 x
max(native, raw). Outputs are checked complete in every mode.

With nbclient as the frontend, the CPU time of every process taking part is measured per
run (nbclient, the local kernel, and for a routed cell jupyter_server and the remote
kernels): on a machine with fewer cores than busy processes the routed cell's time is about
their sum over the cores, so the report says what of it is the routing kernel's (ours), and
what the cell could take at best on these cores if that part were free.

The server of this measure lifts the IOPub rate limits (a default server drops messages
above 1000 msg/s; that would measure the limiter, not the routing). While a routed cell
runs once more, py-spy (if installed: ``pip install py-spy``, or set ``PY_SPY``) samples
the routing kernel's threads while they hold the GIL (CPU in Python, not waits); the report
lists where that time goes, per remote message. nbclient waits for every output
(``iopub_timeout`` raised: by default it stops listening 4 s after the reply).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import nbformat
import psutil
from nbclient import NotebookClient

from binder_autorun.launch import LocalServer

from harness import (BASE_URL, REPO, TOKEN_ENV, CellRun, Context, LocalKernel, RawKernelWS, Target, log, median, now, rest,
                     routed_kernel, start_remote_kernel, state_env, temp_dir)


@dataclass
class Shape:
    """One cell of many small outputs, and how to tell its output is complete."""

    key: str
    label: str
    code: str
    messages: int

    def check(self, outputs: list[tuple[str, dict[str, Any]]]) -> str:
        """'complete', or what is wrong with (msg_type, content) outputs (nbformat or messages)."""
        kinds = Counter(kind for kind, _ in outputs)
        if self.key == "display":
            texts = [c["data"].get("text/plain") for k, c in outputs if k == "display_data"]
            return "complete" if texts == [str(i) for i in range(self.messages)] else f"{len(texts)} displays"
        if self.key == "update":
            last = [c["data"].get("text/plain") for k, c in outputs if k in ("display_data", "update_display_data")]
            ok = last[-1:] == [str(self.messages - 1)] and kinds["update_display_data"] in (0, self.messages)
            return "complete" if ok else f"{kinds['update_display_data']} updates, last {last[-1:]}"
        text = "".join(c["text"] for k, c in outputs if k == "stream")
        want = "".join(f"{i}\n" for i in range(self.messages))
        return "complete" if text == want else f"{text.count(chr(10))} lines"


SHAPES = [
    Shape("display", "3,000 display() calls", "from IPython.display import display\n"
          "for i in range(3000):\n    display(i)\n", 3000),
    Shape("update", "2,000 display updates", "from IPython.display import display\n"
          "h = display('start', display_id=True)\nfor i in range(2000):\n    h.update(i)\n", 2000),
    Shape("print", "20,000 prints (flush each)", "for i in range(20000):\n    print(i, flush=True)\n", 20000),
]


def _messages(run: CellRun) -> list[tuple[str, dict[str, Any]]]:
    return [(kind, content) for _, kind, content in run.outputs]


class NbclientFrontend:
    """nbclient executing cells one by one into a notebook, as ``jupyter execute`` would."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.nb = nbformat.v4.new_notebook()
        self.client = NotebookClient(self.nb, kernel_name="python3", timeout=600, iopub_timeout=600,
                                     resources={"metadata": {"path": temp_dir("bench-nb-")}})
        self._kernel = self.client.setup_kernel(env=dict(os.environ, **(env or {})))
        self._kernel.__enter__()

    def run(self, code: str) -> tuple[float, list[tuple[str, dict[str, Any]]]]:
        """Seconds to execute ``code`` as a new cell, and its outputs as (msg_type, content)."""
        cell = nbformat.v4.new_code_cell(code)
        self.nb.cells.append(cell)
        t0 = now()
        self.client.execute_cell(cell, len(self.nb.cells) - 1)
        seconds = now() - t0
        outputs = []
        for out in cell.outputs:
            kind = out["output_type"]
            if kind == "stream":
                outputs.append(("stream", {"name": out["name"], "text": out["text"]}))
            elif kind in ("display_data", "execute_result"):
                outputs.append((kind, {"data": dict(out["data"])}))
        cell.outputs = []  # keep the notebook small between repetitions
        return seconds, outputs

    @property
    def kernel_pid(self) -> int:
        return int(self.client.km.provisioner.pid)  # type: ignore[union-attr]

    def stop(self) -> None:
        self._kernel.__exit__(None, None, None)


def nbclient_routed(url: str, token: str) -> NbclientFrontend:
    """An nbclient whose kernel routes to ``url``."""
    frontend = NbclientFrontend(env={TOKEN_ENV: token, **state_env()})
    for code in ("%load_ext binder_autorun", f"%binder_on --url {url}", "pass"):
        frontend.run(code)
    return frontend


def cpu_seconds(processes: dict[str, Callable[[], list[psutil.Process]]]) -> dict[str, float]:
    """User + system CPU seconds so far, summed per named group of processes."""
    out = {}
    for name, group in processes.items():
        total = 0.0
        for proc in group():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        out[name] = total
    return out


# -- profiling the routing kernel ------------------------------------------------------------------

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::\d+)?\)$")
#: frames worth naming in the inclusive list (the rest is generic machinery)
OURS = re.compile(r"binder_autorun/|IPython/core/(display|displaypub|formatters)|ipykernel/(iostream|displayhook|zmqshell)"
                  r"|jupyter_client/session|websocket/|json/|zmq/")


def py_spy() -> str | None:
    return os.environ.get("PY_SPY") or shutil.which("py-spy")


def profile_routed(kernel: LocalKernel, shape: Shape, rate: int = 250) -> dict[str, Any] | None:
    """Run ``shape`` routed once more while py-spy samples the routing kernel (all threads)."""
    exe = py_spy()
    if exe is None:
        return None
    out = os.path.join(temp_dir("bench-pyspy-"), "stacks.txt")
    proc = subprocess.Popen([exe, "record", "--pid", str(kernel.pid), "--rate", str(rate), "--format", "raw",
                             "--threads", "--gil", "--nonblocking", "--full-filenames", "-o", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        t_start = now()
        while now() - t_start < 0.5:  # py-spy attaches before the cell starts
            if proc.poll() is not None:
                return {"error": proc.stderr.read().decode(errors="replace")[-300:] if proc.stderr else "failed"}
            kernel.run("pass")
        run = kernel.run(shape.code, keep_outputs=False)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    if not os.path.exists(out):
        return {"error": "py-spy wrote no samples"}
    return {"stacks": parse_stacks(out), "seconds": run.seconds, "rate": rate}


def parse_stacks(path: str) -> dict[str, Any]:
    """Self and inclusive sample counts per function, samples per thread, from py-spy's raw output."""
    self_: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, count_s = line.rstrip("\n").rpartition(" ")
            if not stack or not count_s.isdigit():
                continue
            count = int(count_s)
            thread, *frames = stack.split(";")
            names = []
            for frame in frames:
                m = FRAME.match(frame)
                names.append(f"{m['func']} ({_short(m['file'])})" if m else frame)
            total += count
            threads[thread.split(": ", 1)[-1]] += count
            if names:
                self_[names[-1]] += count
            for name in set(names):
                incl[name] += count
    return {"self": self_, "incl": incl, "threads": threads, "total": total}


def _short(path: str) -> str:
    """A frame's file without its installation or checkout prefix."""
    return re.sub(r"^.*(site-packages|/lib/python3\.\d+)/", "", path.replace(str(REPO) + "/", ""))


# -- the measure -----------------------------------------------------------------------------------------


def run(ctx: Context) -> None:
    """Time the three shapes in every mode and frontend; profile the routing kernel."""
    rep = ctx.rep
    profiles: dict[str, dict[str, Any] | None] = {}
    reps = 1 if ctx.quick else 3  # a 2-core machine is noisy: the median of three
    log("small messages: a server without IOPub rate limits, native/raw/routed kernels")
    server = LocalServer(root_dir=temp_dir("bench-small-"), base_url=BASE_URL, limit_rate=False)
    server.start()
    url, token = server.url, server.token
    http = rest(url, token)
    kid = start_remote_kernel(http, url)
    native = LocalKernel()
    routed = routed_kernel(url, token)
    nb_native: NbclientFrontend | None = None
    nb_routed: NbclientFrontend | None = None
    times: dict[tuple[str, str], list[float]] = {}
    status: dict[tuple[str, str], str] = {}
    cpu: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        nb_native = NbclientFrontend()
        nb_routed = nbclient_routed(url, token)
        nb_native.run("pass")
        me, server_proc = psutil.Process(), psutil.Process(server.process.pid)  # type: ignore[union-attr]
        native_kernel, routing_kernel = psutil.Process(nb_native.kernel_pid), psutil.Process(nb_routed.kernel_pid)
        groups: dict[str, dict[str, Callable[[], list[psutil.Process]]]] = {
            "nb native": {"kernel": lambda: [native_kernel], "nbclient": lambda: [me]},
            "nb routed": {"remote kernel": lambda: server_proc.children(recursive=True), "jupyter_server": lambda: [server_proc],
                          OURS_CPU: lambda: [routing_kernel], "nbclient": lambda: [me]},
        }
        modes: dict[str, Callable[[str], tuple[float, list[tuple[str, dict[str, Any]]]]]] = {
            "native": lambda code: _timed(native.run(code)),
            "raw": lambda code: raw_run(url, token, kid, code),
            "routed": lambda code: _timed(routed.run(code)),
            "nb native": nb_native.run,
            "nb routed": nb_routed.run,
        }
        for i in range(reps):
            for shape in SHAPES:
                log(f"small messages: {shape.label} ({i + 1}/{reps})")
                for mode, runner in modes.items():
                    before = cpu_seconds(groups.get(mode, {}))
                    seconds, outputs = runner(shape.code)
                    if mode in groups:
                        after = cpu_seconds(groups[mode])
                        cpu.setdefault((shape.key, mode), []).append({name: after[name] - before[name] for name in after})
                    times.setdefault((shape.key, mode), [])
                    if seconds == seconds:  # not NaN (a raw run that timed out)
                        times[(shape.key, mode)].append(seconds)
                    got = shape.check(outputs)
                    if status.get((shape.key, mode), "complete") == "complete":
                        status[(shape.key, mode)] = got
        if not ctx.options.no_profile:
            for shape in SHAPES:
                log(f"small messages: profiling the routing kernel on {shape.label}")
                profiles[shape.key] = profile_routed(routed, shape)
    finally:
        for frontend in (nb_native, nb_routed):
            if frontend is not None:
                frontend.stop()
        native.stop()
        routed.stop()
        http.delete(url + f"api/kernels/{kid}", timeout=30)
        server.stop()

    for shape in SHAPES:
        med = {mode: median(times[(shape.key, mode)]) for mode in ("native", "raw", "routed", "nb native", "nb routed")}
        for mode, label in (("native", "(b) native, light frontend"), ("raw", "(c) raw websocket transfer"),
                            ("routed", "(a) routed, light frontend"), ("nb native", "(b') native, nbclient"),
                            ("nb routed", "(a') routed, nbclient")):
            xs = times[(shape.key, mode)]
            rep.row("small", f"{shape.label}: {label} [n={len(xs)}]",
                    f"median {med[mode]:7.3f} s  min {min(xs, default=float('nan')):7.3f} s  {status[(shape.key, mode)]}")
        for client, routed_mode, native_mode in (("light", "routed", "native"), ("nbclient", "nb routed", "nb native")):
            base = max(med[native_mode], med["raw"])
            ok = status[(shape.key, routed_mode)] == "complete"
            rep.target(Target(f"small: {shape.key} x{shape.messages}, {client}: routed <= 1.5 x max(native, raw)",
                              med[routed_mode] / base if ok else float("inf"), 1.5,
                              f"routed {med[routed_mode]:.3f} s vs max(native {med[native_mode]:.3f}, raw {med['raw']:.3f}) s"
                              + ("" if ok else f"; output {status[(shape.key, routed_mode)]}")))
        report_cpu(ctx, shape, cpu, max(med["nb native"], med["raw"]))
    if ctx.options.no_profile:
        return
    if py_spy() is None:
        rep.note("small messages: py-spy not found (pip install py-spy, or set PY_SPY): no profile of the routing kernel")
        return
    for shape in SHAPES:
        report_profile(ctx, shape, profiles.get(shape.key))


#: the group of processes that is ours in the CPU split
OURS_CPU = "routing kernel (ours)"


def report_cpu(ctx: Context, shape: Shape, cpu: dict[tuple[str, str], list[dict[str, float]]], base: float) -> None:
    """CPU seconds per process with nbclient as the frontend (median per group), and what the
    routed cell can take at best on this machine's cores: with and without our part."""
    cores = os.cpu_count() or 1
    totals = {}
    for mode in ("nb native", "nb routed"):
        runs = cpu.get((shape.key, mode)) or []
        if not runs:
            return
        med = {name: median([run[name] for run in runs]) for name in runs[0]}
        totals[mode] = med
        parts = ", ".join(f"{name} {seconds:.2f}" + (f" = {seconds / shape.messages * 1e6:.0f} us a message" if name == OURS_CPU else "")
                          for name, seconds in med.items())
        ctx.rep.row("small", f"{shape.label}: CPU-s, {mode} [n={len(runs)}]", f"{parts}; sum {sum(med.values()):.2f}")
    routed = totals["nb routed"]
    whole, ours = sum(routed.values()), routed[OURS_CPU]
    ctx.rep.row("small", f"{shape.label}: routed nbclient, at best on {cores} CPUs",
                f"sum / CPUs = {whole / cores:.2f} s = {whole / cores / base:.2f} x max(native, raw); "
                f"without our {ours / whole:.0%} {(whole - ours) / cores / base:.2f} x")


def raw_run(url: str, token: str, kernel_id: str, code: str) -> tuple[float, list[tuple[str, dict[str, Any]]]]:
    """``code`` over a fresh raw websocket: an idle one misses the server's pings and is closed."""
    raw = RawKernelWS(url, token, kernel_id)
    try:
        raw.execute("pass")
        return _timed(raw.execute(code, timeout=180))
    except TimeoutError:
        return float("nan"), [("stream", {"name": "stdout", "text": "(timed out after 180 s)"})]
    finally:
        raw.close()


def _timed(run: CellRun) -> tuple[float, list[tuple[str, dict[str, Any]]]]:
    return run.seconds, _messages(run)


def report_profile(ctx: Context, shape: Shape, prof: dict[str, Any] | None) -> None:
    """Where the routing kernel's CPU went during ``shape``, in microseconds per remote message."""
    rep = ctx.rep
    if not prof or "error" in prof:
        rep.note(f"small messages: profiling {shape.label} failed: {prof and prof.get('error')}")
        return
    stacks, rate = prof["stacks"], prof["rate"]

    def us(samples: int) -> str:
        return f"{samples / rate / shape.messages * 1e6:7.1f} us/msg"

    busy = stacks["total"]
    rep.row("profile", f"{shape.label}: routing kernel CPU (py-spy, {rate} Hz)",
            f"{busy / rate:.2f} GIL-s in a {prof['seconds']:.2f} s cell = {us(busy)}")
    for thread, samples in stacks["threads"].most_common(4):
        rep.row("profile", f"  thread {thread[:50]}", f"{us(samples)}  ({samples / busy:.0%})")
    for name, samples in stacks["self"].most_common(8):
        rep.row("profile", f"  self  {name[:68]}", f"{us(samples)}  ({samples / busy:.0%})")
    shown = 0
    for name, samples in stacks["incl"].most_common():
        if OURS.search(name) and shown < 12:
            rep.row("profile", f"  incl  {name[:68]}", f"{us(samples)}  ({samples / busy:.0%})")
            shown += 1
