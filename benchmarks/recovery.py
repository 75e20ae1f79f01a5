"""Recovery: cut / silently lost / downed connections and a killed server, mid-cell (issue 5).

Targets: reconnect after cut connections <= 2 s with nothing lost or duplicated; no hang on
silent loss; network down for good and server death detected (cell fails) <= 5 s.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from typing import Any

from binder_autorun.launch import LocalServer

from harness import BASE_URL, CellRun, Context, CuttableProxy, Report, Target, log, ms, now, routed_kernel, temp_dir


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


def run(ctx: Context) -> None:
    """Measure recovery from broken connections and a dead server."""
    bench_recovery(ctx.rep, ctx.server, random_cuts=3 if ctx.quick else 6, silent=not ctx.options.no_silent)
