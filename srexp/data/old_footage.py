"""Synthetic old footage for tests, benches and a first try of a restoration model on a video."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def old_footage(path: str | Path, frames: int = 12, size: tuple[int, int] = (64, 48), fps: int = 12,
                noise: float = 8.0, quality: float = 30.0, seed: int = 0, audio: bool = True,
                codec: str = "libx264") -> Path:
    """A synthetic "old footage" clip: a window panning over scikit-image's astronaut, shrunk to ``size`` (w, h),
    each frame degraded by :class:`srexp.ops.degrade.Degradation` (Gaussian noise σ = ``noise`` on the 0–255 scale,
    JPEG at ``quality``, drawn anew per frame), with a 440 Hz mono AAC track of the clip's length."""
    import av
    import torch
    from skimage import data as skdata

    from srexp.ops.degrade import Degradation
    from srexp.ops.resize import resize_pil

    w, h = size
    img = torch.from_numpy(skdata.astronaut().transpose(2, 0, 1).copy()).float()[None] / 255  # 512×512
    crop_w, crop_h = round(384 * w / max(w, h)), round(384 * h / max(w, h))  # a 384-pixel window, the clip's shape
    deg = Degradation(noise_sigma=(noise, noise), jpeg_quality=(quality, quality), p_blur=0.0, p_noise=1.0,
                      p_jpeg=1.0, key="old_footage")
    gen = torch.Generator().manual_seed(seed)
    path = Path(path)
    with av.open(str(path), "w") as c:
        v = c.add_stream(codec, rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
        if codec == "libx264":
            v.options = {"crf": "12"}  # the artefacts are the degradation's, not the encoder's
        a = None
        if audio:
            a = c.add_stream("aac", rate=16000)
            a.layout = "mono"
        for k in range(frames):
            x0 = round((512 - crop_w) * k / max(frames - 1, 1))
            y0 = round((512 - crop_h) * k / max(frames - 1, 1) / 2)
            lr = resize_pil(img[..., y0 : y0 + crop_h, x0 : x0 + crop_w], (h, w))
            rgb = (deg.apply(lr.clamp(0, 1), gen)[0] * 255).round().byte().permute(1, 2, 0).numpy()
            for p in v.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                c.mux(p)
        streams = [v]
        if a is not None:
            write_tone(c, a, frames / fps)
            streams.append(a)
        for s in streams:
            for p in s.encode(None):
                c.mux(p)
    return path


def write_tone(container, stream, seconds: float, hz: float = 440.0) -> None:
    """A sine of ``seconds`` into ``stream`` (an AAC stream at 16 kHz, mono, added to ``container``), muxed; the caller
    flushes the stream (``stream.encode(None)``) with its others."""
    import av

    rate = 16000
    t = np.arange(int(rate * seconds)) / rate
    sound = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)[None]
    for start in range(0, sound.shape[1], 1024):
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(sound[:, start : start + 1024]), format="fltp",
                                        layout="mono")
        af.sample_rate, af.pts = rate, start
        for p in stream.encode(af):
            container.mux(p)
