"""Draw one control chart per Nelson rule (docs/spc-rules/rule-<n>.svg) from the engine's own planted streams.

Each chart is the quiet background, the pattern planted for the rule in tests/builders.py and a little
background after it, run through `SpcChart` with the plan limits the test uses (CL 10, σ 1). What is drawn is what
the engine answered: the points of the pattern are dark, the point at which the engine raised the rule is ringed
red. Plain SVG, no plotting library. tests/unit/test_spc_rule_charts.py fails when the committed files are stale.

    .venv/bin/python docs/spc_rule_charts.py            # rewrite docs/spc-rules/*.svg
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from qualitybridge.domain.spc import RULE_DESCRIPTIONS, SpcChart, SpcSettings  # noqa: E402
from tests.builders import PLANTED, QUIET  # noqa: E402
from tests.unit.test_spc_engine import PLAN  # noqa: E402

OUT = Path(__file__).resolve().parent / "spc-rules"
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 34, 22
Z_MAX = 4.5  # the chart shows ±4.5σ


def stream(rule: int) -> tuple[list[float], range]:
    """Values, and the positions of the planted pattern in them."""
    before, after = QUIET * 2, QUIET[:4]
    zones = before + PLANTED[rule] + after
    return [PLAN.center + z for z in zones], range(len(before), len(before) + len(PLANTED[rule]))


def judged(values: list[float], rule: int) -> list[int]:
    """Positions at which the engine raised `rule` (all eight rules on, the plan's limits)."""
    chart = SpcChart(sample_size=1, lower_spec=4.0, upper_spec=16.0, plan_limits=PLAN, settings=SpcSettings())
    return [i for i, value in enumerate(values) for v in chart.add(value, str(i)) if v.rule == rule]


def svg(rule: int) -> str:
    values, pattern = stream(rule)
    fired = judged(values, rule)
    sigma = (PLAN.ucl - PLAN.center) / 3
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + plot_w * (i + 0.5) / len(values)

    def y(value: float) -> float:
        z = (value - PLAN.center) / sigma
        return TOP + plot_h * (Z_MAX - z) / (2 * Z_MAX)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="18" font-size="13" font-weight="bold">Nelson rule {rule}: '
        f"{RULE_DESCRIPTIONS[rule]}</text>",
    ]
    # σ zones: C (within 1σ), B (1–2σ), A (2–3σ), shaded symmetrically.
    for low, high, fill in ((2, 3, "#fde2e2"), (1, 2, "#fff4d6"), (0, 1, "#e6f4ea")):
        for sign in (1, -1):
            top, bottom = sorted((y(PLAN.center + sign * high * sigma), y(PLAN.center + sign * low * sigma)))
            out.append(f'<rect x="{LEFT}" y="{top:.1f}" width="{plot_w}" height="{bottom - top:.1f}" fill="{fill}"/>')
    for value, label, dash in ((PLAN.ucl, "UCL", "6 3"), (PLAN.center, "CL", ""), (PLAN.lcl, "LCL", "6 3")):
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<line x1="{LEFT}" y1="{y(value):.1f}" x2="{WIDTH - RIGHT}" y2="{y(value):.1f}" stroke="#555"{dashed}/>'
        )
        out.append(f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{label}</text>')
    for z in (1, 2):
        for sign in (1, -1):
            out.append(
                f'<text x="{LEFT - 6}" y="{y(PLAN.center + sign * z * sigma) + 4:.1f}" text-anchor="end" '
                f'fill="#888">{sign * z:+d}σ</text>'
            )
    path = " ".join(f"{'M' if i == 0 else 'L'}{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    out.append(f'<path d="{path}" fill="none" stroke="#7a8ca5" stroke-width="1.2"/>')
    for i, value in enumerate(values):
        color = "#1f3b73" if i in pattern else "#9aa9bf"
        out.append(f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="3" fill="{color}"/>')
    for i in fired:
        out.append(
            f'<circle cx="{x(i):.1f}" cy="{y(values[i]):.1f}" r="7" fill="none" stroke="#d62728" stroke-width="2"/>'
        )
        out.append(
            f'<text x="{x(i):.1f}" y="{y(values[i]) - 11:.1f}" text-anchor="middle" fill="#d62728" '
            f'font-weight="bold">rule {rule}</text>'
        )
    out.append(
        f'<text x="{LEFT}" y="{HEIGHT - 6}" fill="#555">dark: the planted pattern; ringed: where the engine raised '
        f"rule {rule} (sample {', '.join(str(i + 1) for i in fired) or 'none'} of {len(values)})</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write(folder: Path = OUT) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for rule in sorted(PLANTED):
        path = folder / f"rule-{rule}.svg"
        path.write_text(svg(rule), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        sys.stdout.write(f"{path.relative_to(ROOT)}\n")
