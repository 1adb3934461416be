"""Videos through srexp-upscale with PyAV (FFmpeg), streamed and resumable.

Frames are decoded one at a time, go through the net ``batch`` at a time and are encoded at once, so memory holds one
batch (plus the codecs' own bounded queues, e.g. x264's look-ahead), whatever the length of the clip. The output is
encoded in segments of ``segment`` frames into ``<output>.parts/``; each finished segment is renamed into place and
committed by a small JSON file. A run that is killed and started again with the same input, model and settings
decodes the finished segments' frames without running the net, continues with the first unfinished segment, and at
the end the segments are joined (stream copy, their packets' timestamps as the encoder made them) with the input's
audio (stream copy) into the output; the parts folder is then removed. Parts made from another input, model or
settings (``manifest.json`` holds their fingerprint) are discarded, with a log line.

Flicker: the mean absolute difference between consecutive frames (8-bit luma levels) of the output, taken on the
input's grid (each output frame's luma averaged over ``scale × scale`` blocks, before encoding), beside the same
measure of the input. A restoration that denoises lowers it; one that invents detail per frame raises it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
from fractions import Fraction
from heapq import merge
from itertools import chain
from pathlib import Path

import numpy as np

from srexp.data.images import ImageError
from srexp.data.progress import Progress
from srexp.errors import ConfigError, SrexpError

log = logging.getLogger("srexp.data.video")
PARTS_FORMAT = 1  # bump when the parts' layout changes: older parts are then started over
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


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


def _frames(container):
    """The decoded frames of the first video stream, one at a time."""
    yield from container.decode(container.streams.video[0])


def luma(rgb: np.ndarray, scale: int = 1) -> np.ndarray:
    """``(H, W, 3)`` uint8 → float32 luma ``(H/scale, W/scale)``: the means over ``scale × scale`` blocks (summed in
    integers first, so a 4K frame costs no float copy of itself)."""
    if scale > 1:
        h, w, c = rgb.shape
        rgb = rgb.reshape(h // scale, scale, w // scale, scale, c).sum((1, 3), dtype=np.uint32)
    return (rgb.astype(np.float32) @ LUMA) / scale**2


def fingerprint(ups, src: Path, settings: dict) -> str:
    """What makes the parts: the input file (path, size, time of change), the net (its layers and weights) and the
    settings that change the frames or the stream."""
    import av
    import torch

    h = hashlib.sha256()
    st = src.stat()
    h.update(json.dumps([PARTS_FORMAT, str(src.resolve()), st.st_size, st.st_mtime_ns, av.__version__,
                         ups.scale, ups.channels, ups.tile, ups.overlap, ups.bf16, settings]).encode())
    h.update(repr(ups.net).encode())
    for k, v in ups.net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:32]


class Parts:
    """``<output>.parts/``: ``manifest.json`` (the fingerprint), per segment ``k``: ``NNNNNN<suffix>`` (its video),
    ``NNNNNN.json`` (its packets' timestamps and flicker sums; written last, atomically: the segment is done) and
    ``NNNNNN.npy`` (its last frame's luma on the input grid, for the difference across the next boundary)."""

    def __init__(self, dst: Path, key: str):
        self.dir, self.suffix = dst.with_name(dst.name + ".parts"), dst.suffix
        manifest = self.dir / "manifest.json"
        old = None
        if self.dir.exists() and not self.dir.is_dir():
            raise ConfigError(f"output={dst}: {self.dir} is a file, where the parts folder goes: move it away")
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text())
                old = data.get("fingerprint", "none") if isinstance(data, dict) else "unreadable"
            except (OSError, ValueError):
                old = "unreadable"
        elif self.dir.is_dir() and any(not p.name.startswith(("manifest.json.tmp", ".")) for p in self.dir.iterdir()):
            raise ConfigError(f"output={dst}: {self.dir} exists and is not srexp-upscale's parts folder (no "
                              f"manifest.json): move it away or choose another output")
        if old is not None and old != key:
            log.info("%s: made from another input, model or settings: starting over", self.dir)
        if old != key and self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob("*.tmp*"):
            stale.unlink()
        if old != key:
            _write_json(manifest, {"fingerprint": key, "format": PARTS_FORMAT})

    def video(self, k: int) -> Path:
        return self.dir / f"{k:06d}{self.suffix}"

    def done(self) -> list[dict]:
        """The finished segments from the first on, in order (a gap ends them)."""
        out = []
        while (self.dir / f"{len(out):06d}.json").is_file() and self.video(len(out)).is_file():
            out.append(json.loads((self.dir / f"{len(out):06d}.json").read_text()))
        return out

    def last_luma(self, k: int) -> np.ndarray:
        return np.load(self.dir / f"{k:06d}.npy")


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


class Segment:
    """One segment's encoder and file; the packets' timestamps are kept as the encoder made them (a container may
    round or shift them, e.g. MP4's edit list), so that the joined stream has the original ones."""

    def __init__(self, parts: Parts, k: int, codec: str, crf: int, fps: Fraction, time_base, w: int, h: int):
        import av

        self.parts, self.k = parts, k
        self.tmp = parts.dir / f"{k:06d}.tmp{parts.suffix}"
        self.c = av.open(str(self.tmp), "w")
        try:
            self.s = self.c.add_stream(codec, rate=fps)
        except av.codec.codec.UnknownCodecError:
            self.abort()
            raise ConfigError(f"video.codec={codec}: FFmpeg has no such encoder here (e.g. libx264, mpeg4, ffv1)") \
                from None
        self.s.width, self.s.height = w, h
        self.s.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"  # 4:2:0 needs even sides
        self.s.time_base = time_base
        if codec == "libx264":
            self.s.options = {"crf": str(crf)}
        self.packets: list[list[int | None]] = []
        self.frames, self.flicker_sum, self.flicker_pairs, self.time_base = 0, 0.0, 0, None

    def encode(self, frame) -> None:
        for p in self.s.encode(frame):
            self._mux(p)
        if frame is not None:
            self.frames += 1

    def _mux(self, p) -> None:
        self.time_base = str(p.time_base)
        self.packets.append([p.pts, p.dts, p.duration])
        self.c.mux(p)

    def finish(self, last_luma: np.ndarray) -> None:
        self.encode(None)
        self.c.close()
        os.replace(self.tmp, self.parts.video(self.k))
        np.save(self.parts.dir / f"{self.k:06d}.npy", last_luma)
        _write_json(self.parts.dir / f"{self.k:06d}.json", {
            "frames": self.frames, "time_base": self.time_base, "packets": self.packets,
            "flicker_sum": self.flicker_sum, "flicker_pairs": self.flicker_pairs})

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # the error that stopped the run is the one to report
            self.c.close()
        self.tmp.unlink(missing_ok=True)


def upscale_video(ups, src: str | Path, dst: str | Path, batch: int = 4, codec: str = "libx264", crf: int = 18,
                  segment: int = 120, log_every: float = 30.0) -> dict:
    """``ups``: an :class:`srexp.cli.upscale.Upscaler`. Returns the frame count, output size, fps, whether audio
    was copied, the frames that went through the net in this run (the others were done by an earlier run) and the
    flicker of the output and of the input."""
    import av

    src, dst = Path(src), Path(dst)
    if batch < 1:
        raise ConfigError(f"batch={batch}: needs at least 1 frame")
    if segment < 0:
        raise ConfigError(f"video.segment={segment}: needs 0 (one part) or more frames")
    inp = _open(src)
    parts = None
    try:
        vin = inp.streams.video[0]
        fps = vin.average_rate or vin.guessed_rate or Fraction(25)
        w, h = vin.codec_context.width * ups.scale, vin.codec_context.height * ups.scale
        time_base = vin.time_base or Fraction(1, int(round(fps)) or 25)
        total = vin.frames or (round(inp.duration / 1e6 * fps) if inp.duration else None)
        seg_len = segment if segment > 0 else sys.maxsize
        parts = Parts(dst, fingerprint(ups, src, {"codec": codec, "crf": crf, "segment": segment,
                                                  "suffix": dst.suffix.lower()}))
        done = parts.done()
        skip = sum(d["frames"] for d in done)
        if done:
            log.info("resumed: %d of %s frames already done (%d segments in %s)", skip, total or "?", len(done),
                     parts.dir)
        prev_out = parts.last_luma(len(done) - 1) if done else None
        prog = Progress(total, skip, log_every, f"×{ups.scale}")
        seg: Segment | None = None
        pending: list[tuple[int | None, Fraction | None, np.ndarray]] = []
        n = ran = 0
        in_sum, in_pairs, prev_in = 0.0, 0, None

        def flush() -> None:
            nonlocal prev_out, ran
            if not pending:
                return
            big = ups(np.stack([a for _, _, a in pending]).transpose(0, 3, 1, 2))
            for (pts, tb, _), a in zip(pending, big):
                y = luma(a.transpose(1, 2, 0), ups.scale)
                if prev_out is not None:
                    seg.flicker_sum += float(np.abs(y - prev_out).mean())
                    seg.flicker_pairs += 1
                prev_out = y
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(a.transpose(1, 2, 0)), format="rgb24")
                vf.pts, vf.time_base = (pts, tb) if pts is not None else (seg.frames + seg.k * seg_len, 1 / fps)
                seg.encode(vf)
            ran += len(pending)
            prog.advance(len(pending))
            pending.clear()

        try:
            for frame in _frames(inp):
                rgb = frame.to_ndarray(format="rgb24")
                y = luma(rgb)
                if prev_in is not None:
                    in_sum += float(np.abs(y - prev_in).mean())
                    in_pairs += 1
                prev_in = y
                if n >= skip:  # frames of finished segments are decoded for the input's flicker only
                    if seg is None or n // seg_len != seg.k:
                        flush()
                        if seg is not None:
                            seg.finish(prev_out)
                        seg = Segment(parts, n // seg_len, codec, crf, fps, time_base, w, h)
                    pending.append((frame.pts, frame.time_base, rgb))
                    if len(pending) >= batch:
                        flush()
                n += 1
                del frame
            flush()
            if seg is not None:
                seg.finish(prev_out)
                seg = None
        finally:
            prog.close()
            if seg is not None:
                seg.abort()
        if n < skip:
            raise ImageError(f"input={src}: {n} frames, fewer than the {skip} of the finished parts in {parts.dir} "
                             f"(delete that folder to start over)")
        audio = _join(parts, src, dst, fps)
    except BaseException as e:
        if parts is not None and not parts.done():  # nothing to resume from: leave no folder behind
            shutil.rmtree(parts.dir, ignore_errors=True)
        if isinstance(e, SrexpError) or not isinstance(e, (av.error.FFmpegError, ValueError)):
            raise
        raise ImageError(f"{src} → {dst}: {str(e).splitlines()[0][:200]}") from None
    finally:
        inp.close()
    segs = parts.done()
    shutil.rmtree(parts.dir)
    out_pairs = sum(d["flicker_pairs"] for d in segs)
    flicker = {"output": sum(d["flicker_sum"] for d in segs) / out_pairs if out_pairs else None,
               "input": in_sum / in_pairs if in_pairs else None}
    return {"frames": n, "width": w, "height": h, "fps": float(fps), "audio": audio, "net_frames": ran,
            "resumed_frames": skip, "flicker": flicker}


def _join(parts: Parts, src: Path, dst: Path, fps: Fraction) -> bool:
    """The segments' video packets and the input's audio packets, merged in time order, into ``dst`` (written
    beside it and renamed, so ``dst`` is never half-written). Returns whether there was audio."""
    import av

    segs = parts.done()
    if not segs:
        raise ImageError(f"input={src}: no video frames could be decoded")
    inp = _open(src)
    ain = inp.streams.audio[0] if inp.streams.audio else None
    tmp = parts.dir / f"joined.tmp{parts.suffix}"
    first = av.open(str(parts.video(0)))
    out = av.open(str(tmp), "w")
    try:
        vout = out.add_stream_from_template(first.streams.video[0])
        header = first.streams.video[0].codec_context.extradata
        aout = out.add_stream_from_template(ain) if ain is not None else None

        # Each segment's encoder started with its own reordering delay (B-frames; none in a short last segment), so
        # its decoding timestamps (dts) are remade for the joined stream as one encoder with the largest delay makes
        # them: dts of packet i = the i-th smallest pts, ``delay`` frames earlier (the segments' pts ranges follow
        # each other, so the order of all pts is the segments' orders one after the other).
        tb = Fraction(segs[0]["time_base"])
        if any(Fraction(d["time_base"]) != tb for d in segs):
            raise ImageError(f"{parts.dir}: segments with different time bases; delete it to start over")
        delay = max(sum(dts < min(r[0] for r in d["packets"]) for _, dts, _ in d["packets"]) for d in segs)
        step = max(1, round(1 / (Fraction(fps) * tb)))
        first_pts = min(r[0] for r in segs[0]["packets"])
        dts_order = chain((first_pts - (delay - i) * step for i in range(delay)),
                          chain.from_iterable(sorted(r[0] for r in d["packets"]) for d in segs))

        def video():
            for k, d in enumerate(segs):
                with av.open(str(parts.video(k))) as c:
                    s = c.streams.video[0]
                    if s.codec_context.extradata != header:
                        raise ImageError(f"{parts.video(k)}: encoded with other codec headers than the first "
                                         f"segment; delete {parts.dir} to start over")
                    records, i = d["packets"], 0
                    mismatch = ImageError(f"{parts.video(k)}: its packets do not match its record {k:06d}.json; "
                                          f"delete {parts.dir} to start over")
                    for p in c.demux(s):
                        if not p.size:
                            continue
                        if i == len(records):
                            raise mismatch
                        p.time_base = tb
                        p.pts, _, p.duration = records[i]
                        p.dts = next(dts_order)
                        p.stream = vout
                        i += 1
                        yield p
                    if i != len(records):
                        raise mismatch

        def audio():
            if ain is None:
                return
            for p in inp.demux(ain):
                if p.dts is not None:  # the demuxer's final empty packet carries no data
                    yield p

        def when(p) -> Fraction:
            return p.dts * p.time_base

        for p in merge(video(), audio(), key=when):
            if p.stream is ain:
                p.stream = aout
            out.mux(p)
    finally:
        out.close()
        first.close()
        inp.close()
    os.replace(tmp, dst)
    return ain is not None
