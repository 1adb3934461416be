"""Model size and cost, and the widths that put every strategy × upsample layer on one parameter budget.

* ``params``: trainable parameters (with biases).
* ``MACs per LR pixel``: multiply–accumulates of the conv, transposed-conv and linear layers for one LR input
  pixel, counted with forward hooks on a small input (exact for 'same'-padded convs at any size). Fixed
  interpolation, activations and additions are not counted: a pre-upsampling net's cost is its convs at HR.

``python -m srexp.cli.budget +sweep=compare_upsampling`` prints, for every strategy × upsample layer of the sweep, the
``net.num_feat`` whose parameter count is closest to the sweep's ``sweep.target_params``, as the YAML block the
preset holds (``sweep.num_feat``), and the table of params and MACs; ``tests/test_sweeps.py`` checks each preset's
widths land within ±10% (``TOLERANCE``) of its target.
"""
from __future__ import annotations

import sys
from typing import Any

from srexp.nets.stats import count_params, macs_per_lr_pixel


TOLERANCE = 0.10  # params within ±10% of the target count as matched


def sweep_axes(cfg: Any) -> tuple[list[str], list[str]]:
    """The strategies and upsample layers a sweep preset lists in ``hydra.sweeper.params``."""
    params = cfg.hydra.sweeper.params
    return [s.strip() for s in str(params["net/strategy"]).split(",")], \
        [s.strip() for s in str(params["net/upsample"]).split(",")]


def compose(overrides: list[str]):
    """The train config composed with ``overrides`` (and the Hydra node, for the sweep's params)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    from srexp import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("train", overrides=overrides, return_hydra_config=True)


def measure(strategy: str, layer: str, num_feat: int, overrides: list[str]) -> dict:
    """Params and MACs of one strategy × layer at ``num_feat`` (other keys from the composed ``overrides``)."""
    from srexp.nets import build_net

    cfg = compose([*overrides, f"net/strategy={strategy}", f"net/upsample={layer}", f"net.num_feat={num_feat}"])
    net = build_net(cfg.net)
    macs = macs_per_lr_pixel(net, cfg.channels)
    return {"strategy": strategy, "layer": layer, "num_feat": num_feat, "params": count_params(net),
            "macs_per_lr_pixel": macs, "macs_per_hr_pixel": macs / cfg.scale**2 if macs is not None else None}


BUDGETS = {"params": "params", "macs": "macs_per_hr_pixel"}  # sweep.budget → what is matched


def match_width(strategy: str, layer: str, target: float, overrides: list[str], max_width: int = 1024,
                by: str = "params") -> dict:
    """The ``num_feat`` whose parameter count (``by="params"``) or MACs per output pixel (``by="macs"``) is closest
    to ``target``; both grow with the width."""
    key = BUDGETS[by]

    def cost(w: int) -> float:
        return measure(strategy, layer, w, overrides)[key]

    lo, hi = 1, max_width  # smallest width with cost >= target, by bisection
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if cost(mid) < target else (lo, mid)
    best = min((w for w in (lo - 1, lo) if w >= 1), key=lambda w: abs(cost(w) - target))
    return measure(strategy, layer, best, overrides)


def sweep_overrides(sweep: str, extra: list[str] = ()) -> list[str]:
    return [f"+sweep={sweep}", *extra]


def budget_table(sweep: str, extra: list[str] = (), search: bool = False, by: str | None = None) -> tuple[float, list[dict]]:
    """(target, rows) for every strategy × layer of ``sweep`` under its budget (``sweep.budget``: params, or macs per
    output pixel; ``by`` overrides it): the preset's widths, or searched ones."""
    cfg = compose(sweep_overrides(sweep, extra))
    by = by or cfg.sweep.get("budget") or "params"
    if by not in BUDGETS:
        raise SystemExit(f"sweep.budget={by} is unknown (valid: {', '.join(BUDGETS)})")
    target = float(cfg.sweep.target_params if by == "params" else cfg.sweep.target_macs)
    widths = cfg.sweep.widths[by] if "widths" in cfg.sweep else cfg.sweep.num_feat
    strategies, layers = sweep_axes(cfg)
    base = sweep_overrides(sweep, [*extra, f"sweep.budget={by}"] if "budget" in cfg.sweep else extra)
    rows = []
    for s in strategies:
        for u in layers:
            rows.append(match_width(s, u, target, base, by=by) if search else measure(s, u, int(widths[s][u]), base))
    for r in rows:
        r["off"] = r[BUDGETS[by]] / target - 1
    return target, rows


def main() -> None:
    args = sys.argv[1:]
    sweeps = [a.split("=", 1)[1] for a in args if a.startswith("+sweep=")]
    by = next((a.split("=", 1)[1] for a in args if a.startswith("--by=")), None)
    if len(sweeps) != 1:
        sys.exit("usage: python -m srexp.cli.budget +sweep=NAME [--by=params|macs] [overrides]   "
                 "(e.g. +sweep=compare_upsampling)")
    extra = [a for a in args if not a.startswith(("+sweep=", "--by="))]
    target, rows = budget_table(sweeps[0], extra, search=True, by=by)
    what = "params" if (by or "params") == "params" else "MACs per output pixel"
    print(f"# {sweeps[0]}: num_feat per strategy × layer for {target:,.0f} {what} (±{TOLERANCE:.0%})")
    print(f"  {'num_feat' if by is None else by}:")
    for s in dict.fromkeys(r["strategy"] for r in rows):
        cells = ", ".join(f"{r['layer']}: {r['num_feat']}" for r in rows if r["strategy"] == s)
        print(f"    {s}: {{{cells}}}")
    print("\n| strategy | layer | num_feat | params | MACs / LR px | MACs / HR px | vs target |\n"
          "|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['strategy']} | {r['layer']} | {r['num_feat']} | {r['params']:,} | {r['macs_per_lr_pixel']:,.0f} | "
              f"{r['macs_per_hr_pixel']:,.0f} | {r['off']:+.1%} |")


if __name__ == "__main__":
    main()
