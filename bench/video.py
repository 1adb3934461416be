"""Peak memory of srexp-upscale on a video does not grow with the clip's length: the same command on a short and a
long synthetic old-footage clip (srexp.data.old_footage: noise + JPEG per frame, AAC audio), each in its own
process, its peak RSS read with getrusage.

    python bench/video.py [--frames 30 300] [--size 320x240] [--scale 2] [--segment 120] [-- ckpt=model.safetensors]

Without a ``ckpt=`` after ``--`` the net is MATLAB bicubic (``arch=bicubic``): the cost is the video path (decode,
batches, encode, join), not a net. Prints, per clip, the frames, peak RSS, wall time and frames/s, and what keeping
every output frame would add (frames × output frame bytes), to compare the growth against.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MEASURE = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.stderr.write(r.stdout[-600:] + r.stderr[-1500:])
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[30, 300])
    ap.add_argument("--size", default="320x240", help="input frame size WxH")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--segment", type=int, default=120)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("overrides", nargs="*", help="srexp-upscale overrides after --, e.g. ckpt=model.safetensors")
    args = ap.parse_args()
    from srexp.data.old_footage import old_footage

    w, h = map(int, args.size.split("x"))
    net = args.overrides or ["arch=bicubic", f"scale={args.scale}"]
    print(f"# srexp-upscale on a video: peak RSS vs clip length — {machine()}")
    print(f"{w}×{h} ×{args.scale}, batch {args.batch}, segment {args.segment}, {' '.join(net)}\n")
    print("| frames | peak RSS | time | frames/s | keeping every output frame would add |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.frames:
            src = old_footage(Path(tmp) / f"clip{n}.mp4", frames=n, size=(w, h))
            cmd = [sys.executable, "-m", "srexp.cli.upscale", *net, f"input={src}", f"output={Path(tmp) / 'out.mp4'}",
                   f"batch={args.batch}", f"video.segment={args.segment}"]
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, cwd=REPO)
            dt = time.perf_counter() - t
            rc, kb = r.stdout.split()
            if rc != "0":
                sys.exit(f"srexp-upscale failed ({rc}): {r.stderr}")
            frame_mb = w * h * args.scale**2 * 3 / 2**20
            print(f"| {n} | {int(kb) / 1024:.0f} MB | {dt:.1f} s | {n / dt:.1f} | {n * frame_mb:.0f} MB |")
    print(f"\n(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; times include the "
          "interpreter's start, torch's import and the join)")


if __name__ == "__main__":
    main()
