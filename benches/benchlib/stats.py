"""Medians with min-max over rounds, and the ratios the README quotes."""

import statistics

# Figures summarised per (scenario, target); each run record holds them all.
METRICS = (
    "rps", "p50", "p99", "p999", "cpu_us", "up_cpu_us", "rss_mib", "hwm_mib", "mb_per_s",
)


class Spread:
    """Median, min and max of one figure over the rounds (None when absent)."""

    def __init__(self, values):
        vals = [v for v in values if v is not None]
        self.n = len(vals)
        self.median = statistics.median(vals) if vals else None
        self.min = min(vals) if vals else None
        self.max = max(vals) if vals else None

    def as_dict(self):
        return {"median": self.median, "min": self.min, "max": self.max, "n": self.n}


def summarise(runs):
    """{(scenario, target): {metric: Spread, "errors": int, "non2xx": int, ...}}"""
    grouped = {}
    for run in runs:
        grouped.setdefault((run["scenario"], run["target"]), []).append(run)
    out = {}
    for key, rs in grouped.items():
        s = {m: Spread(r.get(m) for r in rs) for m in METRICS}
        s["errors"] = sum(r["errors"] for r in rs)
        s["non2xx"] = sum(r["non2xx"] for r in rs)
        s["requests"] = sum(r["requests"] for r in rs)
        s["hwm_max_mib"] = max((r["hwm_mib"] for r in rs if r.get("hwm_mib") is not None), default=None)
        out[key] = s
    return out


def ratio(a, b):
    """a / b of two medians, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b
