"""The Markdown results: header (machine, versions, load, command), the
headline ratios against the issue's goal, then one table per scenario."""

from .stats import ratio

# The goal of issue 6, for the lb against nginx in the two API scenarios.
GOAL = {"rps": (">=", 1.1), "p99": ("<=", 1.0), "cpu_us": ("<=", 0.8)}
GOAL_SCENARIOS = ("api-keepalive", "api-newconn")
# The TLS issue's targets: the lb's CPU per request against nginx's.
TLS_GOAL = {"api-tls-newconn": ("<=", 1.0), "api-tls-keepalive": ("<=", 1.2)}


def _num(v, digits=1):
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def _spread(s, digits=1):
    if s.median is None:
        return "–"
    if s.n == 1:
        return _num(s.median, digits)
    return f"{_num(s.median, digits)} ({_num(s.min, digits)}–{_num(s.max, digits)})"


def _x(r):
    return "–" if r is None else f"{r:.2f}×"


def _ratios(summary, scenario, a, b):
    sa, sb = summary.get((scenario.key, a)), summary.get((scenario.key, b))
    if not sa or not sb:
        return None
    return {m: ratio(sa[m].median, sb[m].median) for m in ("rps", "p99", "cpu_us", "up_cpu_us", "hwm_mib")}


def _goal_cell(metric, r, goal=None):
    if r is None:
        return "–"
    op, bound = goal or GOAL[metric]
    met = r >= bound if op == ">=" else r <= bound
    return f"{r:.2f}× {'✅' if met else '❌'} (goal {op} {bound})"


def headline(summary, scenarios):
    lines = [
        "| scenario | ratio | rps | p99 | proxy CPU µs/req | upstream CPU µs/req | peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    goal_rows, tls_rows = [], []
    for sc in scenarios:
        for a, b in sc.ratios:
            r = _ratios(summary, sc, a, b)
            if r is None:
                continue
            lines.append(
                f"| {sc.key} | {a} / {b} | {_x(r['rps'])} | {_x(r['p99'])} | {_x(r['cpu_us'])} "
                f"| {_x(r['up_cpu_us'])} | {_x(r['hwm_mib'])} |"
            )
            if sc.key in GOAL_SCENARIOS and (a, b) == ("lb", "nginx"):
                goal_rows.append(
                    f"| {sc.key} | {_goal_cell('rps', r['rps'])} | {_goal_cell('p99', r['p99'])} "
                    f"| {_goal_cell('cpu_us', r['cpu_us'])} |"
                )
            if sc.key in TLS_GOAL and (a, b) == ("lb", "nginx"):
                tls_rows.append(f"| {sc.key} | {_goal_cell('cpu_us', r['cpu_us'], TLS_GOAL[sc.key])} |")
    if len(lines) == 2:
        return "(no ratios: the targets they compare were not part of this run)"
    out = "\n".join(lines)
    if goal_rows:
        out += (
            "\n\nThe goal (issue 6), lb against nginx:\n\n"
            "| scenario | rps | p99 | proxy CPU µs/req |\n|---|---|---|---|\n" + "\n".join(goal_rows)
        )
    if tls_rows:
        out += (
            "\n\nThe TLS issue's targets, lb against nginx:\n\n"
            "| scenario | proxy CPU µs/req |\n|---|---|\n" + "\n".join(tls_rows)
        )
    return out


def scenario_table(summary, sc):
    mbs = sc.throughput
    head = (
        "| target | rps | p50 ms | p99 ms | p99.9 ms | errors | non-2xx "
        "| CPU µs/req | upstream CPU µs/req | RSS MiB | peak RSS MiB |" + (" MB/s |" if mbs else "")
    )
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if mbs else "")
    rows = [head, sep]
    for t in sc.targets:
        s = summary.get((sc.key, t))
        if s is None:
            continue
        row = (
            f"| {t} | {_spread(s['rps'], 0)} | {_num(s['p50'].median, 2)} | {_spread(s['p99'], 2)} "
            f"| {_num(s['p999'].median, 2)} | {s['errors']} | {s['non2xx']} "
            f"| {_spread(s['cpu_us'])} | {_num(s['up_cpu_us'].median)} "
            f"| {_num(s['rss_mib'].median)} | {_num(s['hwm_max_mib'])} |"
        )
        if mbs:
            row += f" {_num(s['mb_per_s'].median, 0)} |"
        rows.append(row)
    return "\n".join(rows)


def markdown(*, title, summary, scenarios, machine, settings, command, load_before, load_after, notes=()):
    m = machine
    parts = [
        f"# {title}",
        "",
        f"Command: `` {command} ``" if "`" in command else f"Command: `{command}`",
        "",
        f"- Date (UTC): {settings['date']}; commit {m['commit']}",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}",
        f"- Versions: {m['nginx']}; {m['haproxy']}; {m['oha']}; {m['rustc']}; Python {m['python']}"
        + "".join(f"; {m[k]}" for k in ("h2load", "openssl") if m.get(k)),
        f"- Load average (1/5/15 min) before: {load_before}; after: {load_after}",
        f"- Settings: {settings['rounds']} rounds × {settings['duration']} s per target, "
        f"{settings['connections']} connections, {settings['threads']} proxy threads/workers, "
        f"proxies' access log {settings['access_log']}, backends' and frontend's request log "
        f"{settings.get('origin_log', 'on')}; targets rotate within each round",
        "- Cells: median over rounds (min–max). CPU µs/req = (utime+stime of the target's "
        "processes after − before the run) ÷ 2xx responses; upstream = the backends and "
        "frontend behind it. See benches/README.md.",
    ]
    parts += [f"- {n}" for n in notes]
    parts += ["", "## Headline ratios (medians)", "", headline(summary, scenarios)]
    for sc in scenarios:
        parts += ["", f"## {sc.key}: {sc.title}", "", scenario_table(summary, sc)]
    return "\n".join(parts) + "\n"
