"""Bulk: 100,000 printed lines + a 20 MB base64 image bundle, routed vs native vs raw (issue 4).

Targets: routed <= 1.5 x max(native, raw transfer), output complete; peak extra memory of
the routing kernel <= 4 x payload.
"""

from __future__ import annotations

from typing import Any

from binder_autorun.launch import LocalServer

from harness import (CellRun, Context, LocalKernel, RawKernelWS, Report, Target, log, median, reset_hwm, rest,
                     start_remote_kernel, vm_status)

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


def run(ctx: Context) -> None:
    """Measure the bulk cell on the shared routed kernel."""
    bench_bulk(ctx.rep, ctx.server, ctx.routed(), 2 if ctx.quick else 3)
