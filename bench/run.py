#!/usr/bin/env python3
"""Benchmark realtime-gateway against Node socket.io 4.8 and vanilla python-socketio, side by side.

    .venv/bin/python bench/run.py          # full run (see docs/benchmarks.md)
    .venv/bin/python bench/run.py --smoke  # tiny sizes, one run, < 60 s

Each server runs pinned to core 0, the Node load generator (bench/loadgen) to core 1. For every
run, every server is started fresh and every scenario is run against it; servers take turns so
machine noise hits them alike. Prints a Markdown table of medians with ratios vs Node; raw
results go to --json. The Python servers run on the interpreter running this script.
"""

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import cases as casemod
from harness import report
from harness.quiet import wait_quiet
from harness.servers import BENCH, KINDS, Launcher, baseline_kind, export_gateway, free_ports

SERVER_CORE, LOADGEN_CORE = 0, 1


def parse_args(argv=None):
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one run (20 clients, 50 messages): a check, not a measure"
    )
    p.add_argument(
        "--servers",
        default="node,vanilla,gateway",
        help="comma list of node, vanilla, gateway (gateway: skipped if app/ is missing)",
    )
    p.add_argument("--runs", type=int, default=3, help="runs per case; medians are reported")
    p.add_argument("--clients", type=ints, default=[1000, 5000], help="fan-out room sizes")
    p.add_argument(
        "--deliveries", type=int, default=200_000, help="fan-out work per run: messages = deliveries / room size"
    )
    p.add_argument("--messages", type=int, default=0, help="fixed messages per fan-out run")
    p.add_argument("--window", type=int, default=16, help="messages in flight (not yet delivered to every member)")
    p.add_argument("--mixed-clients", type=int, default=1000, help="0 skips the mixed room")
    p.add_argument("--cluster-clients", type=int, default=1000, help="0 skips the cluster")
    p.add_argument("--connect-clients", type=ints, default=[1000, 5000])
    p.add_argument(
        "--ws-connect-clients",
        type=ints,
        default=[5000],
        help="connect rate and idle memory of plain /ws clients (Node: a bare `ws` socket in the adapter); 0 skips",
    )
    p.add_argument("--ping-clients", type=int, default=100, help="0 skips ping")
    p.add_argument("--ping-seconds", type=float, default=3.0, help="ping and ack round trips")
    p.add_argument("--rooms-clients", type=int, default=2000, help="small rooms: clients (0 skips them)")
    p.add_argument("--room-size", type=int, default=10)
    p.add_argument("--rooms-messages", type=int, default=10, help="small rooms at saturation: messages per client")
    p.add_argument(
        "--latency-seconds",
        type=float,
        default=3.0,
        help="fixed-rate cases (small rooms, fan-out of the first --clients size) at half Node's saturation; 0 skips",
    )
    p.add_argument(
        "--storm-clients",
        type=int,
        default=2000,
        help="connect storm of distinct users, gateway announcing presence to everyone (0 skips)",
    )
    p.add_argument(
        "--watch-storm-clients",
        type=int,
        default=19000,
        help="connect storm of distinct users each watching 10, gateway with --presence-announce watchers (0 skips)",
    )
    p.add_argument(
        "--stock-clients",
        type=int,
        default=200,
        help="fan-out with the stock socket.io-client (cross-check); 0 skips it",
    )
    p.add_argument(
        "--polling-clients",
        type=int,
        default=1000,
        help="fan-out to clients on Engine.IO long-polling (never upgrading); 0 skips it",
    )
    p.add_argument(
        "--users",
        type=int,
        default=1,
        help="distinct users among the connections (0: one per connection); every "
        "user's first connection is announced to all, so N users cost N²/2 "
        "user_status deliveries on connect",
    )
    p.add_argument("--no-deflate", action="store_true", help="clients do not offer permessage-deflate (browsers do)")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=30,
        help="before each case, wait up to this many seconds for both cores to be idle (shared machines)",
    )
    p.add_argument("--python", default=sys.executable, help="interpreter for Python servers")
    p.add_argument(
        "--gateway-ref",
        help="measure the gateway as committed at this git ref (exported to a temporary directory) "
        "instead of the working tree",
    )
    p.add_argument(
        "--baseline-ref",
        help="also measure the gateway as committed at this git ref, as server 'baseline' "
        "(e.g. the commit before a change, against the working tree in the same run)",
    )
    p.add_argument("--json", type=Path, default=BENCH / "results" / "latest.json", help="raw results file")
    p.add_argument("--from-json", type=Path, help="print the report of a saved raw results file, run nothing")
    opts = p.parse_args(argv)
    if opts.smoke:
        opts.runs, opts.clients, opts.messages = 1, [20], 50
        opts.mixed_clients = opts.cluster_clients = opts.stock_clients = opts.polling_clients = 20
        opts.connect_clients, opts.ping_clients, opts.ping_seconds = [20], 20, 0.5
        opts.ws_connect_clients = [20]
        opts.rooms_clients, opts.room_size, opts.rooms_messages, opts.latency_seconds = 20, 5, 3, 0.5
        opts.storm_clients = opts.watch_storm_clients = 20
        opts.quiet_wait = 0
    return opts


def ensure_node_deps():
    if not (BENCH / "node_modules" / "socket.io").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=BENCH, check=True)


def run_loadgen(case, args, urls, pids, opts):
    """One loadgen process for one case; returns its JSON result (or {"error": ...})."""
    timeout = 900  # seconds; the loadgen stops itself then, and is killed 30 s later
    argv = [
        "node",
        str(BENCH / "loadgen" / "main.mjs"),
        "--scenario",
        case.scenario,
        "--secret",
        opts.secret,
        "--pids",
        ",".join(map(str, pids)),
        "--window",
        str(opts.window),
        "--timeout-ms",
        str(timeout * 1000),
        "--users",
        str(opts.users),
        "--url",
        ",".join(urls),
    ]
    for name, value in args.items():
        argv += [f"--{name}", str(value)]
    if opts.smoke:
        argv += ["--settle-ms", "200", "--stall-ms", "3000"]
    if opts.no_deflate:
        argv.append("--no-deflate")
    if opts.pin:
        argv = ["taskset", "-c", str(LOADGEN_CORE), *argv]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        return {"error": f"loadgen killed after {timeout + 30}s"}
    lines = out.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        errors = [ln for ln in out.stderr.splitlines() if "Error" in ln] or [out.stderr[-200:]]
        return {"error": f"loadgen exit {out.returncode}: {errors[0].strip()}"}
    if case.needs_ws and "/ws answered HTTP" in result.get("error", ""):
        result["skipped"] = "no /ws endpoint"
    return result


def versions(python):
    """What was measured: runtimes, the libraries under test and the gateway's commit."""

    def out(argv):
        done = subprocess.run(argv, capture_output=True, text=True, cwd=BENCH)
        return done.stdout.strip() if done.returncode == 0 else "?"

    found = {"node": out(["node", "--version"])}
    for pkg in ("socket.io", "ws"):
        found[pkg] = json.loads((BENCH / "node_modules" / pkg / "package.json").read_text())["version"]
    py = out(
        [
            python,
            "-c",
            "import sys, importlib.metadata as m; print(sys.version.split()[0], "
            "*(m.version(p) for p in ('python-socketio', 'python-engineio', 'aiohttp')))",
        ]
    )
    for name, version in zip(("python", "python-socketio", "python-engineio", "aiohttp"), py.split(), strict=False):
        found[name] = version
    found["gateway commit"] = out(["git", "rev-parse", "--short", "HEAD"])
    return found


def start_nodes(kind, nodes, launcher, env=None):
    """One server, or a cluster of `nodes` joined through a private redis-server."""
    redis_url = None
    if nodes > 1:
        redis_port, *ports = free_ports(nodes + 1)
        launcher.redis(redis_port)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
    else:
        ports = free_ports(1)
    procs = [launcher.server(kind, port, redis_url, env) for port in ports]
    return procs, [f"http://127.0.0.1:{port}" for port in ports]


def server_lifetimes(cases):
    """Groups cases that can share one server start: a case that measures memory gets a fresh
    server of its own (freed memory is reused, so a second measurement would read low)."""
    shared = {}
    groups = []
    for case in cases:
        if case.fresh_server:
            groups.append([case])
        elif case.nodes in shared:
            shared[case.nodes].append(case)
        else:
            shared[case.nodes] = [case]
            groups.append(shared[case.nodes])
    return groups


def fixed_rate(case, kind, run, records):
    """The `rate` of a fixed-rate case: RATE_SHARE of Node's saturation in this run (of this
    server's own when Node's is missing), or None."""
    found = {
        r["server"]: r["result"].get("msgs_per_s")
        for r in records
        if r["case"] == case.rate_of and r["run"] == run and r["result"].get("msgs_per_s")
    }
    saturation = found.get("node") or found.get(kind.name)
    return None if not saturation else max(1, round(casemod.RATE_SHARE * saturation / case.rate_divisor))


def case_args(case, kind, run, records, opts):
    """The case's loadgen arguments, with its rate when it has one (error text when it cannot)."""
    if not case.rate_of:
        return case.args, None
    rate = fixed_rate(case, kind, run, records)
    if rate is None:
        return None, f"no saturation figure from case {case.rate_of} to set the rate"
    args = {**case.args, "rate": rate}
    if case.scenario == "fanout":
        args["messages"] = max(10, round(rate * opts.latency_seconds))
    return args, None


def run_server(kind, cases, launcher, opts, run, earlier):
    """Starts `kind` (a single node or a cluster, as each case needs), runs the cases, stops it.
    `earlier`: the records so far (fixed-rate cases take their rate from them)."""
    records = []

    def record(case, result):
        records.append({"server": kind.name, "case": case.key, "run": run, "result": result})
        shown = result.get("error") or {k: v for k, v in result.items() if k != "scenario"}
        print(f"  [{kind.name} run {run + 1}] {case.key}: {shown}", file=sys.stderr, flush=True)

    cases = [case for case in cases if not case.only or kind.name in case.only]
    for todo in server_lifetimes(cases):
        try:
            procs, urls = start_nodes(kind, todo[0].nodes, launcher, todo[0].env)
            for case in todo:
                args, error = case_args(case, kind, run, [*earlier, *records], opts)
                if error:
                    record(case, {"error": error})
                    continue
                busy = wait_quiet(opts.cores, opts.quiet_wait) if opts.quiet_wait else None
                result = run_loadgen(case, args, urls, [p.pid for p in procs], opts)
                record(case, {**result, "cores_busy_before": busy})
        except RuntimeError as exc:
            for case in todo:
                record(case, {"error": f"server did not start: {exc}"})
        finally:
            launcher.stop_all()
    return records


def main(argv=None):
    opts = parse_args(argv)
    if opts.from_json:
        print_report(json.loads(opts.from_json.read_text()))
        return
    opts.pin = not opts.no_pin and shutil.which("taskset") and (os.cpu_count() or 1) >= 2
    opts.cores = [SERVER_CORE, LOADGEN_CORE] if opts.pin else list(range(os.cpu_count() or 1))
    # a plain `kill` must still stop the servers (they run in sessions of their own)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    opts.secret = secrets.token_hex(16)
    ensure_node_deps()
    kinds = [KINDS[name] for name in opts.servers.split(",")]
    skipped = [k.name for k in kinds if not k.available()]
    kinds = [k for k in kinds if k.available()]
    if skipped:
        print(f"skipping (not present): {', '.join(skipped)}", file=sys.stderr)
    cases = casemod.build_cases(opts)
    log_dir = opts.json.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    launcher = Launcher(opts.python, opts.secret, log_dir, SERVER_CORE if opts.pin else None)
    gateway_commit = None
    if opts.gateway_ref:
        launcher.gateway_dir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
        gateway_commit = export_gateway(opts.gateway_ref, launcher.gateway_dir)

    baseline_dir = None
    if opts.baseline_ref:
        baseline_dir = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
        KINDS["baseline"] = baseline_kind(opts.baseline_ref, baseline_dir)
        kinds.append(KINDS["baseline"])
    measured = versions(opts.python)
    measured["gateway commit"] = gateway_commit or measured["gateway commit"] + " (working tree)"
    started = time.monotonic()
    data = {
        "args": {k: v for k, v in vars(opts).items() if k not in ("secret", "json", "from_json")},
        "servers": [k.name for k in kinds],
        "labels": {k.name: k.label for k in kinds},
        "load_average": [os.getloadavg()[0], None],
        "versions": measured,
        "seconds": 0,
        "records": [],
    }
    try:
        for run in range(opts.runs):
            for kind in kinds:  # servers take turns within each run
                data["records"] += run_server(kind, cases, launcher, opts, run, data["records"])
                # saved as it goes: an interrupted run still leaves its results (--from-json)
                data["load_average"][1] = os.getloadavg()[0]
                data["seconds"] = round(time.monotonic() - started, 1)
                opts.json.write_text(json.dumps(data, indent=1, default=str))
    finally:
        launcher.stop_all()
        if gateway_commit:
            shutil.rmtree(launcher.gateway_dir, ignore_errors=True)
        if baseline_dir:
            shutil.rmtree(baseline_dir, ignore_errors=True)
    print_report(data)
    print(f"\nraw results: {opts.json}; took {data['seconds']:.0f}s", file=sys.stderr)


def print_report(data):
    """The Markdown report of a run's raw results (also for --from-json)."""
    args = argparse.Namespace(**data["args"])
    cases = casemod.build_cases(args)
    servers = data["servers"]
    labels = {name: data.get("labels", {}).get(name) or KINDS[name].label for name in servers}
    summaries = report.summarize(data["records"])
    # Other work on the machine shows up as a server CPU share below 100% in saturated cases.
    load = "load average {:.2f} before, {:.2f} after".format(*data["load_average"])
    pinning = (
        f"servers pinned to core {SERVER_CORE}, load generator to core {LOADGEN_CORE}" if args.pin else "not pinned"
    )
    print(f"## Results ({args.runs} run(s) each, medians; {pinning}; {load})\n")
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()) + "\n")
    print(report.detailed_table(cases, servers, labels, summaries))
    print("\n## Summary (value, ratio vs Node)\n")
    print(report.summary_table(cases, servers, labels, summaries))
    print("\n## Summary per server core (throughputs divided by the servers' CPU share)\n")
    print(report.summary_table(cases, servers, labels, summaries, normalized=True))


if __name__ == "__main__":
    main()
