"""Comms (issue 9): a widget's round trip, a burst of slider updates, a widget with a 10 MB buffer.

The frontend is ``tests/frontend_driver.Frontend`` (jupyter_client on a local ipykernel, every
IOPub message recorded with its arrival time), sending what a widget manager sends. Modes:
routed (the local kernel routes to the shared server), native (the same frontend and widget
on a plain local kernel), raw (the same messages over a minimal websocket client to a kernel
of the same server).

(a) round trip: the frontend sends an ipywidgets ``update`` of an IntSlider's value; the
    kernel's ``echo_update`` comes back. Target: median routed <= 1.3 x (native + raw).
(b) burst: 600 updates sent at once (a 10 s drag at 60 Hz); an observer records them
    remotely: all delivered, in order; time to drain (until the kernel is idle after the
    last one), routed vs native vs raw.
(c) an ``ipywidgets.Image`` with a 10 MB value, displayed: time until the frontend has the
    comm_open with the buffer. Target: routed <= 1.5 x max(native, raw).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness import (TOKEN_ENV, Context, RawKernelWS, Target, WireMsg, log, median, ms, now, rest, start_remote_kernel,
                     state_env, temp_dir)
from tests.frontend_driver import Frontend

SLIDER_CELL = """\
import ipywidgets
seen = []
slider = ipywidgets.IntSlider(max=10**9)
slider.observe(lambda change: seen.append(change['new']), 'value')
print(slider.model_id)
"""
BURST = 600
IMAGE_BYTES = 10_000_000
IMAGE_SETUP = f"import os\nfrom IPython.display import display\nimage_data = os.urandom({IMAGE_BYTES})\n"
IMAGE_CELL = "image = ipywidgets.Image(value=image_data, format='png')\ndisplay(image)\n"


def update(comm_id: str, value: int) -> dict[str, Any]:
    """The comm_msg content a widget manager sends when a slider moves."""
    return {"comm_id": comm_id, "data": {"method": "update", "state": {"value": value}, "buffer_paths": []}}


def burst_check(text: str) -> str:
    """'complete' if the remote observer saw the burst complete and in order."""
    return "complete" if text.strip() == "True" else f"remote observer: {text.strip()[:80]}"


BURST_CHECK = f"print(seen == list(range(1, {BURST + 1})) or (len(seen), seen[:3], seen[-3:]))"


class FrontendSide:
    """A widget frontend on a local kernel: native (``url`` None) or routed to ``url``."""

    def __init__(self, url: str | None, token: str) -> None:
        env = {TOKEN_ENV: token, **state_env()} if url else {}
        self.fe = Frontend(Path(temp_dir("bench-frontend-")), env=env)
        if url:
            self.cell("%load_ext binder_autorun")
            self.cell(f"%binder_on --url {url}")
        self.comm_id = self.cell(SLIDER_CELL).strip()

    def cell(self, code: str, timeout: float = 120) -> str:
        """Run ``code``; its stdout."""
        msg_id, reply = self.fe.execute(code, timeout=timeout)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"cell failed: {code[:60]!r}: {reply['content'].get('evalue')}")
        return self.fe.text(msg_id)

    def round_trip(self, value: int) -> float:
        """Seconds from sending an update to the echo_update's arrival (then waits for idle)."""
        t0 = time.monotonic()
        sent = self.fe.send("comm_msg", update(self.comm_id, value))
        echo = self.fe.wait_for(lambda m: self.fe.parent(m) == sent and m["msg_type"] == "comm_msg")
        self.fe.wait_idle(sent)
        return float(echo["received"] - t0)

    def burst(self) -> tuple[float, float]:
        """(seconds to send, seconds until idle after the last) for BURST updates 1..BURST."""
        self.cell("seen.clear()")
        t0 = time.monotonic()
        ids = [self.fe.send("comm_msg", update(self.comm_id, v)) for v in range(1, BURST + 1)]
        t_sent = time.monotonic()
        idle = self.fe.wait_for(lambda m: self.fe.parent(m) == ids[-1] and m["msg_type"] == "status"
                                and m["content"]["execution_state"] == "idle", timeout=300)
        return t_sent - t0, float(idle["received"] - t0)

    def image(self) -> tuple[float, int]:
        """Seconds from execute to the Image's comm_open (with its buffer); the buffer's size."""
        t0 = time.monotonic()
        msg_id = self.fe.kc.execute(IMAGE_CELL)
        opened = self.fe.wait_for(lambda m: self.fe.parent(m) == msg_id and m["msg_type"] == "comm_open"
                                  and m["content"]["data"]["state"].get("_model_name") == "ImageModel", timeout=120)
        self.fe.wait_idle(msg_id, timeout=120)
        return float(opened["received"] - t0), max((len(b) for b in opened["buffers"]), default=0)

    def forget(self) -> None:
        """Drop the recorded IOPub messages (the recorder keeps all; searches scan them)."""
        with self.fe._lock:
            self.fe.iopub.clear()

    def stop(self) -> None:
        self.fe.shutdown()


class RawSide:
    """The same slider and image on a kernel of the server, over the minimal websocket client."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.http = url, rest(url, token)
        self.kid = start_remote_kernel(self.http, url)
        self.ws = RawKernelWS(url, token, self.kid)
        self.comm_id = self.cell(SLIDER_CELL).strip()

    def cell(self, code: str) -> str:
        run = self.ws.execute(code)
        if run.reply.get("status") != "ok":
            raise RuntimeError(f"raw cell failed: {code[:60]!r}: {run.reply.get('evalue')}")
        return run.stream_text()

    def round_trip(self, value: int) -> float:
        t0 = now()
        sent = self.ws.send("comm_msg", update(self.comm_id, value))
        echo = self.ws.wait(lambda m: m.parent_id == sent and m.msg_type == "comm_msg")
        self.ws.wait_idle(sent)
        return echo.t - t0

    def burst(self) -> tuple[float, float]:
        self.cell("seen.clear()")
        t0 = now()
        ids = [self.ws.send("comm_msg", update(self.comm_id, v)) for v in range(1, BURST + 1)]
        t_sent = now()
        idle = self.ws.wait_idle(ids[-1])
        return t_sent - t0, idle.t - t0

    def image(self) -> tuple[float, int]:
        opened: list[WireMsg] = []

        def on_msg(m: WireMsg) -> None:
            if m.msg_type == "comm_open" and m.content["data"]["state"].get("_model_name") == "ImageModel":
                opened.append(m)

        t0 = now()
        self.ws.execute(IMAGE_CELL, keep_outputs=False, on_msg=on_msg)
        return opened[0].t - t0, max((len(b) for b in opened[0].buffers), default=0)

    def forget(self) -> None:
        pass

    def stop(self) -> None:
        self.ws.close()
        self.http.delete(self.url + f"api/kernels/{self.kid}", timeout=30)


Side = FrontendSide | RawSide


def round_trips(sides: dict[str, Side], n: int) -> dict[str, list[float]]:
    """``n`` interleaved comm round trips per side (who goes first rotates)."""
    res: dict[str, list[float]] = {k: [] for k in sides}
    order = list(sides)
    for side in sides.values():
        for i in range(5):  # warm-up
            side.round_trip(10**8 + i)
    for i in range(n):
        for key in order[i % len(order):] + order[:i % len(order)]:
            res[key].append(sides[key].round_trip(i + 1000))
    for side in sides.values():
        side.forget()
    return res


def run(ctx: Context) -> None:
    """Measure (a) comm round trip, (b) a burst of 600 updates, (c) a 10 MB widget buffer."""
    rep, url, token = ctx.rep, ctx.server.url, ctx.server.token
    n = 20 if ctx.quick else 60
    reps = 2 if ctx.quick else 3
    log("comms: native frontend, routed frontend and raw websocket client, each with an IntSlider")
    sides: dict[str, Side] = {}
    try:
        sides["native"] = FrontendSide(None, token)
        sides["raw"] = RawSide(url, token)
        sides["routed"] = FrontendSide(url, token)

        log(f"comms: (a) {n} interleaved round trips per mode")
        rt = round_trips(sides, n)

        log(f"comms: (b) a burst of {BURST} updates per mode")
        bursts: dict[str, tuple[float, float, str]] = {}
        for key, side in sides.items():
            sent, drain = side.burst()
            bursts[key] = (sent, drain, burst_check(side.cell(BURST_CHECK)))
            side.forget()

        log(f"comms: (c) an Image widget with a {IMAGE_BYTES / 1e6:.0f} MB buffer, {reps} rounds")
        images: dict[str, list[float]] = {k: [] for k in sides}
        sizes: dict[str, int] = {}
        for side in sides.values():
            side.cell(IMAGE_SETUP)
        for _ in range(reps):
            for key, side in sides.items():
                seconds, size = side.image()
                images[key].append(seconds)
                sizes[key] = min(sizes.get(key, size), size)
                side.forget()
    finally:
        for side in sides.values():
            side.stop()

    for key, label in (("native", "(b) native local kernel"), ("raw", "(c) raw websocket"), ("routed", "(a) routed")):
        xs = rt[key]
        rep.row("comms", f"round trip update -> echo_update, {label} [n={len(xs)}]",
                f"median {ms(median(xs))}  min {ms(min(xs))}")
    base = median(rt["native"]) + median(rt["raw"])
    rep.target(Target("comms: round trip routed <= 1.3 x (native + raw)", median(rt["routed"]) / base, 1.3,
                      f"routed {median(rt['routed']) * 1e3:.2f} ms vs native {median(rt['native']) * 1e3:.2f} + "
                      f"raw {median(rt['raw']) * 1e3:.2f} = {base * 1e3:.2f} ms"))
    for key in ("native", "raw", "routed"):
        sent, drain, status = bursts[key]
        rep.row("comms", f"burst of {BURST} updates, {key}: sent in / drained after",
                f"{ms(sent)} / {ms(drain)} = {ms(drain / BURST)} per update; {status}")
    rep.row("comms", "burst drain: routed / native, routed / raw",
            f"{bursts['routed'][1] / bursts['native'][1]:.2f} x, {bursts['routed'][1] / bursts['raw'][1]:.2f} x")
    rep.target(Target(f"comms: burst of {BURST} updates delivered in order (0 = all)",
                      0.0 if bursts["routed"][2] == "complete" else 1.0, 0.0,
                      f"{bursts['routed'][2]}; drained after {bursts['routed'][1]:.2f} s "
                      f"(native {bursts['native'][1]:.2f} s, raw {bursts['raw'][1]:.2f} s)"))
    for key, label in (("native", "(b) native local kernel"), ("raw", "(c) raw websocket"), ("routed", "(a) routed")):
        xs = images[key]
        rep.row("comms", f"Image with {IMAGE_BYTES / 1e6:.0f} MB buffer -> comm_open, {label} [n={len(xs)}]",
                f"median {ms(median(xs))}  min {ms(min(xs))}  buffer {sizes[key]:,} bytes")
    base = max(median(images["native"]), median(images["raw"]))
    ok = sizes["routed"] == IMAGE_BYTES
    rep.target(Target("comms: 10 MB buffer routed <= 1.5 x max(native, raw)",
                      median(images["routed"]) / base if ok else float("inf"), 1.5,
                      f"routed {median(images['routed']):.3f} s vs max(native {median(images['native']):.3f}, "
                      f"raw {median(images['raw']):.3f}) s" + ("" if ok else f"; buffer {sizes['routed']} bytes")))
