"""Every command the README and each ``--help`` shows, run as written: placeholders (``DIR``, ``/data``,
``outputs/…/last.ckpt``, ``photo.png``) become real files, trainings are shrunk by appended overrides (2 steps, no
test-set table), and each command succeeds or stops with one ``<command>: error:`` line. The commands run in this
process, one after another (a checkpoint one makes is the next one's ``outputs/…/last.ckpt``), so the test costs one
import of torch and Lightning, not one per command.

A command added to the README or a ``--help`` is picked up by itself; one that cannot run here must be listed in
:data:`NOT_RUN` with the reason and the test that covers it.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch

from conftest import REPO, data_root, shrink, write_images
from test_dfdnet import NET

pytestmark = pytest.mark.slow

MODULES = {"srexp-train": "srexp.cli.train", "srexp-eval": "srexp.cli.evaluate", "srexp-upscale": "srexp.cli.upscale",
           "srexp-export": "srexp.cli.export", "srexp-face": "srexp.cli.face", "srexp-data": "srexp.cli.data",
           "srexp-report": "srexp.cli.report"}
# Commands that are not run here, each with why and what runs them instead.
NOT_RUN = {
    "make train": "the quick start: .ci/run and the closing notes run it in a fresh clone",
    "make test": "this test suite itself (.ci/run)",
    "python3 -m venv .venv": "the install: .ci/run installs the project this way",
    "python bench/": "benchmarks of minutes to hours: their --help runs here (the argument parser and imports)",
    "hydra/launcher=slurm_gpu": "no GPU partition here: composed (--cfg hydra); slurm_cpu runs in tests/test_slurm.py",
    "trainer=ddp": "composed (--cfg job); DDP trains in tests/test_train.py and tests/test_slurm.py",
}
COMPOSE_ONLY = {"hydra/launcher=slurm_gpu": "--cfg=hydra", "trainer=ddp": "--cfg=job"}
TRAIN_SHRINK = [*shrink(steps=2, val_every=2, patch=None, width=8), "test_sets=[]", "trainer.limit_val_batches=1",
                "callbacks.image_grid=null",
                "callbacks.progress_bar=null", "trainer.enable_progress_bar=false", "data.batch_size=2"]
# a sweep shrunk to one or two jobs: a swept key given on the command line replaces the sweep's values for it
SWEEP_SHRINK = {"+sweep=compare_upsampling_cpu": ["net/strategy=post", "net/upsample=pixel_shuffle,interpolate"],
                "+sweep=compare_upsampling": ["net/strategy=post", "net/upsample=pixel_shuffle", "seed=0"],
                "+hparams_search=lr_width": ["hydra.sweeper.n_trials=1"]}


def code_commands(text: str) -> list[str]:
    """Shell commands (srexp-*, make, python bench/…) in the text's fenced blocks and indented help examples,
    trailing comments and ``[optional …]`` parts removed, continuation lines joined."""
    out, buf = [], ""
    for line in text.splitlines():
        line = line.rstrip()
        if buf:
            line, buf = buf + " " + line.strip(), ""
        if line.endswith("\\"):
            buf = line[:-1].rstrip()
            continue
        s = re.sub(r"\s+(#|\().*$", "", line).strip()  # a comment, or a help line's "(a sweep)" note
        s = re.sub(r"\s*\[[^\]=]*=[^\]]*…?\]$", "", s)  # srexp-face's "[net.num_atoms=512 …]"
        s = re.sub(r"\s+…\]", "]", s)  # "images=[DIR …]": one folder stands for the list
        s = re.sub(r"<(\w+) (\w+)>", r"<\1_\2>", s)  # "<sweep folder>": one word
        if re.match(r"^(?:[A-Z_]+=\S+\s+)*(?:srexp-[a-z]+(?:\s|$)|python3? (?:bench/|-m venv)|make \w+)", s):
            out.append(s)
    return list(dict.fromkeys(out))


def fenced(text: str) -> str:
    return "\n".join(re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S))


def run_inprocess(name: str, args: list[str]) -> tuple[int, str, str]:
    """``name args`` through the command's own entry point (Hydra included), in this process."""
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    mod = importlib.import_module(MODULES[name])
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, [name, *args]
    rc = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if name in ("srexp-data", "srexp-report"):
                mod.main(args)
            else:
                mod.main()
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - a traceback is what the test reports
        rc, _ = 1, err.write(traceback.format_exc())
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()
    return rc, out.getvalue(), err.getvalue()


def help_texts() -> dict[str, str]:
    return {name: "\n".join(run_inprocess(name, ["--help"])[1:]) for name in MODULES}


class Files:
    """The real files behind the placeholders, made once; ``last_ckpt`` follows the trainings."""

    def __init__(self, root: Path, data: Path | None):
        self.root, self.data = root, data
        write_images(root / "train", n=3, size=(72, 72))  # ≥ the default HR patch (64)
        write_images(root / "val", n=2, size=(48, 48), seed=1)
        write_images(root / "photos", n=2, size=(24, 20), seed=2)
        self.photo = root / "photos" / sorted(p.name for p in (root / "photos").iterdir())[0]
        self.sr_ckpt: Path | None = None
        self.face_ckpt: Path | None = None
        self.sweep: Path | None = None
        self.runs = 0
        self.first_run: Path | None = None

    def faces(self) -> Path | None:
        d = self.data / "faces" / "CodeFormer_cropped_faces" if self.data else None
        return d if d and d.is_dir() else None

    def community(self, name: str) -> Path:
        """A tiny file in the official layout the name suggests (EDSR-PyTorch's, else Real-ESRGAN's Compact)."""
        from test_foreign import compact_file, edsr_file

        path = self.root / name
        if not path.exists():
            torch.save(edsr_file(8, 1, 2) if "edsr" in name else compact_file(8, 1, 4), path)
        return path

    def video(self) -> Path:
        v = self.root / "clip.mp4"
        if not v.exists():
            from test_upscale import make_video

            make_video(v, frames=4)
        return v


def concrete(cmd: str, f: Files) -> tuple[str, list[str], dict] | str:
    """The command with its placeholders made real and its training shrunk: (name, args, env), or why it is skipped."""
    env = {}
    words = cmd.split()
    while re.fullmatch(r"[A-Z_]+=\S+", words[0]):
        k, v = words.pop(0).split("=", 1)
        env[k] = str(f.data) if v == "/data" else v
    name, args = words[0], words[1:]
    if f.data is None and (env.get("SREXP_DATA") or any(a.startswith(("experiment=", "model=", "eval.", "data=sets",
                                                                        "arch=bicubic")) for a in args)):
        return "needs the reference data (SREXP_DATA)"
    face_ckpt = name == "srexp-face"
    subs = []
    for a in args:
        key, _, val = a.partition("=")
        if val in ("DIR",) and key in ("data.train_dir", "data.val_dir"):
            val = str(f.root / ("train" if key == "data.train_dir" else "val"))
        elif "last.ckpt" in val:
            ckpt = f.face_ckpt if face_ckpt else f.sr_ckpt
            if ckpt is None:
                return "no checkpoint made yet by an earlier command"
            val = str(ckpt)
        elif key == "ckpt" and val.endswith((".pth", ".pt")):  # an official file (docs/community_checkpoints.md)
            val = str(f.community(val))
        elif val == "model.safetensors":
            val = str(f.root / "model.safetensors")
        elif val == "model.onnx" and key == "ckpt":  # the README's srexp-export out=model.onnx wrote it
            val = str(f.root / "out" / "model.onnx")
        elif val == "dict.safetensors":
            val = str(f.root / "dict.safetensors")
        elif key == "images" or key in ("data.train", "data.val") and "/" in val:  # face folders
            if f.faces() is None:
                return "needs face crops under the data root"
            val = f"[{f.faces()}]"
        elif key == "input":
            if val.startswith(("face", "FACE")):
                if f.faces() is None:
                    return "needs face crops under the data root"
                val = str(sorted(f.faces().glob("*.png"))[0])
            elif val.endswith(".mp4"):
                val = str(f.video())
            elif val.endswith("/"):
                val = str(f.root / "photos")
            else:
                val = str(f.photo)
        elif key in ("output", "out"):
            first = val.split("|")[0]
            val = str(f.root / "out" / Path(first.rstrip("/")).name) + ("/" if first.endswith("/") else "")
        elif key == "hydra.run.dir" and "resume=true" in args:
            if f.first_run is None:
                return "no run folder made yet by an earlier command"
            val = str(f.first_run)
        elif a.startswith("outputs/multirun/"):
            if f.sweep is None:
                return "no sweep folder made yet by an earlier command"
            a = str(f.sweep)
        elif a == "291" and name == "srexp-data":
            pass
        subs.append(f"{key}={val}" if "=" in a and not a.startswith("outputs/") else a)
    if name == "srexp-data" and "--root" not in subs:
        subs = ["--root", str(f.data or f.root), *subs]
    if name == "srexp-train":
        for marker, flag in COMPOSE_ONLY.items():
            if marker in cmd:  # composed only: no -m (Hydra takes one mode)
                return name, [*[a for a in subs if a != "-m"], flag], env
        multirun = "-m" in subs or "+hparams_search=lr_width" in subs
        extra = [o for m, os_ in SWEEP_SHRINK.items() if m in subs for o in os_]
        resume = "resume=true" in subs
        if resume:  # a resume takes the run's own overrides; nothing is appended
            return name, subs, env
        f.runs += 1
        where = (f"hydra.sweep.dir={f.root / f'sweep{f.runs}'}" if multirun
                 else f"hydra.run.dir={f.root / f'run{f.runs}'}")
        face = any(a.startswith("experiment=dfdnet") for a in subs)
        shrink_ = FACE_SHRINK if face else TRAIN_SHRINK
        keys = {o.split("=", 1)[0] for o in [*shrink_, *extra]}
        subs = [a for a in subs if a.split("=", 1)[0] not in keys]  # the shrunk value wins
        return name, [*subs, *shrink_, *extra, where], env
    if name == "srexp-face" and subs and subs[0] == "build-dictionary":
        return name, [*subs, *FACE_NET, "device=cpu"], env
    return name, subs, env


FACE_NET = NET  # test_dfdnet's tiny DFDNet (64-px faces, 4 atoms, 4 features, random encoder)
FACE_SHRINK = [*FACE_NET, *shrink(steps=2, val_every=2, patch=None, width=None),
               "task.loss.perceptual.pretrained=false", "task.loss.style.pretrained=false",
               "task.discriminator.num_feat=8", "task.discriminator.num_layers=2",
               "callbacks.progress_bar=null", "trainer.enable_progress_bar=false", "trainer.limit_val_batches=1"]


def one_line(err: str, name: str) -> bool:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return "Traceback" not in err and sum(ln.startswith(f"{name}: error:") for ln in lines) == 1


def test_every_readme_and_help_command_runs_or_stops_in_one_line(tmp_path, monkeypatch):
    data = data_root()
    f = Files(tmp_path, data)
    readme = code_commands(fenced((REPO / "README.md").read_text()))
    helps = help_texts()
    from_help = [c for text in helps.values() for c in code_commands(text)]
    assert "srexp-train arch=vdsr scale=3 channels=1 protocol=y_float" in from_help  # the extraction works
    assert len(readme) >= 30, readme
    commands = list(dict.fromkeys(readme + from_help))
    ran, skipped, failed = [], [], []
    user = {"SREXP_DATA": data} if data else {}  # a user who set up the data root as the README says
    for k, v in {"SREXP_OUTPUTS": tmp_path / "outputs", "OMP_NUM_THREADS": 1, "WANDB_MODE": "offline",
                 "WANDB_SILENT": "true", "SREXP_CACHE": tmp_path / "cache", **user}.items():
        monkeypatch.setenv(k, str(v))
    for cmd in commands:
        bare = re.sub(r"^(?:[A-Z_]+=\S+\s+)*", "", cmd)
        reason = next((r for m, r in NOT_RUN.items() if bare.startswith(m) and m not in COMPOSE_ONLY), None)
        if reason:
            if bare.startswith("python bench/"):
                script = bare.split()[1]
                r = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True,
                                   cwd=REPO, timeout=120)
                (ran if r.returncode == 0 else failed).append((cmd, f"--help: rc {r.returncode} "
                                                                    f"{r.stderr[-500:]}"))
            else:
                skipped.append((cmd, reason))
            continue
        plan = concrete(cmd, f)
        if isinstance(plan, str):
            skipped.append((cmd, plan))
            continue
        name, args, env = plan
        t0 = time.perf_counter()
        with monkeypatch.context() as m:  # the command's own VAR=value prefix
            for k, v in env.items():
                m.setenv(k, v)
            rc, out, err = run_inprocess(name, args)
        took = f"{time.perf_counter() - t0:.1f} s"
        if rc == 0:
            ran.append((cmd, f"ok ({took})"))
            run_dir = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")), None)
            sweep = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.sweep.dir=")), None)
            if run_dir and (Path(run_dir) / "checkpoints" / "last.ckpt").is_file():
                ckpt = Path(run_dir) / "checkpoints" / "last.ckpt"
                if "dfdnet" in cmd:
                    f.face_ckpt = ckpt
                else:
                    f.sr_ckpt = ckpt
                    f.first_run = f.first_run or Path(run_dir)
            if sweep and Path(sweep).is_dir():
                f.sweep = Path(sweep)
        elif one_line(err, name):
            first = next(ln for ln in err.splitlines() if ln.startswith(f"{name}: error:"))
            ran.append((cmd, f"one line ({took}): {first}"))
        else:
            failed.append((cmd, f"rc {rc}: {err[-1500:]}"))
    report = "\n".join(f"  {c}\n      {w}" for c, w in ran + skipped + failed)
    print(f"\nran {len(ran)}, skipped {len(skipped)}, failed {len(failed)}\n{report}")
    assert not failed, "\n\n".join(f"{c}\n{w}" for c, w in failed)
    must = [c for c, why in skipped if "earlier command" in why]
    assert not must, f"skipped for want of an earlier command's output (reorder or add a step): {must}"
