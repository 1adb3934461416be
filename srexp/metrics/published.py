"""Published Y-channel PSNR / SSIM of the SR papers' tables: the one copy of every number srexp compares against.

``PAPERS[key]`` is a block ``{source, protocol, x2: {Set5: [psnr, ssim?], …}, …}``: where the figure comes from
(secondary sources say so), the measurement protocol it was made under (:mod:`srexp.metrics.protocol`; a Δ is only
claimed where the protocols match) and the cells by scale and set. A recipe (``conf/experiment/``) names its block
with ``paper: ${srexp.paper:KEY}``, which puts the block itself into the composed config (and so into the run's
``config.yaml`` and checkpoint); an arch preset's row is ``PAPERS[arch]``. Figures are never written from memory:
each block's ``source`` says where it was read. ``PUBLISHED`` / ``PAPER_PROTOCOL`` are views of ``PAPERS``.
"""
from __future__ import annotations

import copy

_TABLES = "shared/data/README.md (as tabulated in the VDSR / EDSR papers)"

PAPERS: dict[str, dict] = {
    "bicubic": {
        "source": f"MATLAB bicubic, {_TABLES}",
        "protocol": "y_float",
        "x2": {"Set5": [33.66, 0.9299], "Set14": [30.24, 0.8688], "B100": [29.56, 0.8431], "Urban100": [26.88, 0.8403]},
        "x3": {"Set5": [30.39, 0.8682], "Set14": [27.55, 0.7742], "B100": [27.21, 0.7385], "Urban100": [24.46, 0.7349]},
        "x4": {"Set5": [28.42, 0.8104], "Set14": [26.00, 0.7027], "B100": [25.96, 0.6675], "Urban100": [23.14, 0.6577]},
    },
    "srcnn": {
        "source": f"SRCNN 9-1-5 (Dong et al., TPAMI 2016) as copied in the VDSR paper's Table 3; {_TABLES}. These are "
                  "the ImageNet-trained model's numbers that the tables carry; the 91-image model is `srcnn_t91`.",
        "protocol": "y_float",
        "x2": {"Set5": [36.66, 0.9542], "Set14": [32.42, 0.9063], "B100": [31.36, 0.8879], "Urban100": [29.50, 0.8946]},
        "x3": {"Set5": [32.75, 0.9090], "Set14": [29.28, 0.8209], "B100": [28.41, 0.7863], "Urban100": [26.24, 0.7989]},
        "x4": {"Set5": [30.48, 0.8628], "Set14": [27.49, 0.7503], "B100": [26.90, 0.7101], "Urban100": [24.52, 0.7221]},
    },
    "srcnn_t91": {
        "source": "SRCNN 9-1-5 trained on the 91 images. Secondary: jinsuyoo/srcnn and rezaeiii/SRCNN READMEs.",
        "protocol": "y_float",
        "x3": {"Set5": [32.39]},
    },
    "vdsr": {
        "source": f"VDSR (Kim et al., CVPR 2016), Table 3 (the multi-scale model); {_TABLES}",
        "protocol": "y_float",
        "x2": {"Set5": [37.53, 0.9587], "Set14": [33.03, 0.9124], "B100": [31.90, 0.8960], "Urban100": [30.76, 0.9140]},
        "x3": {"Set5": [33.66, 0.9213], "Set14": [29.77, 0.8314], "B100": [28.82, 0.7976], "Urban100": [27.14, 0.8279]},
        "x4": {"Set5": [31.35, 0.8838], "Set14": [28.01, 0.7674], "B100": [27.29, 0.7251], "Urban100": [25.18, 0.7524]},
    },
    "fsrcnn": {
        "source": "The final FSRCNN (91 images + General-100 fine-tuning, paper Tables 4/5) as later papers quote it "
                  "(secondary): ×2 (MoreMNAS and SRTransGAN READMEs agree); ×3 Set5/Set14 (one weak source: "
                  "543877815/cv_practise README); ×4 Set5 30.70–30.72, Set14 27.59–27.61 (SRTransGAN README, "
                  f"Holistic-Super-Resolution-Review README), B100/Urban100 {_TABLES}.",
        "protocol": "y_float",
        "x2": {"Set5": [37.00, 0.9558], "Set14": [32.63, 0.9088], "B100": [31.53, 0.8920], "Urban100": [29.88, 0.9020]},
        "x3": {"Set5": [33.16], "Set14": [29.43]},
        "x4": {"Set5": [30.72], "Set14": [27.61], "B100": [26.98], "Urban100": [24.62]},
    },
    "fsrcnn_t91": {
        "source": "FSRCNN (Dong, Loy, Tang, ECCV 2016), Table 3 \"Compare using the same training set\" (all models "
                  "trained on the augmented 91-image set). Secondary: the paper's tables were not retrievable here; "
                  "Set5 ×2/×3/×4 as quoted by yjn870/FSRCNN-pytorch README (\"Paper\" column beside \"Ours "
                  "(91-image)\"), ×3/×4 Set14 by the Fast-super-resolution-by-CNN README (MaxHolmberg96) \"FSRCNN "
                  "(Dong et al.)\" column. The paper's text (primary) confirms ×3 Set5: 33.01 dB (Table 1, "
                  "shrink/map/expand) + 0.05 dB (final) = 33.06. The paper's third test set is BSD200 (×3 28.55, "
                  "91-image), not B100/Urban100. The 91 + General-100 model is `fsrcnn`.",
        "protocol": "y_float",
        "x2": {"Set5": [36.94]},
        "x3": {"Set5": [33.06], "Set14": [29.37]},
        "x4": {"Set5": [30.55], "Set14": [27.50]},
    },
    "espcn_t91": {
        "source": "ESPCN (Shi et al., CVPR 2016), Table 1, the 91-image model. Secondary: the paper's table was not "
                  "retrievable here; Set5 ×3 32.55 is quoted alike by yjn870/ESPCN-pytorch README (\"Paper (91)\"), "
                  "Lornatang/ESPCN-PyTorch README (citing arXiv 1609.05158v2) and 543877815/cv_practise README. "
                  "Set14 ×3 is 29.08 in cv_practise and 29.14 in Lornatang (29.08 kept for the Δ; the paper's Table 1 "
                  "has relu and tanh rows, which may be the difference). The paper made its LR by Gaussian blur + "
                  "subsampling (its §3.1), not MATLAB bicubic: a Δ here is measured on bicubic LR. The ImageNet model "
                  "(Table 2: ×3 33.00 / 29.42 / 28.52 on Set5 / Set14 / BSD500, ×4 30.90 / 27.73 / 27.06) has one "
                  "weak secondary source (cv_practise) and is not used for a Δ.",
        "protocol": "y_float",
        "x3": {"Set5": [32.55], "Set14": [29.08]},
    },
    "lapsrn": {
        "source": f"LapSRN (Lai et al., CVPR 2017) as copied in the EDSR paper; {_TABLES}",
        "protocol": "y_float",
        "x2": {"Set5": [37.52], "Set14": [32.99], "B100": [31.80], "Urban100": [30.41]},
        "x4": {"Set5": [31.54], "Set14": [28.09], "B100": [27.32], "Urban100": [25.21]},
    },
    "dbpn": {
        "source": "D-DBPN (Haris, Shakhnarovich, Ukita, CVPR 2018). Secondary: the paper's table was not retrievable "
                  "here; the row as the SwinIR paper's Table 2 quotes it (\"DBPN\", training data DIV2K+Flickr2K per "
                  "that table), repeated in the Holistic-Super-Resolution-Review README. Not the later TPAMI D-DBPN "
                  "(×4 Set5 32.63), a different model.",
        "protocol": "rgb_uint8",
        "x2": {"Set5": [38.09, 0.9600], "Set14": [33.85, 0.9190], "B100": [32.27, 0.9000],
               "Urban100": [32.55, 0.9324], "Manga109": [38.89, 0.9775]},
        "x4": {"Set5": [32.47, 0.8980], "Set14": [28.82, 0.7860], "B100": [27.72, 0.7400],
               "Urban100": [26.38, 0.7946], "Manga109": [30.91, 0.9137]},
    },
    "edsr_baseline": {
        "source": "EDSR baseline (Lim et al., CVPRW 2017); shared/data/README.md (EDSR paper; PSNR only)",
        "protocol": "rgb_uint8",
        "x2": {"Set5": [37.99], "Set14": [33.57], "B100": [32.16], "Urban100": [31.98]},
        "x4": {"Set5": [32.09], "Set14": [28.58], "B100": [27.57], "Urban100": [26.04]},
    },
    "edsr": {
        "source": "EDSR (Lim et al., CVPRW 2017); shared/data/README.md",
        "protocol": "rgb_uint8",
        "x4": {"Set5": [32.46, 0.8968], "Set14": [28.80, 0.7876], "B100": [27.71, 0.7420], "Urban100": [26.64, 0.8033]},
    },
    "rcan": {
        "source": "RCAN (Zhang et al., ECCV 2018), trained on DIV2K. Secondary: the paper's tables were not retrievable "
                  "here; the rows as the SwinIR paper's Table 2 (Liang et al., ICCVW 2021) quotes them, read in a "
                  "markdown transcription of that paper; ×2/×3/×4 agree with two more copies (an ESRT-style LaTeX "
                  "table and a CBPN-style README table; one distillation paper's RCAN teacher row has ×2 Set14 34.13, "
                  "the three others 34.12), ×4 also with the xinntao/ESRGAN README and the "
                  "AVC2-UESTC/Holistic-Super-Resolution-Review README. Set5 is primary: the authors' per-image results "
                  "(yulunzhang/RCAN RCAN_TestCode/PSNR_SSIM_Results_BI_model.txt, Y, `scale` shaved: means 38.274 / "
                  "0.9614, 34.742 / 0.9299, 32.634 / 0.9002). Manga109 (not a set srexp ships) left out.",
        "protocol": "rgb_uint8",
        "x2": {"Set5": [38.27, 0.9614], "Set14": [34.12, 0.9216], "B100": [32.41, 0.9027], "Urban100": [33.34, 0.9384]},
        "x3": {"Set5": [34.74, 0.9299], "Set14": [30.65, 0.8482], "B100": [29.32, 0.8111], "Urban100": [29.09, 0.8702]},
        "x4": {"Set5": [32.63, 0.9002], "Set14": [28.87, 0.7889], "B100": [27.77, 0.7436], "Urban100": [26.82, 0.8087]},
    },
    "rrdb": {
        "source": "ESRGAN's PSNR-oriented RRDBNet (RRDB_PSNR_x4; Wang et al., ECCVW 2018), trained on DF2K (DIV2K + "
                  "Flickr2K): the authors' table in the xinntao/ESRGAN README (\"RRDB(ours)\", DF2K), the same row as "
                  "the SwinIR paper's Table 2 quotes it (\"RRDB\", DIV2K+Flickr2K). ×4 only. Manga109 left out.",
        "protocol": "rgb_uint8",
        "x4": {"Set5": [32.73, 0.9011], "Set14": [28.99, 0.7917], "B100": [27.85, 0.7455], "Urban100": [27.03, 0.8153]},
    },
    "srresnet": {
        "source": "SRResNet (Ledig et al., CVPR 2017, Table 2): Y PSNR / SSIM, 4-pixel border shaved",
        "protocol": "rgb_uint8",
        "x4": {"Set5": [32.05, 0.9019], "Set14": [28.49, 0.8184], "B100": [27.58, 0.7620]},
    },
    "swinir": {
        "source": "SwinIR (Liang et al., ICCVW 2021), Table 2, the rows trained on DIV2K with 48×48 LR patches (srexp's "
                  "data; `swinir_df2k` for DIV2K+Flickr2K). Read from the table as the official repository's README "
                  "shows it (JingyunLiang/SwinIR figs/classic_image_sr.png). The authors' test script pads the LR "
                  "image by mirroring to one window more than a multiple of 8; srexp (and the model class) reflect-pad "
                  "to the next multiple: the border pixels may differ slightly.",
        "protocol": "rgb_uint8",
        "x2": {"Set5": [38.35, 0.9620], "Set14": [34.14, 0.9227], "B100": [32.44, 0.9030],
               "Urban100": [33.40, 0.9393], "Manga109": [39.60, 0.9792]},
        "x3": {"Set5": [34.89, 0.9312], "Set14": [30.77, 0.8503], "B100": [29.37, 0.8124],
               "Urban100": [29.29, 0.8744], "Manga109": [34.74, 0.9518]},
        "x4": {"Set5": [32.72, 0.9021], "Set14": [28.94, 0.7914], "B100": [27.83, 0.7459],
               "Urban100": [27.07, 0.8164], "Manga109": [31.67, 0.9226]},
    },
    "swinir_df2k": {
        "source": "SwinIR (Liang et al., ICCVW 2021), Table 2, the rows trained on DIV2K+Flickr2K with 64×64 LR patches "
                  "(the released 001_classicalSR_DF2K_s64w8 models). Read from the official README's copy of the table "
                  "(JingyunLiang/SwinIR figs/classic_image_sr.png). The ×4 row agrees with the "
                  "Holistic-Super-Resolution-Review README (secondary).",
        "protocol": "rgb_uint8",
        "x2": {"Set5": [38.42, 0.9623], "Set14": [34.46, 0.9250], "B100": [32.53, 0.9041],
               "Urban100": [33.81, 0.9427], "Manga109": [39.92, 0.9797]},
        "x3": {"Set5": [34.97, 0.9318], "Set14": [30.93, 0.8534], "B100": [29.46, 0.8145],
               "Urban100": [29.75, 0.8826], "Manga109": [35.12, 0.9537]},
        "x4": {"Set5": [32.92, 0.9044], "Set14": [29.09, 0.7950], "B100": [27.92, 0.7489],
               "Urban100": [27.45, 0.8254], "Manga109": [32.03, 0.9260]},
    },
    "swinir_light": {
        "source": "SwinIR lightweight (Liang et al., ICCVW 2021), Table 3 (trained on DIV2K). Read from the official "
                  "README's copy of the table (JingyunLiang/SwinIR figs/lightweight_image_sr.png).",
        "protocol": "rgb_uint8",
        "x2": {"Set5": [38.14, 0.9611], "Set14": [33.86, 0.9206], "B100": [32.31, 0.9012],
               "Urban100": [32.76, 0.9340], "Manga109": [39.12, 0.9783]},
        "x3": {"Set5": [34.62, 0.9289], "Set14": [30.54, 0.8463], "B100": [29.20, 0.8082],
               "Urban100": [28.66, 0.8624], "Manga109": [33.98, 0.9478]},
        "x4": {"Set5": [32.44, 0.8976], "Set14": [28.77, 0.7858], "B100": [27.69, 0.7406],
               "Urban100": [26.47, 0.7980], "Manga109": [30.92, 0.9151]},
    },
    "srgan": {
        "source": "SRGAN (Ledig et al., CVPR 2017, Table 2); lower PSNR than SRResNet, better perceptual quality (MOS)",
        "protocol": "rgb_uint8",
        "x4": {"Set5": [29.40, 0.8472], "Set14": [26.02, 0.7397], "B100": [25.16, 0.6688]},
    },
}

Cell = tuple[float, float | None]  # (PSNR, SSIM or None)


def paper_block(key: str) -> dict:
    """``${srexp.paper:KEY}`` in a recipe: a copy of ``PAPERS[key]``; an unknown key is one line naming the valid."""
    if key not in PAPERS:
        raise KeyError(f"paper={key!r} is not in srexp/metrics/published.py (valid: {', '.join(PAPERS)})")
    return copy.deepcopy(PAPERS[key])


def from_recipe(paper, set_name: str, scale: int) -> Cell | None:
    """A ``paper:`` block (``{protocol, x3: {Set5: [psnr, ssim], …}}``, as a recipe composes it; or a key of
    :data:`PAPERS`) → the (PSNR, SSIM or None) it states for one set and scale, or None."""
    if isinstance(paper, str):
        paper = PAPERS.get(paper)
    if not paper:
        return None
    cell = (paper.get(f"x{scale}") or {}).get(set_name)
    if cell is None:
        return None
    psnr, ssim = (list(cell) + [None])[:2]
    return float(psnr), (float(ssim) if ssim is not None else None)


def _key(method: str | None) -> str | None:
    return method.lower().removesuffix("_955") if method else None


def published(method: str | None, set_name: str, scale: int) -> Cell | None:
    """The paper's (PSNR, SSIM) for ``method`` (an arch preset name) or None where the paper gives none."""
    return from_recipe(PAPERS.get(_key(method) or ""), set_name, scale)


def reference(paper, method: str | None, set_name: str, scale: int) -> tuple[Cell | None, str | None]:
    """(published (PSNR, SSIM), the protocol it was measured under) for a row of a results table: the recipe's
    ``paper:`` block first, then the arch preset's row in :data:`PAPERS`."""
    if paper:
        pub = from_recipe(paper, set_name, scale)
        if pub is not None:
            return pub, (PAPERS[paper] if isinstance(paper, str) else paper).get("protocol")
    key = _key(method)
    return published(method, set_name, scale), PAPERS[key]["protocol"] if key in PAPERS else None


# Views: PUBLISHED[method][set][scale] = (psnr, ssim or None); PAPER_PROTOCOL[method] = protocol name.
PUBLISHED: dict[str, dict[str, dict[int, Cell]]] = {
    k: {s: {int(x[1:]): from_recipe(b, s, int(x[1:])) for x in b if x.startswith("x") and s in b[x]}
        for s in dict.fromkeys(s for x in b if x.startswith("x") for s in b[x])}
    for k, b in PAPERS.items()}
PAPER_PROTOCOL: dict[str, str] = {k: b["protocol"] for k, b in PAPERS.items()}
