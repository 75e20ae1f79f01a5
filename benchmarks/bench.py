#!/usr/bin/env python
"""binder_autorun benchmark: every measure, or the ones named, in one run.

    python benchmarks/bench.py                      # all measures (~5 min)
    python benchmarks/bench.py --quick              # fewer repetitions
    python benchmarks/bench.py comms far            # some measures only

Everything runs on loopback: a real jupyter_server (``LocalServer`` with a Binder-like
``base_url``), real local ipykernels driven by jupyter_client (and nbclient), and an
independent minimal websocket client as the "what the wire costs" baseline. One module
per measure (latency, sync_latency, bulk, small_messages, comms, far, launch, transfer,
many_files, recovery), sharing
``harness.py``. The exit status is 0 whatever the results: read the PASS/FAIL lines.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the checkout (benchmarks/, tests/)

from harness import (BASE_URL, Context, LocalServer, Report, busy_cpu_seconds, environment, now,  # noqa: E402
                     own_cpu_seconds, remove_temp_dirs, temp_dir, uptime)

MEASURES = ["latency", "sync_latency", "bulk", "small_messages", "comms", "far", "launch", "transfer", "many_files", "recovery"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("measures", nargs="*", metavar="measure",
                        help=f"measures to run (default all): {', '.join(MEASURES)}")
    parser.add_argument("--only", choices=MEASURES, action="append", default=[], help="same as naming a measure")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("-n", type=int, default=None, help="latency samples per mode (default 200, quick 50)")
    parser.add_argument("--no-silent", action="store_true", help="recovery: skip the silent-loss and network-down scenarios")
    parser.add_argument("--no-profile", action="store_true", help="small_messages: skip profiling the routing kernel")
    args = parser.parse_args(argv)
    chosen = set(args.measures) | set(args.only)
    if chosen - set(MEASURES):
        parser.error(f"unknown measure(s) {', '.join(sorted(chosen - set(MEASURES)))}; choose from {', '.join(MEASURES)}")
    measures = [m for m in MEASURES if m in chosen] or MEASURES

    t_start = now()
    busy0, own0 = busy_cpu_seconds(), own_cpu_seconds()
    rep = Report()
    environment()
    server = LocalServer(root_dir=temp_dir("bench-root-"), base_url=BASE_URL)
    server.start()
    print(f"  jupyter_server at {server.url} (base_url {BASE_URL}); mode {'quick' if args.quick else 'full'}; "
          f"{uptime()}\n")
    print("Measurements")
    ctx = Context(rep, server, args.quick, args)
    try:
        for name in measures:
            try:
                importlib.import_module(name).run(ctx)
                rep.row(name, "after this measure", uptime())
            except Exception:
                rep.note(f"measure {name} crashed:\n{traceback.format_exc()}")
    finally:
        ctx.close()
        server.stop()
        remove_temp_dirs()

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
