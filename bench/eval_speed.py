"""Evaluation speed: srexp's PSNR + SSIM per image against a numpy + OpenCV implementation of the same formulas
(the BasicSR way: float64, ``cv2.filter2D`` with the 11×11 Gaussian, 'valid' crop), on the same images.

    pip install opencv-python-headless        # the reference only (pip install -e ".[bench]")
    SREXP_DATA=/data python bench/eval_speed.py --set BSD200 --scale 2

Both sides get the same Y images (bicubic SR of each image against its HR, Y channel, shave = scale) and time
only the metric; the script prints time per image for each, the ratio srexp / reference (≤ 1.0 means srexp is at
least as fast), and the largest PSNR/SSIM difference between the two (they must agree to 1e-6 dB / 1e-9).
B100 is used when it is under the data root; otherwise BSD200 (same image size, 481×321), else Set14.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine  # noqa: E402


def reference_psnr_ssim(sr: np.ndarray, hr: np.ndarray, border: int) -> tuple[float, float]:
    """BasicSR's calculate_psnr / _ssim on Y images (float64, 0–255), written here from the formulas."""
    import cv2

    sr, hr = sr[border:-border, border:-border], hr[border:-border, border:-border]
    mse = np.mean((sr - hr) ** 2)
    psnr = 10 * np.log10(255.0**2 / mse)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(k, k.transpose())
    mu1 = cv2.filter2D(sr, -1, window)[5:-5, 5:-5]
    mu2 = cv2.filter2D(hr, -1, window)[5:-5, 5:-5]
    mu1_sq, mu2_sq, mu1_mu2 = mu1**2, mu2**2, mu1 * mu2
    s1 = cv2.filter2D(sr**2, -1, window)[5:-5, 5:-5] - mu1_sq
    s2 = cv2.filter2D(hr**2, -1, window)[5:-5, 5:-5] - mu2_sq
    s12 = cv2.filter2D(sr * hr, -1, window)[5:-5, 5:-5] - mu1_mu2
    smap = ((2 * mu1_mu2 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    return float(psnr), float(smap.mean())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", default=None, help="test set under the data root (default: B100, else BSD200, else Set14)")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3, help="passes over the set; the fastest counts")
    p.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads (1: the per-core cost)")
    args = p.parse_args(argv)
    try:
        import cv2
    except ImportError:
        p.error("the reference needs OpenCV: pip install opencv-python-headless (or pip install -e '.[bench]')")
    from srexp.data.benchmarks import DataNotFoundError, find_set
    from srexp.data.datamodule import load_pairs
    from srexp.metrics import get_protocol, psnr_ssim
    from srexp.ops.resize import imresize

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    root = os.environ.get("SREXP_DATA")
    names = [args.set] if args.set else ["B100", "BSD200", "Set14"]
    for name in names:
        try:
            find_set(name, root)
            break
        except DataNotFoundError as e:
            if args.set:
                p.error(str(e))
    else:
        p.error("no test set under the data root (SREXP_DATA): need B100, BSD200 or Set14")
    proto = get_protocol("y_float")
    pairs = load_pairs([name], root, args.scale, 1, "y_float")
    srs = [proto.sr_to_y(imresize(p.lr[None].float(), scale=args.scale)) for p in pairs]  # (1,1,H,W) float64 Y
    refs = [p.ref_y[None] for p in pairs]
    srs_np = [s[0, 0].numpy() for s in srs]
    refs_np = [r[0, 0].numpy() for r in refs]

    def run_srexp():
        return [psnr_ssim(s, r, args.scale) for s, r in zip(srs, refs)]

    def run_reference():
        return [reference_psnr_ssim(s, r, args.scale) for s, r in zip(srs_np, refs_np)]

    times = {}
    for label, fn in (("srexp", run_srexp), ("reference", run_reference)):
        best = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t)
        times[label] = (best / len(pairs), out)
    ours = [(float(a), float(b)) for a, b in times["srexp"][1]]
    ref = times["reference"][1]
    dpsnr = max(abs(a[0] - b[0]) for a, b in zip(ours, ref))
    dssim = max(abs(a[1] - b[1]) for a, b in zip(ours, ref))
    t_ours, t_ref = times["srexp"][0], times["reference"][0]
    print(f"# {machine()}; {name} ×{args.scale}, {len(pairs)} images, {args.threads} thread(s)")
    print(f"srexp PSNR+SSIM:     {t_ours * 1e3:7.1f} ms per image")
    print(f"numpy+OpenCV (ref):  {t_ref * 1e3:7.1f} ms per image")
    print(f"ratio srexp / reference: {t_ours / t_ref:.2f}   (≤ 1.0: srexp at least as fast)")
    print(f"largest difference: PSNR {dpsnr:.2e} dB, SSIM {dssim:.2e}")
    if dpsnr > 1e-6 or dssim > 1e-9:
        raise SystemExit("eval_speed: srexp and the reference disagree")


if __name__ == "__main__":
    main()
