"""Medians over runs, and the Markdown tables with ratios against Node socket.io."""

import statistics

REFERENCE = "node"
NA = "\u2013"  # an en dash: no value in this cell
DELIVERY_FIELDS = ("lost", "duplicated", "out_of_order", "malformed")
# Throughputs are also reported per second of server CPU: on a shared machine a server may get
# less than its core, and a CPU-bound server's output per CPU-second barely depends on that.
THROUGHPUTS = ("msgs_per_s", "rtt_per_s", "conns_per_s")


def per_core(result):
    """`result` with <throughput>_per_core = throughput / CPU share of all server processes."""
    cpu = sum(result.get("server_cpu") or ())
    extra = {f"{m}_per_core": result[m] / cpu for m in THROUGHPUTS if m in result and cpu > 0}
    return {**result, **extra}


def summarize(records):
    """records: [{server, case, run, result}] -> {(case, server): summary}. Numbers are medians
    over the runs that worked; delivery faults are summed over all runs (they must all be 0)."""
    grouped = {}
    for rec in records:
        grouped.setdefault((rec["case"], rec["server"]), []).append(rec["result"])
    out = {}
    for key, results in grouped.items():
        good = [per_core(r) for r in results if "error" not in r]
        summary = {
            "runs": len(results),
            "ok_runs": len(good),
            "errors": sorted({r["error"] for r in results if "error" in r}),
        }
        skipped = {r["skipped"] for r in results if "skipped" in r}
        if skipped and not good:
            summary["skipped"] = ", ".join(sorted(skipped))
        for name in {n for r in good for n, v in r.items() if isinstance(v, (int, float))}:
            values = [r[name] for r in good if name in r]
            summary[name] = sum(values) if name in DELIVERY_FIELDS else statistics.median(values)
        cpus = [r["server_cpu"] for r in good if r.get("server_cpu")]
        if cpus:
            summary["server_cpu"] = [statistics.median(c[i] for c in cpus) for i in range(len(cpus[0]))]
        out[key] = summary
    return out


def fmt_num(v):
    if v is None:
        return NA
    if abs(v) >= 100:
        return f"{round(v):,}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def pct(v):
    return NA if v is None else f"{round(v * 100)}%"


def metric_of(row, normalized):
    """The summary field shown for `row`: per server core if asked and the row is a throughput."""
    return f"{row.metric}_per_core" if normalized and row.metric in THROUGHPUTS else row.metric


def value_cell(s, row, normalized=False):
    """The headline value of one row, or why there is none."""
    if s is None:
        return NA
    if s.get("skipped"):
        return f"n/a ({s['skipped']})"
    if not s["ok_runs"]:
        return "error: " + "; ".join(s["errors"])[:80].replace("|", "/")
    return fmt_num(s.get(metric_of(row, normalized)))


def ratio(s, ref, row, normalized=False):
    metric = metric_of(row, normalized)
    try:
        v, r = s[metric], ref[metric]
        return f"{v / r:.2f}x" if r else NA
    except (KeyError, TypeError):
        return NA


def detailed_table(cases, servers, labels, summaries):
    head = (
        "| scenario | server | result | vs Node | per server core | vs Node | p50 ms | p99 ms | lost | dup "
        "| order kept | server CPU | loadgen CPU |"
    )
    lines = [head, "|" + " --- |" * 13]
    for case in cases:
        ref = summaries.get((case.key, REFERENCE))
        for row in case.rows:
            for server in servers:
                s = summaries.get((case.key, server))
                ok = bool(s and s.get("ok_runs"))
                suffix = "" if row.higher_is_better else ", lower is better"
                comparable = ok and ref and ref.get("ok_runs")
                throughput = row.metric in THROUGHPUTS
                cells = [
                    f"{row.label} ({row.unit}{suffix})",
                    labels[server],
                    value_cell(s, row),
                    ratio(s, ref, row) if comparable else NA,
                    value_cell(s, row, normalized=True) if ok and throughput else NA,
                    ratio(s, ref, row, normalized=True) if comparable and throughput else NA,
                ]
                lat = ok and row.has_latency
                cells += [fmt_num(s.get("p50_ms")) if lat else NA, fmt_num(s.get("p99_ms")) if lat else NA]
                if ok and row.has_delivery:
                    cells += [
                        str(s.get("lost", 0)),
                        str(s.get("duplicated", 0)),
                        "yes" if not s.get("out_of_order") else f"no ({s['out_of_order']})",
                    ]
                elif ok and row.metric == "rtt_per_s":
                    cells += [str(s.get("lost", 0)), NA, NA]
                else:
                    cells += [NA, NA, NA]
                cpu = ok and throughput  # (a memory row's CPU figures would be its connect phase's)
                cells += [
                    " + ".join(pct(c) for c in s["server_cpu"]) if cpu and s.get("server_cpu") else NA,
                    pct(s.get("loadgen_cpu")) if cpu else NA,
                ]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(cases, servers, labels, summaries, normalized=False):
    """One line per server, one column per row of the detailed table: value (ratio vs Node);
    `normalized`: throughputs per second of server CPU."""
    rows = [(case, row) for case in cases for row in case.rows]
    lines = [
        "| server | " + " | ".join(f"{row.label} ({row.unit})" for _, row in rows) + " |",
        "|" + " --- |" * (len(rows) + 1),
    ]
    for server in servers:
        cells = []
        for case, row in rows:
            s = summaries.get((case.key, server))
            ref = summaries.get((case.key, REFERENCE))
            cell = value_cell(s, row, normalized)
            if server != REFERENCE and s and s.get("ok_runs") and ref and ref.get("ok_runs"):
                cell += f" ({ratio(s, ref, row, normalized)})"
            cells.append(cell)
        lines.append(f"| {labels[server]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
