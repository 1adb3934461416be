"""Published Y-channel PSNR / SSIM of the SR papers' comparison tables (facts, as copied in the VDSR / EDSR papers).

``PUBLISHED[method][set][scale] = (psnr, ssim or None)``. ``PAPER_PROTOCOL`` says which measurement protocol
(srexp.metrics) the row was made under, so a comparison only claims a delta where the protocols match.
"""
from __future__ import annotations

_SETS = ("Set5", "Set14", "B100", "Urban100")


def _rows(table: dict[int, tuple]) -> dict[str, dict[int, tuple[float, float | None]]]:
    out: dict[str, dict[int, tuple[float, float | None]]] = {s: {} for s in _SETS}
    for scale, cells in table.items():
        for s, cell in zip(_SETS, cells):
            if cell is not None:
                out[s][scale] = cell if isinstance(cell, tuple) else (cell, None)
    return out


PUBLISHED: dict[str, dict[str, dict[int, tuple[float, float | None]]]] = {
    "bicubic": _rows({
        2: ((33.66, 0.9299), (30.24, 0.8688), (29.56, 0.8431), (26.88, 0.8403)),
        3: ((30.39, 0.8682), (27.55, 0.7742), (27.21, 0.7385), (24.46, 0.7349)),
        4: ((28.42, 0.8104), (26.00, 0.7027), (25.96, 0.6675), (23.14, 0.6577)),
    }),
    "srcnn": _rows({
        2: ((36.66, 0.9542), (32.42, 0.9063), (31.36, 0.8879), (29.50, 0.8946)),
        3: ((32.75, 0.9090), (29.28, 0.8209), (28.41, 0.7863), (26.24, 0.7989)),
        4: ((30.48, 0.8628), (27.49, 0.7503), (26.90, 0.7101), (24.52, 0.7221)),
    }),
    "vdsr": _rows({
        2: ((37.53, 0.9587), (33.03, 0.9124), (31.90, 0.8960), (30.76, 0.9140)),
        3: ((33.66, 0.9213), (29.77, 0.8314), (28.82, 0.7976), (27.14, 0.8279)),
        4: ((31.35, 0.8838), (28.01, 0.7674), (27.29, 0.7251), (25.18, 0.7524)),
    }),
    "fsrcnn": _rows({2: (37.00, 32.63, 31.53, 29.88), 4: (30.72, 27.61, 26.98, 24.62)}),
    # FSRCNN trained on the augmented 91-image set only (its Table 3; the row above is the 91 + General-100 model).
    # Secondary: yjn870/FSRCNN-pytorch README (Set5), Fast-super-resolution-by-CNN README (Set14); the paper's
    # text gives ×3 Set5 as 33.01 + 0.05 dB. The paper's third set is BSD200, not B100.
    "fsrcnn_t91": _rows({2: (36.94, None, None, None), 3: (33.06, 29.37, None, None),
                         4: (30.55, 27.50, None, None)}),
    # ESPCN, 91-image model, ×3 (its Table 1). Secondary: yjn870/ESPCN-pytorch, Lornatang/ESPCN-PyTorch and
    # 543877815/cv_practise READMEs agree on Set5; Set14 is 29.08 (cv_practise) or 29.14 (Lornatang).
    # The paper's LR: Gaussian blur + subsampling, not MATLAB bicubic.
    "espcn_t91": _rows({3: (32.55, 29.08, None, None)}),
    # D-DBPN (CVPR 2018) as the SwinIR paper's Table 2 quotes it (secondary).
    "dbpn": _rows({2: ((38.09, 0.9600), (33.85, 0.9190), (32.27, 0.9000), (32.55, 0.9324)),
                   4: ((32.47, 0.8980), (28.82, 0.7860), (27.72, 0.7400), (26.38, 0.7946))}),
    "lapsrn": _rows({2: (37.52, 32.99, 31.80, 30.41), 4: (31.54, 28.09, 27.32, 25.21)}),
    "edsr_baseline": _rows({2: (37.99, 33.57, 32.16, 31.98), 4: (32.09, 28.58, 27.57, 26.04)}),
    "edsr": _rows({4: ((32.46, 0.8968), (28.80, 0.7876), (27.71, 0.7420), (26.64, 0.8033))}),
    "srresnet": _rows({4: ((32.05, 0.9019), (28.49, 0.8184), (27.58, 0.7620), None)}),
    "srgan": _rows({4: ((29.40, 0.8472), (26.02, 0.7397), (25.16, 0.6688), None)}),
}

PAPER_PROTOCOL: dict[str, str] = {
    "bicubic": "y_float", "srcnn": "y_float", "vdsr": "y_float", "fsrcnn": "y_float", "fsrcnn_t91": "y_float", "espcn_t91": "y_float", "lapsrn": "y_float", "dbpn": "rgb_uint8",
    "edsr_baseline": "rgb_uint8", "edsr": "rgb_uint8", "srresnet": "rgb_uint8", "srgan": "rgb_uint8",
}


def published(method: str | None, set_name: str, scale: int) -> tuple[float, float | None] | None:
    """The paper's (PSNR, SSIM) for ``method`` (an arch preset name) or None where the paper gives none."""
    if not method:
        return None
    key = method.lower().removesuffix("_955")
    return PUBLISHED.get(key, {}).get(set_name, {}).get(scale)


Cell = tuple[float, float | None]  # (PSNR, SSIM or None)


def from_recipe(paper, set_name: str, scale: int) -> Cell | None:
    """A recipe's ``paper:`` block (``conf/experiment/``: ``{protocol, x3: {Set5: [psnr, ssim], …}}``) → the
    (PSNR, SSIM or None) it states for one set and scale, or None."""
    if not paper:
        return None
    cell = (paper.get(f"x{scale}") or {}).get(set_name)
    if cell is None:
        return None
    psnr, ssim = (list(cell) + [None])[:2]
    return float(psnr), (float(ssim) if ssim is not None else None)


def reference(paper, method: str | None, set_name: str, scale: int) -> tuple[Cell | None, str | None]:
    """(published (PSNR, SSIM), the protocol it was measured under) for a row of a results table: the recipe's
    ``paper:`` block first, then the arch preset's row in :data:`PUBLISHED`."""
    if paper:
        pub = from_recipe(paper, set_name, scale)
        if pub is not None:
            return pub, paper.get("protocol")
    key = method.lower().removesuffix("_955") if method else None
    return published(method, set_name, scale), PAPER_PROTOCOL.get(key) if key else None
