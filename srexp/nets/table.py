"""Print the ``## Network presets`` parameter table (paste ``python -m srexp.nets.table`` into README.md).

Counts come from instantiating each ``conf/arch/`` preset at ×2 and ×4 through the real ``train.yaml``;
``tests/test_nets.py`` checks the table against the same counts, so the table cannot drift from the code.
Extra command-line arguments are passed to Hydra as overrides.
"""
from __future__ import annotations

import sys
from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "conf"
SCALES = (2, 4)

# The paper's own count, and why ours differs (biases, per-channel PReLU, … ).
PAPER: dict[str, tuple[str, str]] = {
    "nearest": ("0", "any `channels`"),
    "bilinear": ("0", "any `channels`"),
    "bicubic": ("0", "any `channels`; MATLAB bicubic (a = -0.5), as the papers' tables"),
    "compact": ("—", "Real-ESRGAN publishes no count; realesr-animevideov3's layout (inference_realesrgan.py: 64 "
                     "features, 16 convs, per-channel PReLU); realesr-general-x4v3 has 32 convs"),
    "srcnn": ("8,032", "paper counts weights only; + 97 biases = 8,129"),
    "srcnn_955": ("57,184", "paper counts weights only; + 97 biases = 57,281"),
    "fsrcnn": ("12,464", "paper counts conv weights only; + 173 biases + 7 PReLU slopes (one per layer here, "
                         "per channel in the paper's Caffe model)"),
    "espcn": ("—", "grows with r² in the sub-pixel conv (22,729 at ×3)"),
    "vdsr": ("665k", "20 layers: 665,921 with biases"),
    "srresnet": ("1.5M", "includes the BatchNorm scale/shift (running stats are buffers, not counted)"),
    "edsr_baseline": ("1.5M", "quoted for ×4; ×2 has one sub-pixel layer fewer"),
    "edsr": ("43M", "quoted for ×4; ×2 has one 256→1024 sub-pixel conv fewer"),
    "lapsrn": ("812k", "not reproduced exactly: 812,768 results if biases are left out and the two 64-channel "
                       "4×4 transposed convs are counted as 3×3 — our guess at the paper's arithmetic"),
    "dbpn": ("≈10M (×4)", "projection kernels grow with scale (6×6 at ×2, 8×8 at ×4)"),
    "rcan": ("≈16M (×4)", "secondary: 16,000K in the Holistic-Super-Resolution-Review README (×4); "
                          "the official code also counts its two 1×1 mean-shift convs (24), a buffer here; ×2/×3 "
                          "differ in the sub-pixel convs"),
    "rrdb": ("16,697,987 (×4)", "no count found in the paper; the official RRDBNet ×4 (23 blocks, nf 64, gc 32) as "
                                "counted in public ESRGAN/Real-ESRGAN repos (secondary); ×2 has one upsampling conv fewer, ×3 "
                                "one ×3 step"),
    "dbpn_small": ("—", "our small variant: dense D-DBPN wiring, n0 = 128, nR = 32, T = 2"),
    "swinir": ("11.9M (×4)", "official README (JingyunLiang/SwinIR, RCAN comparison, ×4); 11.8M in a survey's table "
                             "(secondary: Holistic-Super-Resolution-Review README); equals the official code's count "
                             "(spandrel's SwinIR, tests/test_foreign_swinir.py)"),
    "swinir_light": ("878K / 886K / 897K (×2/×3/×4)", "paper Table 3, which leaves out the relative-position bias "
                                                      "tables (24 × 225 × 6 = 32,400): ours − 32,400 = 877,752 / "
                                                      "885,867 / 897,228 at ×2/×3/×4; equals the official code's "
                                                      "count"),
}


def presets() -> list[str]:
    return sorted(p.stem for p in (CONF / "arch").glob("*.yaml") if p.stem != "custom")


def describe(name: str, scale: int, overrides: list[str] | None = None) -> dict:
    """Compose ``arch=name scale=scale``, build the net, return its count and axes."""
    from hydra import compose, initialize_config_dir

    from srexp.nets import build_net

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"arch={name}", f"scale={scale}", *(overrides or [])],
                      return_hydra_config=True)
        choices = cfg.hydra.runtime.choices
        net = build_net(cfg.net)
    return {
        "params": sum(p.numel() for p in net.parameters()),
        "channels": cfg.channels,
        "strategy": choices["net/strategy"],
        "body": choices["net/body"],
        "upsample": choices["net/upsample"] + (f" ({cfg.net.upsample.mode})" if "mode" in cfg.net.upsample else ""),
    }


def table(overrides: list[str] | None = None) -> str:
    rows = ["| preset | ch | strategy | body | upsample | params ×2 | params ×4 | paper | note |",
            "|---|---|---|---|---|---:|---:|---|---|"]
    for name in presets():
        d2, d4 = (describe(name, s, overrides) for s in SCALES)
        paper, note = PAPER.get(name, ("—", ""))
        rows.append(f"| {name} | {d4['channels']} | {d4['strategy']} | {d4['body']} | {d4['upsample']} | "
                    f"{d2['params']:,} | {d4['params']:,} | {paper} | {note} |")
    return "\n".join(rows)


def main() -> None:
    print("## Network presets\n")
    print("`srexp-train arch=<preset>`: each preset picks strategy × body × upsample layer and the paper's "
          "settings (`conf/arch/`). Counts are trainable parameters with biases, generated by "
          "`python -m srexp.nets.table` and checked by `tests/test_nets.py`. `ch` 1 = Y-channel network.\n")
    print(table(sys.argv[1:]))


if __name__ == "__main__":
    main()
