"""Shared bits of the benchmarks: which images, the machine line, timing helpers."""
from __future__ import annotations

import os
import platform
import statistics
import time
from datetime import date

import torch

SKIMAGE = ["skimage:astronaut", "skimage:coffee", "skimage:rocket", "skimage:motorcycle_left", "skimage:ihc",
           "skimage:hubble_deep_field", "skimage:chelsea", "skimage:camera"]


def image_specs() -> tuple[list[str], str]:
    """BSD200 under the data root when present (PNG decoding is realistic there), else scikit-image's photos."""
    root = os.environ.get("SREXP_DATA")
    if root and os.path.isdir(os.path.join(root, "BSD200")):
        return [os.path.join(root, "BSD200")], "BSD200 (200 PNG, 481×321)"
    return SKIMAGE, "8 scikit-image photos"


def machine() -> str:
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    return f"{date.today()} · {dev} · torch {torch.__version__} · {platform.python_version()}"


def median_rate(times: list[float], per_step: int) -> float:
    return per_step / statistics.median(times)


class Clock:
    def __init__(self):
        self.t = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        dt, self.t = now - self.t, now
        return dt
