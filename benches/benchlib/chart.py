"""The results chart as a self-contained SVG, written by hand.

Small multiples: one row per figure (rps, p99, the target's CPU per request),
one column per scenario, each panel with its own scale (a 1 MB file and a
13-byte hello differ by 100×). Bars are medians, whiskers span min–max, and
every bar carries its value, so the chart reads without the table.
"""

import math
from xml.sax.saxutils import escape

ROWS = (
    ("rps", "requests/s (higher is better)"),
    ("p99", "p99 latency, ms (lower is better)"),
    ("cpu_us", "target CPU µs/request (lower is better)"),
)
COLORS = {
    "lb": "#e0457b",
    "nginx": "#2e8b57",
    "haproxy": "#3a6fb0",
    "direct": "#8c8c8c",
    "frontend": "#e8912d",
    "nginx-static": "#6b8e23",
}
SPARE = ("#b0306a", "#f28cb1", "#7a1f45", "#c96b9a", "#5a5a5a", "#9467bd")

PANEL_W, PANEL_H = 250, 220
TOP, LEFT, BOTTOM, RIGHT = 30, 50, 58, 10
HEADER = 64


def _color(target):
    """Fixed colours for the usual targets; lb variants get the spare pinks."""
    if target not in COLORS:
        extra = len(COLORS) - len(_FIXED)
        COLORS[target] = SPARE[extra % len(SPARE)]
    return COLORS[target]


_FIXED = dict(COLORS)


def _nice_max(v, ticks=4):
    """The smallest ticks × (1, 2, 2.5 or 5 × 10^k) at or above v."""
    if v <= 0:
        return float(ticks)
    raw = v / ticks
    exp = 10 ** math.floor(math.log10(raw))
    step = next(m * exp for m in (1, 2, 2.5, 5, 10) if m * exp >= raw)
    return step * ticks


def _short(v):
    if v is None:
        return "–"
    if v >= 10_000:
        return f"{v / 1000:.0f}k"
    if v >= 1000:
        return f"{v / 1000:.1f}k"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _text(x, y, s, size=11, anchor="middle", extra=""):
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" {extra}>'
        f"{escape(str(s))}</text>"
    )


def _panel(x0, y0, width, bottom, sc, metric, summary):
    out = []
    pw, ph = width - LEFT - RIGHT, PANEL_H - TOP - bottom
    px, py = x0 + LEFT, y0 + TOP
    bars = [(t, summary[(sc.key, t)][metric]) for t in sc.targets if (sc.key, t) in summary]
    top = max((s.max or 0 for _, s in bars), default=0)
    ymax = _nice_max(top * 1.12)
    out.append(_text(x0 + width / 2, y0 + 16, sc.key, 12, extra='font-weight="bold"'))
    for i in range(5):
        v = ymax * i / 4
        y = py + ph - ph * i / 4
        out.append(f'<line x1="{px}" y1="{y:.1f}" x2="{px + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(_text(px - 4, y + 4, _short(v), 10, "end", 'fill="#555"'))
    slot = pw / max(len(bars), 1)
    bw = slot * 0.66
    for i, (t, s) in enumerate(bars):
        cx = px + slot * (i + 0.5)
        if s.median is not None:
            h = ph * s.median / ymax
            out.append(
                f'<rect x="{cx - bw / 2:.1f}" y="{py + ph - h:.1f}" width="{bw:.1f}" '
                f'height="{h:.1f}" fill="{_color(t)}"><title>{escape(t)}: '
                f"{s.median:.3g} ({s.min:.3g}–{s.max:.3g})</title></rect>"
            )
            if s.n > 1:
                y1, y2 = py + ph - ph * s.min / ymax, py + ph - ph * s.max / ymax
                out.append(
                    f'<path d="M{cx:.1f} {y1:.1f}V{y2:.1f}M{cx - 4:.1f} {y1:.1f}h8M{cx - 4:.1f} {y2:.1f}h8" '
                    'stroke="#222" stroke-width="1" fill="none"/>'
                )
            out.append(_text(cx, py + ph - ph * s.max / ymax - 4, _short(s.median), 10))
        lx, ly = cx, py + ph + 12
        out.append(_text(lx, ly, t, 10, "end", f'transform="rotate(-35 {lx:.1f} {ly:.1f})"'))
    out.append(f'<line x1="{px}" y1="{py + ph}" x2="{px + pw}" y2="{py + ph}" stroke="#333"/>')
    return out


def svg(summary, scenarios, title, subtitle):
    # Wide enough for every bar's value label (about 34 px per bar).
    panel_w = max(PANEL_W, LEFT + RIGHT + 34 * max(len(sc.targets) for sc in scenarios))
    width = LEFT + panel_w * len(scenarios) + 20
    # Room below the axis for the longest rotated target name.
    longest = max(len(t) for sc in scenarios for t in sc.targets)
    bottom = max(BOTTOM, 18 + round(3.5 * longest))
    height = HEADER + PANEL_H * len(ROWS) + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif">',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        _text(12, 22, title, 16, "start", 'font-weight="bold"'),
        _text(12, 42, subtitle, 11, "start", 'fill="#444"'),
    ]
    for r, (metric, label) in enumerate(ROWS):
        y0 = HEADER + r * PANEL_H
        lx, ly = 16, y0 + PANEL_H / 2
        out.append(_text(lx, ly, label, 11, "middle", f'transform="rotate(-90 {lx} {ly:.1f})" fill="#333"'))
        for c, sc in enumerate(scenarios):
            out += _panel(LEFT - 20 + c * panel_w, y0, panel_w, bottom, sc, metric, summary)
    out.append("</svg>")
    return "\n".join(out) + "\n"
