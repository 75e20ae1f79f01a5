"""Latency: median ``pass`` cell, routed vs native local vs raw websocket (issue 3).

Target: routed <= 1.3 x (native local ``pass`` + raw websocket round trip with TCP_QUICKACK);
the raw round trip without QUICKACK shows the delayed-ACK trap (DESIGN.md §3).
"""

from __future__ import annotations

from typing import Callable

from harness import Context, LocalKernel, RawKernelWS, Report, Target, log, median, ms, pct, rest, start_remote_kernel


def bench_latency(rep: Report, ctx: Context, n: int, n_naive: int) -> dict[str, list[float]]:
    """Samples of the three modes are interleaved (a, b, c in turn), so a machine that gets busier
    or quieter during the run moves all three alike."""
    url, token = ctx.server.url, ctx.server.token
    warm = 20
    res: dict[str, list[float]] = {"native": [], "raw": [], "routed": []}

    log("latency: starting a native kernel, a raw websocket client and a routed kernel")
    native: LocalKernel = LocalKernel()
    http = rest(url, token)
    kid = start_remote_kernel(http, url)
    try:
        raw = RawKernelWS(url, token, kid, quickack=True)
        routed = ctx.routed()
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


def run(ctx: Context) -> None:
    """Measure ``pass`` latency (the routed kernel stays for the other measures)."""
    n = ctx.options.n or (50 if ctx.quick else 200)
    bench_latency(ctx.rep, ctx, n, 20 if ctx.quick else 50)
