"""The tables of `bench.py --peers`, `--scaling`, `--import-time`, `--client` and `--e2e`, from the subjects' results.

Printing only: the figures come from the subjects' processes (`worker.py`); the targets they are
checked against are in `targets.py`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import e2e
import peers
from harness import Plan
from instrumented import LABELS as CLIENT_LABELS
from instrumented import SUBJECTS as CLIENT_SUBJECTS
from instrumented import WORKLOADS as CLIENT_WORKLOADS
from instrumented import ClientPlan
from instrumented import added as client_added
from subjects import DISABLED, LABELS, PEERS, WORKLOADS

Results = dict[str, dict[str, Any]]


def fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "-"
    return f"{ns:,.0f}" if ns >= 100 else f"{ns:.1f}"


def fmt_x(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:,.0f}x" if r >= 100 else f"{r:.2f}x" if r < 10 else f"{r:.1f}x"


def fmt_mb(b: float | None) -> str:
    return "-" if b is None else f"{b / 1e6:+,.1f} MB"


def workload(results: Results, subject: str, key: str) -> dict[str, Any] | None:
    """One subject's figures for one workload, or None."""
    return results.get(subject, {}).get("workloads", {}).get(key)  # type: ignore[no-any-return]


def ns_of(results: Results, subject: str, key: str) -> float | None:
    w = workload(results, subject, key)
    return None if w is None else w.get("ns")


def with_finish(r: dict[str, Any]) -> float:
    """A scaling point's (loop + finish()) / calls."""
    return float(r["ns"] + r["finish_s"] * 1e9 / r["calls"])


def _header(text: str) -> None:
    print(text)
    print("-" * len(text))


def _ran(
    results: Results, names: list[str], indent: str = "", width: int | None = None
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(name, label, result) of each of `names` that ran, in that order. A skipped subject is printed as
    `label skipped: reason`, its label in a column of `width` (without a width it is left out)."""
    for name in names:
        r = results.get(name)
        if r is None:
            continue
        shown = LABELS.get(name, name)
        if "skipped" in r:
            if width is not None:
                print(f"{indent}{shown:<{width}} skipped: {r['skipped']}")
            continue
        yield name, shown, r


def _points(results: Results, prefix: str, width: int | None = None) -> Iterator[dict[str, Any]]:
    """The scaling points named `prefix`N that ran; a skipped one is printed as `N skipped: reason`,
    N right-aligned in `width` (without a width it is left out)."""
    for name, r in results.items():
        if not name.startswith(prefix):
            continue
        if "skipped" in r:
            if width is not None:
                print(f"{name.removeprefix(prefix):>{width}} skipped: {r['skipped']}")
            continue
        yield r


# --- --peers ------------------------------------------------------------------------------------------------


def print_peers(results: Results, plan: Plan) -> None:
    print("peers: the same workloads for each subject, one process per subject, one after the other")
    print(
        f"figure = ns per call, the lowest of {plan.rounds} round medians ({plan.blocks} interleaved blocks of "
        f"~{plan.block_s * 1000:.0f} ms per round);"
    )
    print("caller-visible time: a subject's background threads share the 2 cores and the GIL with the caller")
    print("x min = / the hand-written minimum on the same workload; x tracked = / tracked on the same workload")
    print()
    _header(f"{'workload / subject':<34} {'ns/call':>14} {'x min':>8} {'x tracked':>10} {'noise':>6}")
    for key, label in WORKLOADS:
        print(label)
        base = ns_of(results, "minimum", key)
        ours = ns_of(results, "tracked", key)
        for name, shown, r in _ran(results, PEERS, "  ", 32):
            w = r.get("workloads", {}).get(key)
            if w is None:
                if key == "experiment" and name != "minimum":
                    print(f"  {shown:<32} {'-':>14}   (no equivalent: tracked's experiments only)")
                continue
            ns = w["ns"]
            noise = f"{w['noise'] * 100:.0f}%" if w.get("noise") is not None else "-"
            print(
                f"  {shown:<32} {fmt_ns(ns):>14} {fmt_x(ns / base if base else None):>8} "
                f"{fmt_x(ns / ours if ours else None):>10} {noise:>6}"
            )
        w = workload(results, "tracked", "experiment") if key == "experiment" else None
        if w:
            print(
                f"  {'':<32} tracked: median call {fmt_ns(w['median_call'])} ns (the same call outside an "
                f"experiment: {fmt_ns(w['outside_median_call'])} ns); finish() {w['finish_s']:.2f} s for "
                f"{plan.exp_calls:,} rows; sinks {w.get('sinks')}"
            )
    print()
    print(
        f"memory: RSS still held after {plan.memory_calls:,} single calls and the subject's flush (at most "
        f"{plan.flush_s:.0f} s), gc and malloc_trim, against before them; peak = highest RSS during them"
    )
    _header(
        f"{'subject':<24} {'retained':>11} {'peak':>11} {'loop s':>8} {'flush s':>8} {'recorded':>9} "
        f"{'import+init s':>13} {'import RSS':>11}"
    )
    for _name, shown, r in _ran(results, PEERS, "", 24):
        m = r.get("memory") or {}
        flush = m.get("flush_s")
        flush_txt = "-" if flush is None else f"{flush:.1f}" + ("+" if flush >= m.get("flush_limit_s", 1e9) else "")
        recorded = m.get("recorded")
        print(
            f"{shown:<24} {fmt_mb(m.get('retained')):>11} {fmt_mb(m.get('peak')):>11} "
            f"{m.get('loop_s', 0):>8.1f} {flush_txt:>8} {'-' if recorded is None else f'{recorded:,}':>9} "
            f"{r.get('init_s', 0):>13.2f} {fmt_mb(r.get('import_rss')):>11}"
        )
    tm = (workload(results, "tracked", "experiment") or {}).get("tracemalloc")
    if tm:
        print(
            f"tracked, one experiment of {tm['calls']:,} calls (tracemalloc): held after finish() and `del exp` "
            f"{fmt_mb(tm['retained'])}, peak during it {fmt_mb(tm['peak'])}; Experiment still reachable: "
            f"{tm['experiment_alive']}"
        )
        if tm.get("top_files"):
            print("  largest holders after finish(): " + ", ".join(f"{f} {s / 1e6:.1f} MB" for f, s in tm["top_files"]))
    print()
    print("configuration:")
    for _name, shown, r in _ran(results, PEERS):
        print(f"  {shown} {r.get('version', '')}: {r.get('config', '')}")
    print()


def print_disabled(results: Results) -> None:
    print("disabled: one call of a trivial function with each SDK switched off (x wrapt = / the wrapt passthrough)")
    _header(f"{'subject':<30} {'ns/call':>10} {'x wrapt':>8}  how")
    base = ns_of(results, "wrapt", "single")
    for name, shown, r in _ran(results, DISABLED, "", 30):
        ns = ns_of(results, name, "single")
        print(f"{shown:<30} {fmt_ns(ns):>10} {fmt_x(ns / base if base and ns else None):>8}  {r.get('config', '')}")
    for peer in peers.ALL:
        if not peer.DISABLED_LABEL:
            print(f"{peer.LABEL} has no switch that turns its instrumentation off: not in this table")
    print()


# --- --scaling ----------------------------------------------------------------------------------------------


def _gc2(r: dict[str, Any]) -> str:
    g = r.get("gc") or {}
    secs, counts = g.get("seconds") or [0, 0, 0], g.get("collections") or [0, 0, 0]
    return f"{sum(secs):.2f} s ({counts[2]} full)"


def _sinks(r: dict[str, Any]) -> str:
    sinks = r.get("sinks") or {}
    bad = {k: v for k, v in sinks.items() if v != "ok"}
    return "ok" if sinks and not bad else "; ".join(f"{k}: {v}" for k, v in bad.items())[:60] or "?"


def print_scaling(results: Results) -> None:
    print("scaling: tracked, top-level calls of an OpenAI function in ONE experiment (W&B offline + local store),")
    print("each call timed; ns = loop time / calls (caller-visible, incl. the GIL taken by the pump and W&B threads)")
    _header(
        f"{'calls':>10} {'ns/call':>8} {'median':>8} {'p99':>8} {'max ms':>7} {'1st 10%':>8} {'last 10%':>8} "
        f"{'finish s':>8} {'rows/s':>7} {'W&B backlog':>11} {'peak RSS':>10} {'held after':>10} {'gc':>16}"
    )
    for r in _points(results, "scale-calls-", 10):
        backlog = (r.get("backlog_at_end_of_loop") or {}).get("wandb_queue")
        print(
            f"{r['calls']:>10,} {fmt_ns(r['ns']):>8} {fmt_ns(r['median']):>8} {fmt_ns(r['p99']):>8} "
            f"{r['max'] / 1e6:>7.1f} {fmt_ns(r['first_tenth_mean']):>8} {fmt_ns(r['last_tenth_mean']):>8} "
            f"{r['finish_s']:>8.1f} {r['rows_per_s']:>7,.0f} {'-' if backlog is None else f'{backlog:,}':>11} "
            f"{fmt_mb(r.get('peak')):>10} {fmt_mb(r.get('retained_after_finish')):>10} {_gc2(r):>16}"
        )
    print("  W&B backlog = rows queued for the W&B thread when the loop ended; held after = RSS after finish()")
    print("  (gc, malloc_trim) - before the experiment; gc = time in the cyclic GC during the experiment")
    for r in _points(results, "scale-calls-"):
        cpu = r.get("thread_cpu_during_loop") or {}
        g = r.get("gc") or {}
        print(
            f"  {r['calls']:>9,} calls: sinks {_sinks(r)}; CPU s during the loop ({r['loop_s']:.2f} s): caller "
            f"{cpu.get('caller', 0):.2f}, W&B thread {cpu.get('wandb', 0):.2f}, pump {cpu.get('pump', 0):.2f}; "
            f"longest gc pause {g.get('worst_s', 0) * 1000:.0f} ms"
        )
    print()
    print("depth: one chain of N nested tracked functions per top-level call, the innermost returning an OpenAI")
    print("response; ns per tracked call, outside any experiment and in one (both sinks)")
    _header(
        f"{'depth':>6} {'calls':>8} {'minimum ns/call':>16} {'outside ns/call':>16} {'in exp ns/call':>15} "
        f"{'in exp ns/top':>14} {'per extra level':>16} {'faults/top':>11} {'finish s':>9} {'sinks':>6}"
    )
    one = results.get("scale-depth-1", {}).get("ns_per_top")
    for r in _points(results, "scale-depth-", 6):
        d = r["depth"]
        extra = (r["ns_per_top"] - one) / (d - 1) if one and d > 1 else None
        print(
            f"{d:>6} {r['calls']:>8,} {fmt_ns(r.get('minimum_ns_per_call')):>16} "
            f"{fmt_ns(r['outside_ns_per_call']):>16} {fmt_ns(r['ns']):>15} "
            f"{fmt_ns(r['ns_per_top']):>14} {fmt_ns(extra):>16} {r.get('faults_per_top', 0):>11.2f} "
            f"{r['finish_s']:>9.1f} {_sinks(r):>6}"
        )
    print("  minimum = the same chain under the hand-written minimum decorator (the interpreter's share)")
    print("  faults/top = minor page faults per top-level call outside an experiment: CPython 3.11 maps and unmaps")
    print("  a 16 kB chunk of its frame stack whenever a call chain crosses a chunk's end")
    print()
    print("threads: calls split over N threads of tracked.ThreadPoolExecutor; ns = wall time / calls")
    _header(
        f"{'threads':>8} {'calls':>8} {'minimum ns/call':>16} {'outside ns/call':>16} {'in exp ns/call':>15} "
        f"{'finish s':>9} {'in exp + finish':>16} {'sinks':>6}"
    )
    for r in _points(results, "scale-threads-", 8):
        print(
            f"{r['threads']:>8} {r['calls']:>8,} {fmt_ns(r.get('minimum_ns')):>16} {fmt_ns(r['outside_ns']):>16} "
            f"{fmt_ns(r['ns']):>15} {r['finish_s']:>9.1f} {fmt_ns(with_finish(r)):>16} {_sinks(r):>6}"
        )
    print("  in exp + finish = (loop + finish()) / calls: these calls outrun W&B, and how much of W&B's work (which")
    print("  shares the GIL) falls in the loop rather than in finish() varies from run to run; the sum does not")
    print()


# --- --client -----------------------------------------------------------------------------------------------


def fmt_us(ns: float | None, sign: bool = False) -> str:
    """ns as microseconds, to 0.1 us."""
    return "-" if ns is None else f"{ns / 1000:+,.1f}" if sign else f"{ns / 1000:,.1f}"


def print_client(results: Results, plan: ClientPlan) -> None:
    print("client: chat completions through a real openai.OpenAI client against one loopback server")
    print("(tests/loopback.py, in a process of its own); each subject's process times every call of a bare client")
    print(
        f"and of the instrumented one, in interleaved blocks of {plan.calls} calls ({plan.rounds} rounds x "
        f"{plan.blocks} blocks: {plan.per_subject():,} calls per client and workload)"
    )
    print("figure = us per call, the lowest round median; added = instrumented - bare; by round = the same")
    print("difference round by round, its median [lowest, highest]: the noise; mean = the added time taken from")
    print("the lowest round means (which also hold the rare slow call, e.g. one that waited for a background thread);")
    print("CPU = the process's CPU time per call, every thread, up to the end of the subject's background work on")
    print("the block (W&B's thread, logfire's flush: untimed for the wall figures), the lowest round; x logfire = the")
    print("ratio of the added times (wall, CPU)")
    print()
    _header(
        f"{'workload / subject':<28} {'bare us':>8} {'instr. us':>9} {'added us':>8} "
        f"{'by round [lowest, highest]':>28} {'mean added':>10} {'CPU added':>9} {'x logfire':>12}"
    )
    for key, label in CLIENT_WORKLOADS:
        print(label)
        peer = client_added(results, "client-logfire", key)
        for name in CLIENT_SUBJECTS:
            r = results.get(name)
            if r is None:
                continue
            shown = CLIENT_LABELS[name]
            if "skipped" in r:
                print(f"  {shown:<26} skipped: {r['skipped']}")
                continue
            a = client_added(results, name, key)
            if a is None:
                continue
            paired = (
                f"{fmt_us(a['paired_median'], True)} [{fmt_us(a['paired_min'], True)}, {fmt_us(a['paired_max'], True)}]"
            )
            vs = "-"
            if peer and peer["added"] > 0 and peer["added_cpu"] > 0:
                vs = f"{a['added'] / peer['added']:.2f}, {a['added_cpu'] / peer['added_cpu']:.2f}"
            print(
                f"  {shown:<26} {fmt_us(a['bare']):>8} {fmt_us(a['instrumented']):>9} {fmt_us(a['added'], True):>8} "
                f"{paired:>28} {fmt_us(a['added_mean'], True):>10} {fmt_us(a['added_cpu'], True):>9} {vs:>12}"
            )
    print()
    print("recorded:")
    for name in CLIENT_SUBJECTS:
        r = results.get(name)
        if r and "recorded" in r:
            print(f"  {CLIENT_LABELS[name]}: {r['recorded']}")
    print("configuration:")
    for name in CLIENT_SUBJECTS:
        r = results.get(name)
        if r and "config" in r:
            print(f"  {CLIENT_LABELS[name]} {r.get('version', '')}: {r['config']}")
    print()


# --- --e2e ----------------------------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.2f}"


def print_e2e(results: dict[str, Any]) -> None:
    plan = results["plan"]
    print("e2e: an async eval, each task a strategy making 2 chat completions (an answer, a judge) through")
    print(
        f"openai.AsyncOpenAI to the loopback server (its own process, answers after {plan.delay_s * 1000:.0f} ms); "
        f"{plan.in_flight} tasks in flight,"
    )
    print("accuracy logged per task; every subject in a fresh process, the order rotated per round")
    print("eval s = entering the experiment to having left it (finish() included; a peer: to the end of its flush);")
    print("x untraced = eval time / the untraced eval of the same round, median [lowest, highest] over rounds;")
    print("CPU per row (ms): the process (every thread), of it tracked's threads (tracked-*) and other threads")
    print("(wandb's, a peer's exporter), and the processes below it (wandb-core, a writer); peak RSS: the process")
    print("(before the eval, then peak), and the processes below it (each one's peak, summed); server = the")
    print("loopback server's CPU per request (it must not be the bottleneck: the client is)")
    for key, title in (("runs", f"{plan.tasks:,} tasks, {plan.rounds} round{'s' if plan.rounds > 1 else ''}"),
                       ("peer_runs", f"the peers' round: {plan.peer_tasks:,} tasks")):  # fmt: skip
        runs = results.get(key) or {}
        if not runs:
            continue
        print()
        print(title)
        _header(
            f"{'subject':<30} {'rounds':>6} {'eval s':>7} {'x untraced':>22} {'rows/s':>7} {'finish s':>8} "
            f"{'CPU/row':>7} {'tracked':>7} {'other':>6} {'children':>8} {'RSS MB':>13} {'child MB':>8} "
            f"{'server us':>9}"
        )
        for name in e2e.SUBJECTS:
            if name not in runs:
                continue
            label = e2e.LABELS[name]
            skipped = next((r["skipped"] for r in runs[name] if "skipped" in r), None)
            sm = e2e.summary_of(runs, name)
            if sm is None:
                print(f"{label:<30} skipped: {skipped}")
                continue
            rs = sm["ratios"]
            ratio = "-" if not rs else f"{sm['ratio']:.3f} [{min(rs):.3f}, {max(rs):.3f}]"
            rss = f"{sm['rss_before'] / 1e6:,.0f} -> {sm['peak_rss'] / 1e6:,.0f}"
            child = "-" if not sm["children_peak_rss"] else f"{sm['children_peak_rss'] / 1e6:,.0f}"
            print(
                f"{label:<30} {sm['n']:>6} {sm['eval_s']:>7.1f} {ratio:>22} {sm['rows_per_s']:>7,.0f} "
                f"{sm['finish_s']:>8.2f} {_ms(sm['cpu_per_row']):>7} {_ms(sm['tracked_cpu_per_row']):>7} "
                f"{_ms(sm['other_cpu_per_row']):>6} {_ms(sm['children_cpu_per_row']):>8} {rss:>13} {child:>8} "
                f"{sm['server_cpu_per_req'] * 1e6:>9,.0f}"
            )
        print("what was written (last round):")
        for name in e2e.SUBJECTS:
            sm = e2e.summary_of(runs, name)
            if sm is None:
                continue
            last = sm["last"]
            threads = ", ".join(f"{t} {_ms(v)}" for t, v in sorted(sm["tracked_threads_per_row"].items()))
            kids = ", ".join(f"{c['name']} {c['cpu_s']:.1f} s" for c in last.get("children", []) if c["cpu_s"] > 0.05)
            print(
                f"  {e2e.LABELS[name]}: {last.get('rows', 'no read-back')}; eval times "
                + ", ".join(f"{t:.1f}" for t in sm["evals"])
                + f" s; setup {last.get('setup_s', 0):.1f} s"
                + (f"; CPU ms/row of tracked's threads: {threads}" if threads else "")
                + (f"; processes below: {kids}" if kids else "")
            )
    print("configuration:")
    shown = set()
    for key in ("runs", "peer_runs"):
        for name, rs in (results.get(key) or {}).items():
            ok = [r for r in rs if "config" in r]
            if ok and name not in shown:
                shown.add(name)
                print(f"  {e2e.LABELS[name]} {ok[-1].get('version', '')}: {ok[-1]['config']}")
    for name in results.get("unknown", []):
        print(f"{name}: skipped: unknown subject")
    print()


# --- --import-time ------------------------------------------------------------------------------------------


def print_import(d: dict[str, Any]) -> None:
    w, it = d["wall_ms"], d["importtime_ms"]
    print(f"import time: fresh processes, median of {d['runs']} (interleaved), bytecode cached for both")
    print(
        f"  wall: python -c pass {w['python']:.1f} ms; import wrapt {w['wrapt']:.1f} ms; import tracked "
        f"{w['tracked']:.1f} ms; tracked - wrapt = {w['tracked'] - w['wrapt']:+.1f} ms"
    )
    print(
        f"  -X importtime, cumulative: wrapt {it['wrapt']:.1f} ms, tracked {it['tracked']:.1f} ms; "
        f"tracked imported after wrapt: {d['tracked_after_wrapt_ms']:.1f} ms"
    )
    print(
        "  what tracked adds over wrapt, by own (self) time, last run: "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in d["top_self"][:10])
        + " (ms)"
    )
    print()


# --- the run's header and footer ----------------------------------------------------------------------------


def versions() -> str:
    from importlib import metadata

    out = []
    for dist in ("tracked", "wandb", "wrapt", "genai-prices", "openai", "pydantic", *(p.DIST for p in peers.ALL)):
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist} not installed")
    return ", ".join(out)


def machine() -> str:
    import platform

    load = os.getloadavg() if hasattr(os, "getloadavg") else (0, 0, 0)
    return (
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} | {platform.machine()} | nproc {os.cpu_count()} | "
        f"Python {platform.python_version()} | load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
