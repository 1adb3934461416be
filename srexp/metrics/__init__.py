"""Measurement: the paper protocols (:mod:`.protocol`), PSNR/SSIM (:mod:`.quality`), LPIPS/DISTS
(:mod:`.perceptual`), the published numbers (:mod:`.published`) and the printed validation table (:mod:`.table`)."""
from srexp.metrics.protocol import PROTOCOLS, Protocol, get_protocol, images_hash
from srexp.metrics.quality import SRMetrics, psnr_ssim, shave, ssim

__all__ = ["PROTOCOLS", "Protocol", "SRMetrics", "get_protocol", "images_hash", "psnr_ssim", "shave", "ssim"]
