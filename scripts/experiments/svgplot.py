"""Line charts as standalone SVG for the experiment summaries (Python standard library only).

line_chart(path, title, xlabel, ylabel, series, logx, colors, ylim=(0, 1), yfmt="{:.1f}",
           xfmt=str): series maps a legend name to [(x, y), ...]; a series' colour is
colors[first word of its name] (grey otherwise); logx puts x on a log2 axis; x ticks are the
distinct x values written with xfmt (at most one label per 40 px); 6 y ticks span ylim written
with yfmt. Writes nothing when no series has a point."""
import math


def line_chart(path, title, xlabel, ylabel, series, logx, colors, ylim=(0.0, 1.0), yfmt="{:.1f}", xfmt=str):
    W, H, L, R, T, B = 640, 380, 70, 150, 40, 50
    xs = [x for s in series.values() for x, _ in s]
    if not xs:
        return
    fx = (lambda v: math.log2(v)) if logx else (lambda v: v)
    x0, x1 = fx(min(xs)), fx(max(xs))
    if x1 == x0:
        x1 = x0 + 1
    y0, y1 = ylim
    px = lambda v: L + (fx(v) - x0) / (x1 - x0) * (W - L - R)
    py = lambda v: T + (1 - (v - y0) / (y1 - y0)) * (H - T - B)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    for k in range(6):
        v = y0 + (y1 - y0) * k / 5
        o.append(f'<line x1="{L}" x2="{W - R}" y1="{py(v)}" y2="{py(v)}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{py(v) + 4}" text-anchor="end">{yfmt.format(v)}</text>')
    last = None
    for t in sorted(set(xs)):  # a tick label closer than 40 px to the previous one is left out
        if last is None or px(t) - last >= 40:
            o.append(f'<text x="{px(t)}" y="{H - B + 16}" text-anchor="middle">{xfmt(t)}</text>')
            last = px(t)
    o.append(f'<text x="{(L + W - R) / 2}" y="{H - 10}" text-anchor="middle">{xlabel}</text>')
    o.append(f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 {(T + H - B) / 2})">{ylabel}</text>')
    o.append(f'<line x1="{L}" x2="{W - R}" y1="{py(y0)}" y2="{py(y0)}" stroke="black"/>')
    o.append(f'<line x1="{L}" x2="{L}" y1="{py(y0)}" y2="{py(y1)}" stroke="black"/>')
    for k, (name, s) in enumerate(series.items()):
        c = colors.get(name.split()[0], "#555")
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s)
        o.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{pts}"/>')
        for x, y in s:
            o.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{c}"/>')
        o.append(f'<line x1="{W - R + 10}" x2="{W - R + 30}" y1="{T + 20 * k + 10}" y2="{T + 20 * k + 10}" stroke="{c}" stroke-width="2"/>')
        o.append(f'<text x="{W - R + 35}" y="{T + 20 * k + 14}">{name}</text>')
    o.append("</svg>")
    open(path, "w").write("\n".join(o) + "\n")
