"""Plots entropy tokens/s against model size from an entropy_bench.py result file, as a standalone SVG
(no plotting library needed on either machine).

    python bench/gpu/plot.py docs/perf/h200-entropy.json docs/perf/entropy-vs-size.svg
"""

import json
import math
import sys

W, H, LEFT, BOTTOM, TOP, RIGHT = 640, 400, 80, 60, 40, 180
SERIES = [
    ("long.kernel_tokens_per_s", "kernel, 2–4k tokens", "#1f77b4"),
    ("long.bare_forward_tokens_per_s", "bare forward, 2–4k", "#1f77b4"),
    ("gsm8k.kernel_tokens_per_s", "kernel, GSM8K lengths", "#d62728"),
    ("gsm8k.bare_forward_tokens_per_s", "bare forward, GSM8K", "#d62728"),
]


def main(src, dst):
    fig = json.load(open(src))
    # keys look like "0.6B.long.kernel_tokens_per_s": the size is everything before ".parameters"
    sizes = sorted(
        (k[: -len(".parameters")] for k in fig if k.endswith(".parameters")), key=lambda s: fig[f"{s}.parameters"]
    )
    xs = {s: fig[f"{s}.parameters"] / 1e9 for s in sizes}
    ymax = max(fig.get(f"{s}.{key}", 0) for s in sizes for key, _, _ in SERIES) * 1.1
    x0, x1 = math.log10(min(xs.values()) / 1.3), math.log10(max(xs.values()) * 1.3)

    def px(v):
        return LEFT + (math.log10(v) - x0) / (x1 - x0) * (W - LEFT - RIGHT)

    def py(v):
        return H - BOTTOM - v / ymax * (H - BOTTOM - TOP)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14">Entropy kernel throughput vs model size ({fig["device"]}, bf16)</text>',
        f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="black"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="black"/>',
        f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 15}" text-anchor="middle">parameters (billions, log scale)</text>',
        f'<text x="18" y="{(TOP + H - BOTTOM) / 2}" transform="rotate(-90 18 {(TOP + H - BOTTOM) / 2})" text-anchor="middle">tokens/s</text>',
    ]
    for s in sizes:
        out.append(f'<text x="{px(xs[s]):.1f}" y="{H - BOTTOM + 18}" text-anchor="middle">{xs[s]:.2f} ({s})</text>')
    for i in range(6):
        v = ymax / 5 * i
        out.append(f'<text x="{LEFT - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v / 1000:.0f}k</text>')
    for n, (key, label, colour) in enumerate(SERIES):
        pts = [(px(xs[s]), py(fig[f"{s}.{key}"])) for s in sizes if f"{s}.{key}" in fig]
        dash = ' stroke-dasharray="5,4"' if "bare" in key else ""
        out.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in pts)}"/>'
        )
        out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in pts]
        ly = TOP + 20 + 18 * n
        out.append(
            f'<line x1="{W - RIGHT + 10}" y1="{ly}" x2="{W - RIGHT + 35}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{W - RIGHT + 40}" y="{ly + 4}">{label}</text>')
    out.append("</svg>")
    open(dst, "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
