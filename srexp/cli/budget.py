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
    return {"strategy": strategy, "layer": layer, "num_feat": num_feat, "params": count_params(net),
            "macs_per_lr_pixel": macs_per_lr_pixel(net, cfg.channels)}


def match_width(strategy: str, layer: str, target: int, overrides: list[str], max_width: int = 1024) -> dict:
    """The ``num_feat`` whose parameter count is closest to ``target`` (params grow with the width)."""
    from srexp.nets import build_net

    cfg = compose([*overrides, f"net/strategy={strategy}", f"net/upsample={layer}", "net.num_feat=1"])

    def params(w: int) -> int:
        cfg.net.num_feat = w
        return count_params(build_net(cfg.net))

    lo, hi = 1, max_width  # smallest width with params >= target, by bisection
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if params(mid) < target else (lo, mid)
    best = min((w for w in (lo - 1, lo) if w >= 1), key=lambda w: abs(params(w) - target))
    return measure(strategy, layer, best, overrides)


def sweep_overrides(sweep: str, extra: list[str] = ()) -> list[str]:
    return [f"+sweep={sweep}", *extra]


def budget_table(sweep: str, extra: list[str] = (), search: bool = False) -> tuple[int, list[dict]]:
    """(target, rows) for every strategy × layer of ``sweep``: the preset's widths, or searched ones."""
    cfg = compose(sweep_overrides(sweep, extra))
    target = int(cfg.sweep.target_params)
    strategies, layers = sweep_axes(cfg)
    base = sweep_overrides(sweep, extra)
    rows = []
    for s in strategies:
        for u in layers:
            rows.append(match_width(s, u, target, base) if search else measure(s, u, int(cfg.sweep.num_feat[s][u]), base))
    for r in rows:
        r["off"] = r["params"] / target - 1
    return target, rows


def main() -> None:
    args = sys.argv[1:]
    sweeps = [a.split("=", 1)[1] for a in args if a.startswith("+sweep=")]
    if len(sweeps) != 1:
        sys.exit("usage: python -m srexp.cli.budget +sweep=NAME [overrides]   (e.g. +sweep=compare_upsampling)")
    extra = [a for a in args if not a.startswith("+sweep=")]
    target, rows = budget_table(sweeps[0], extra, search=True)
    print(f"# {sweeps[0]}: num_feat per strategy × layer for {target:,} params (±{TOLERANCE:.0%})")
    print("  num_feat:")
    for s in dict.fromkeys(r["strategy"] for r in rows):
        cells = ", ".join(f"{r['layer']}: {r['num_feat']}" for r in rows if r["strategy"] == s)
        print(f"    {s}: {{{cells}}}")
    print("\n| strategy | layer | num_feat | params | vs target | MACs / LR px |\n|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['strategy']} | {r['layer']} | {r['num_feat']} | {r['params']:,} | {r['off']:+.1%} | "
              f"{r['macs_per_lr_pixel']:,.0f} |")


if __name__ == "__main__":
    main()
