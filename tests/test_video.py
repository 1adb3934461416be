"""srexp-upscale on videos: a synthetic old-footage clip (srexp's Degradation: noise + JPEG, with audio) restored end
to end, streamed in bounded memory, resumed after a failure without redoing finished frames, started over when a
setting changed, and resumed after a SIGKILL."""
import gc
import logging
import signal
import subprocess
import sys
import time
from fractions import Fraction

import numpy as np
import pytest
import torch

from conftest import REPO, compose_cfg
from srexp.cli.upscale import Upscaler, run
from srexp.data import video
from srexp.data.old_footage import old_footage
from srexp.ops.resize import imresize

FRAMES = 20
UPSCALE = Upscaler.__call__


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return old_footage(tmp_path_factory.mktemp("clip") / "old.mp4", frames=FRAMES, size=(64, 48))


def cfg(src, dst, *over):
    return compose_cfg("upscale", [f"input={src}", f"output={dst}", "scale=2", "batch=3", "video.segment=6",
                                   "tile=32", *over])


def decode(path):
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [(f.pts * f.time_base, f.to_ndarray(format="rgb24")) for f in c.decode(v)]
        audio = None
        if c.streams.audio:  # the end of its last packet (Matroska keeps no stream duration)
            a = c.streams.audio[0]
            c.seek(0)
            end = max((p.pts + p.duration) * p.time_base for p in c.demux(a) if p.pts is not None)
            audio = (a.codec_context.name, float(end - frames[0][0]))  # from the first frame's time
        return v.average_rate, (v.codec_context.width, v.codec_context.height), frames, audio


class NetCounter:
    """Counts the frames that go through the net; raises after ``fail_after`` of them (a crash mid-clip)."""

    def __init__(self, monkeypatch, fail_after=None):
        self.frames, self.fail_after = 0, fail_after
        call = UPSCALE

        def counted(ups, src, dtype=None):
            if self.fail_after is not None and self.frames + len(src) > self.fail_after:
                raise RuntimeError("injected failure")
            self.frames += len(src)
            return call(ups, src, dtype)

        monkeypatch.setattr(Upscaler, "__call__", counted)


def test_old_footage_restored_end_to_end(clip, tmp_path, capsys):
    dst = tmp_path / "out" / "old_x2.mp4"
    summary = run(cfg(clip, dst))
    assert summary["frames"] == summary["net_frames"] == FRAMES and summary["resumed_frames"] == 0
    assert summary["audio"] and (summary["width"], summary["height"]) == (128, 96)
    printed = capsys.readouterr().out
    fl = summary["flicker"]
    assert f"flicker: output {fl['output']:.2f} vs input {fl['input']:.2f}" in printed
    assert 0 < fl["output"] < fl["input"]  # bicubic smooths the noise a little
    assert not dst.with_name("old_x2.mp4.parts").exists()

    rate_in, _, frames_in, audio_in = decode(clip)
    rate, size, frames, audio = decode(dst)
    assert rate == rate_in == Fraction(12) and size == (128, 96)
    assert [t for t, _ in frames] == [t for t, _ in frames_in]  # every frame, the same timestamps
    assert audio[0] == audio_in[0] == "aac" and abs(audio[1] - audio_in[1]) < 1e-6  # the packets copied
    # frame k is the bicubic ×2 of input frame k (up to x264 at crf 18 on the noise), in order across the segments' joins
    for k in (0, 5, 6, 11, 12, 19):
        ref = imresize(torch.from_numpy(frames_in[k][1]).permute(2, 0, 1)[None].float() / 255, scale=2)
        ref = np.round(ref[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255)
        err = [np.abs(frames[j][1] - ref).mean() for j in range(FRAMES)]
        assert int(np.argmin(err)) == k and err[k] < 5 < min(err[:k] + err[k + 1 :]) / 3, (k, err)


def test_streamed_in_bounded_memory(clip, tmp_path, monkeypatch):
    """Between decoding and encoding there are never more than ``batch`` frames, and decoded frames are not kept."""
    import av

    decoded, encoded, in_flight, alive = [0], [0], [], []
    frames, encode = video._frames, video.Segment.encode

    def counted_frames(container):
        for f in frames(container):
            decoded[0] += 1
            in_flight.append(decoded[0] - encoded[0])
            yield f

    def counted_encode(seg, frame):
        if frame is not None:
            encoded[0] += 1
            if encoded[0] in (1, FRAMES):
                gc.collect()
                alive.append(sum(type(o) is av.VideoFrame for o in gc.get_objects()))
        encode(seg, frame)

    monkeypatch.setattr(video, "_frames", counted_frames)
    monkeypatch.setattr(video.Segment, "encode", counted_encode)
    run(cfg(clip, tmp_path / "a.mp4", "batch=4", "video.segment=0"))
    assert decoded[0] == encoded[0] == FRAMES
    assert max(in_flight) == 4  # a batch is full when the net runs, then it is all encoded
    # the batch's pictures (its RGB arrays are views of them), the decoder's and the encoder's current ones: the same
    # few at the last frame as at the first, where keeping the decoded frames would make it FRAMES
    assert max(alive) <= 4 + 4 < FRAMES, alive


def test_resumes_after_a_failure_without_redoing_frames(clip, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="srexp.data.video")
    whole = run(cfg(clip, tmp_path / "whole.mp4", "video.crf=30"))
    dst, parts = tmp_path / "resumed.mp4", tmp_path / "resumed.mp4.parts"
    NetCounter(monkeypatch, fail_after=15)  # segments of 6 frames: 0 and 1 finished, 2 half-done
    with pytest.raises(RuntimeError, match="injected"):
        run(cfg(clip, dst))
    assert sorted(p.name for p in parts.glob("*.json")) == ["000000.json", "000001.json", "manifest.json"]
    assert not dst.exists()

    # another setting: those parts are not used
    counter = NetCounter(monkeypatch, fail_after=15)
    with pytest.raises(RuntimeError):
        run(cfg(clip, dst, "video.crf=30"))
    assert counter.frames == 15  # started from frame 0: 5 batches of 3, the sixth failed
    assert "made from another input, model or settings: starting over" in caplog.text
    assert "resumed:" not in caplog.text

    counter = NetCounter(monkeypatch)
    summary = run(cfg(clip, dst, "video.crf=30"))
    assert counter.frames == summary["net_frames"] == FRAMES - 12 and summary["resumed_frames"] == 12
    assert f"resumed: 12 of {FRAMES} frames already done" in caplog.text
    assert summary["flicker"] == pytest.approx(whole["flicker"], abs=1e-9)  # the pairs across the restart counted
    assert [a.tolist() for _, a in decode(dst)[2]] == [a.tolist() for _, a in decode(tmp_path / "whole.mp4")[2]]
    assert not parts.exists()


def test_other_weights_start_over(clip, tmp_path, monkeypatch, caplog):
    """A trained net's checkpoint (tiled with its receptive field), into Matroska: parts of other weights (same
    layers) are not used."""
    from test_upscale import fake_checkpoint

    caplog.set_level(logging.INFO, logger="srexp.data.video")
    ckpt_a, _ = fake_checkpoint(tmp_path / "a.ckpt")
    state = torch.load(ckpt_a, weights_only=True)
    key = next(k for k in state["state_dict"] if k.endswith("weight"))
    state["state_dict"][key] = state["state_dict"][key] + 0.01
    torch.save(state, tmp_path / "b.ckpt")
    dst = tmp_path / "net.mkv"
    NetCounter(monkeypatch, fail_after=6)
    with pytest.raises(RuntimeError):
        run(compose_cfg("upscale", [f"ckpt={ckpt_a}", f"input={clip}", f"output={dst}", "batch=3", "tile=32",
                                    "video.segment=6"]))
    assert (tmp_path / "net.mkv.parts" / "000000.json").is_file()
    counter = NetCounter(monkeypatch)
    summary = run(compose_cfg("upscale", [f"ckpt={tmp_path / 'b.ckpt'}", f"input={clip}", f"output={dst}", "batch=3",
                                          "tile=32", "video.segment=6"]))
    assert counter.frames == summary["net_frames"] == summary["frames"] == FRAMES
    assert "starting over" in caplog.text and "resumed:" not in caplog.text
    rate, size, frames, audio = decode(dst)
    assert rate == 12 and size == (128, 96) and len(frames) == FRAMES
    # within one AAC frame: Matroska gives the last packet a whole frame's duration
    assert audio[0] == "aac" and abs(audio[1] - decode(clip)[3][1]) < 1024 / 16000


@pytest.mark.slow
def test_resumes_after_sigkill(tmp_path):
    src = old_footage(tmp_path / "long.mp4", frames=60, size=(64, 48))
    dst = tmp_path / "long_x2.mp4"
    cmd = [sys.executable, "-m", "srexp.cli.upscale", "arch=bicubic", "scale=2", f"input={src}", f"output={dst}",
           "video.segment=5", "batch=1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts = tmp_path / "long_x2.mp4.parts"
    deadline = time.time() + 120
    while not (parts / "000001.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    done = len(list(parts.glob("0*.json")))
    assert 2 <= done < 12 and not dst.exists()  # 12 segments of 5 frames

    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    resumed = [line for line in (r.stdout + r.stderr).splitlines() if "resumed:" in line]
    assert resumed and f"resumed: {5 * done} of 60 frames already done" in resumed[0]
    assert f"{5 * done} frames from the interrupted run" in r.stdout and "flicker: output" in r.stdout
    rate, size, frames, audio = decode(dst)
    assert rate == 12 and size == (128, 96) and len(frames) == 60 and audio[0] == "aac"
    assert [t for t, _ in frames] == [Fraction(k, 12) for k in range(60)]
    assert not parts.exists()


def test_bad_settings_are_one_line_and_leave_no_parts(clip, tmp_path):
    from srexp.errors import ConfigError

    foreign = tmp_path / "a.mp4.parts"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"a.mp4.parts exists and is not srexp-upscale's parts folder"):
        run(cfg(clip, tmp_path / "a.mp4"))
    assert (foreign / "notes.txt").read_text() == "mine"  # never deleted
    with pytest.raises(ConfigError, match=r"^video.codec=nope: FFmpeg has no such encoder"):
        run(cfg(clip, tmp_path / "b.mp4", "video.codec=nope"))
    with pytest.raises(ConfigError, match=r"^video.segment=-1: needs 0"):
        run(cfg(clip, tmp_path / "b.mp4", "video.segment=-1"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4.parts"]
