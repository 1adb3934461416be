"""Videos through srexp-upscale with PyAV (FFmpeg): decoded frames go through the net in batches and are encoded
at the same frame rate and timestamps; an audio stream is copied packet for packet (no re-encoding)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from srexp.data.images import ImageError


def _open(src: Path):
    import av

    try:
        c = av.open(str(src))
    except Exception as e:  # noqa: BLE001 - FFmpeg's reasons are many; one line for the user
        raise ImageError(f"input={src}: cannot open video ({str(e).splitlines()[0][:200]})") from None
    if not c.streams.video:
        c.close()
        raise ImageError(f"input={src}: no video stream")
    return c


def upscale_video(ups, src: str | Path, dst: str | Path, batch: int = 4, codec: str = "libx264",
                  crf: int = 18) -> dict:
    """``ups``: an :class:`srexp.cli.upscale.Upscaler`. Returns the frame count, output size, fps, audio copied."""
    import av

    src, dst = Path(src), Path(dst)
    inp = _open(src)
    vin = inp.streams.video[0]
    ain = inp.streams.audio[0] if inp.streams.audio else None
    fps = vin.average_rate or vin.guessed_rate or Fraction(25)
    w, h = vin.codec_context.width * ups.scale, vin.codec_context.height * ups.scale
    dst.parent.mkdir(parents=True, exist_ok=True)
    out = av.open(str(dst), "w")
    try:
        vout = out.add_stream(codec, rate=fps)
        vout.width, vout.height = w, h
        vout.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"  # 4:2:0 needs even sides
        vout.time_base = vin.time_base or Fraction(1, int(round(fps)) or 25)
        if codec == "libx264":
            vout.options = {"crf": str(crf)}
        aout = out.add_stream_from_template(ain) if ain is not None else None
        pending: list = []
        n = 0

        def flush() -> None:
            nonlocal n
            if not pending:
                return
            frames = np.stack([f.to_ndarray(format="rgb24").transpose(2, 0, 1) for f in pending])
            big = ups(frames)
            for f, a in zip(pending, big):
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(a.transpose(1, 2, 0)), format="rgb24")
                vf.pts, vf.time_base = (f.pts, f.time_base) if f.pts is not None else (n, vout.time_base)
                for packet in vout.encode(vf):
                    out.mux(packet)
                n += 1
            pending.clear()

        streams = [vin] + ([ain] if ain is not None else [])
        for packet in inp.demux(*streams):
            if packet.stream is ain:
                if packet.dts is not None:  # the demuxer's final empty packet carries no data
                    packet.stream = aout
                    out.mux(packet)
                continue
            for frame in packet.decode():
                pending.append(frame)
                if len(pending) >= batch:
                    flush()
        flush()
        for packet in vout.encode(None):
            out.mux(packet)
    except (av.error.FFmpegError, ValueError) as e:
        raise ImageError(f"{src} → {dst}: {str(e).splitlines()[0][:200]}") from None
    finally:
        out.close()
        inp.close()
    return {"frames": n, "width": w, "height": h, "fps": float(fps), "audio": ain is not None}
