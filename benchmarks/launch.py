"""Launch: BinderHub stand-in ``ready`` / (url, token) -> first routed result (issue 5).

Target: <= 1.2 x (raw POST api/kernels + websocket connect + one execute); the same through
a proxy adding 40 ms RTT (info: extra round trips).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import requests

from binder_autorun.launch import LocalServer

from harness import (REPO, TOKEN_ENV, CellRun, Context, CuttableProxy, LocalKernel, RawKernelWS, Report, Target, log,
                     median, ms, now, rest, start_remote_kernel, state_env, temp_dir)


def load_standin() -> tuple[Any, str | None]:
    """The BinderHub stand-in of tests/ (another engineer's), or why it cannot be used."""
    if not (REPO / "tests" / "binderhub_standin.py").exists():
        return None, "tests/binderhub_standin.py does not exist"
    try:
        import binder_autorun.magics as magics_mod  # noqa: PLC0415
        if "--binderhub" not in Path(magics_mod.__file__).read_text():
            return None, "the package's %binder_on has no -r/--binderhub option"
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


def run(ctx: Context) -> None:
    """Measure launch times on loopback and through a 40 ms RTT proxy."""
    bench_launch(ctx.rep, ctx.server, 5 if ctx.quick else 9, rtt_reps=2 if ctx.quick else 5, one_way=0.020)
