"""Exact resume: a run SIGKILLed mid-epoch and resumed ends bit-identical to an uninterrupted one; atomic
checkpoints; the run folder found by its overrides; NaN stops the run and keeps the last good checkpoint."""
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, ckpt_step, run_cli, shrink, train_losses
from srexp.cli import with_resume_dir
from srexp.errors import ConfigError
from srexp.training.resume import AtomicCheckpointIO, find_run, identity_overrides

STEPS, KILL_AT = 12, 6


def common(folders) -> list[str]:
    return shrink("data=folder", f"data.train_dir={folders / 'train'}", f"data.val_dir={folders / 'val'}",
                  "callbacks.last_checkpoint.every_n_train_steps=2", "callbacks.progress_bar=null",
                  "callbacks.image_grid=null", "task.ema_decay=0.9", steps=STEPS, val_every=4)


def env(outputs: Path) -> dict:
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "SREXP_OUTPUTS": str(outputs),
            "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}


def net_weights(path: Path) -> dict:
    sd = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in sd.items() if k.startswith(("net.", "net_ema."))}


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_identical(folders, tmp_path):
    base = common(folders)
    # 1. uninterrupted
    ref = tmp_path / "ref"
    r = subprocess.run([sys.executable, "-m", "srexp.cli.train", *base, f"hydra.run.dir={ref}"], capture_output=True,
                       text=True, env=env(tmp_path / "unused"), cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    # 2. the same run, no run folder given, hung at step KILL_AT and SIGKILLed once last.ckpt holds that step
    outputs = tmp_path / "outputs"
    stall = ["+callbacks.stall._target_=stall_callback.Stall", f"+callbacks.stall.step={KILL_AT}"]
    kill_at([sys.executable, "-m", "srexp.cli.train", *base, *stall], outputs, KILL_AT)
    runs = [d.parent for d in outputs.glob("**/.hydra")]
    assert len(runs) == 1
    run = runs[0]
    # 3. resume: the same command + resume=true finds that folder by its overrides and continues it
    r = subprocess.run([sys.executable, "-m", "srexp.cli.train", *base, *stall, "resume=true"], capture_output=True,
                       text=True, env=env(outputs), cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming {run}" in r.stderr
    assert len(list(outputs.glob("**/.hydra"))) == 1  # no new run folder
    a, b = net_weights(ref / "checkpoints" / "last.ckpt"), net_weights(run / "checkpoints" / "last.ckpt")
    assert ckpt_step(ref / "checkpoints" / "last.ckpt") == ckpt_step(run / "checkpoints" / "last.ckpt") == STEPS
    assert a.keys() == b.keys() and any(k.startswith("net_ema.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the CSV log is continued, not wiped: the same losses at the same steps
    assert train_losses(ref) == train_losses(run)
    # the resumed run logs its own end-of-training telemetry (only the start-of-run model size is not repeated)
    rows = list(csv.DictReader((run / "csv" / "metrics.csv").open()))
    assert sum(bool(r.get("train/peak_mem_gb")) for r in rows) == 1
    assert sum(bool(r.get("model/params")) for r in rows) == 1


def kill_at(cmd: list[str], outputs: Path, step: int) -> None:
    """Start ``cmd`` (a run that stalls at ``step``) and SIGKILL it once its last.ckpt holds that step."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env(outputs), cwd=REPO)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and p.poll() is None:
            lasts = list(outputs.glob("**/checkpoints/last.ckpt"))
            if lasts and ckpt_step(lasts[0]) == step:
                break
            time.sleep(0.2)
        assert p.poll() is None, p.stderr.read()[-3000:]
        p.send_signal(signal.SIGKILL)
    finally:
        p.kill()
        p.wait()


@pytest.mark.slow
def test_readme_resume_continues_the_run_that_was_started(folders, tmp_path):
    """README: `srexp-train hydra.run.dir=DIR ...`, killed, then `srexp-train hydra.run.dir=DIR resume=true` alone:
    the saved overrides (max_steps, the schedule's length) win, the saved config is not rewritten, the final weights
    and the CSV log equal an uninterrupted run's; an override that changes the run is refused in one line."""
    base = common(folders)
    train = [sys.executable, "-m", "srexp.cli.train"]
    ref = tmp_path / "ref"
    r = subprocess.run([*train, *base, f"hydra.run.dir={ref}"], capture_output=True, text=True,
                       env=env(tmp_path / "unused"), cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "myrun"
    stall = ["+callbacks.stall._target_=stall_callback.Stall", f"+callbacks.stall.step={KILL_AT}"]
    kill_at([*train, *base, *stall, f"hydra.run.dir={run}"], run, KILL_AT)
    saved = {f: (run / f).read_bytes() for f in ("config.yaml", ".hydra/overrides.yaml", ".hydra/config.yaml")}
    r = subprocess.run([*train, f"hydra.run.dir={run}", "trainer.max_steps=99", "resume=true"], capture_output=True,
                       text=True, env=env(tmp_path / "unused"), cwd=REPO, timeout=600)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(
        "srexp-train: error: resume=true: trainer.max_steps=99 would change the run in"), r.stderr[-2000:]
    r = subprocess.run([*train, f"hydra.run.dir={run}", "resume=true"], capture_output=True, text=True,
                       env=env(tmp_path / "unused"), cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Previous log files" not in r.stderr + r.stdout and "not resumable" not in r.stderr + r.stdout
    assert ckpt_step(run / "checkpoints" / "last.ckpt") == ckpt_step(ref / "checkpoints" / "last.ckpt") == STEPS
    a, b = net_weights(ref / "checkpoints" / "last.ckpt"), net_weights(run / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert train_losses(ref) == train_losses(run)
    assert {f: (run / f).read_bytes() for f in saved} == saved  # config.yaml and .hydra/ as the run started


@pytest.mark.slow
def test_resume_without_a_checkpoint_is_one_line(tmp_path, folders, monkeypatch):
    r = run_cli("srexp.cli.train", *common(folders), f"hydra.run.dir={tmp_path / 'empty'}", "resume=true")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("srexp-train: error: resume=true: no checkpoints/last.ckpt")
    monkeypatch.setenv("SREXP_OUTPUTS", str(tmp_path))
    with pytest.raises(ConfigError, match="no run folder under"):
        with_resume_dir(["scale=2", "resume=true"])


def test_find_run_matches_overrides(tmp_path):
    for name, ov in [("a", ["scale=2"]), ("b", ["scale=4"]), ("c", ["scale=2", "resume=true"])]:
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in ov))
        (tmp_path / name / "checkpoints").mkdir()
        (tmp_path / name / "checkpoints" / "last.ckpt").write_bytes(b"x")
        time.sleep(0.02)
    assert find_run(tmp_path, ["scale=2", "resume=true"]) == tmp_path / "c"  # newest of a and c
    assert find_run(tmp_path, ["scale=4", "ckpt_path=last"]) == tmp_path / "b"
    assert find_run(tmp_path, ["scale=3"]) is None
    assert identity_overrides(["b=1", "a=2", "hydra.run.dir=x", "resume=true"]) == ["a=2", "b=1"]
    assert with_resume_dir(["scale=4", "resume=true", "hydra.run.dir=x"])[-1] == "hydra.run.dir=x"


def test_atomic_checkpoint_survives_a_failed_save(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"w": torch.ones(3)}, path)

    class Boom:
        def __reduce__(self):
            raise KeyboardInterrupt("killed mid-save")

    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"w": torch.zeros(3), "boom": Boom()}, path)
    assert torch.equal(io.load_checkpoint(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left


@pytest.mark.slow
def test_nan_loss_stops_with_one_line_and_keeps_last_good(tmp_path, folders):
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "srexp.cli.train", *common(folders), f"hydra.run.dir={run}",
                        "+callbacks.nan._target_=stall_callback.NanAt", "+callbacks.nan.step=5"],
                       capture_output=True, text=True, env=env(tmp_path), cwd=REPO, timeout=600)
    assert r.returncode == 2, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("srexp-train: error: train/loss is NaN/Inf at step 6") and "last.ckpt" in last, last
    assert "Traceback" not in r.stderr
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_finite_loss_lazy_mode_reads_rarely_but_before_every_save():
    """The accelerator path (no host sync per step), run on CPU tensors."""
    from types import SimpleNamespace

    from srexp.training.guards import FiniteLoss, NonFiniteError

    trainer = SimpleNamespace(global_step=0, callback_metrics={}, checkpoint_callback=None)
    module = torch.nn.Linear(2, 2)
    cb = FiniteLoss(check_every=10, lazy=True)
    for step, loss in enumerate([1.0, float("nan"), 2.0, 3.0], start=1):
        trainer.global_step = step
        cb.on_train_batch_end(trainer, module, {"loss": torch.tensor(loss)}, None, step)  # no raise: not read yet
    with pytest.raises(NonFiniteError, match="train/loss is NaN/Inf at step 2"):
        cb.on_save_checkpoint(trainer, module, {})
    cb = FiniteLoss(check_every=2, lazy=True)
    trainer.global_step = 1
    cb.on_train_batch_end(trainer, module, {"loss": torch.tensor(float("inf"))}, None, 0)
    trainer.global_step = 2
    with pytest.raises(NonFiniteError, match="at step 1"):
        cb.on_train_batch_end(trainer, module, {"loss": torch.tensor(1.0)}, None, 1)


def test_preemption_signal_saves_at_batch_end_and_stops(tmp_path, monkeypatch):
    """SIGUSR1 during step 2 of an in-process fit: last.ckpt holds step 3 (the batch that was running finishes), the
    fit stops with Preempted (exit status 75) at the next batch, nothing is requeued outside SLURM, and the process's
    own SIGUSR1 handler is back afterwards."""
    import lightning as L
    from torch import nn

    from srexp.training.preemption import PREEMPTED_EXIT, Preempted, Preemption
    from srexp.training.resume import AtomicCheckpointIO

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)
            self.seen = []

        def training_step(self, batch, i):
            self.seen.append(self.global_step)
            if self.global_step == 2:
                os.kill(os.getpid(), signal.SIGUSR1)
            return self.lin(batch).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    last = tmp_path / "checkpoints" / "last.ckpt"
    before = signal.getsignal(signal.SIGUSR1)
    model, cb = Tiny(), Preemption(str(last))
    trainer = L.Trainer(max_steps=10, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[cb],
                        plugins=[AtomicCheckpointIO()], default_root_dir=tmp_path)
    with pytest.raises(Preempted) as e:
        trainer.fit(model, torch.utils.data.DataLoader(torch.randn(40, 2), batch_size=2))
    assert e.value.code == PREEMPTED_EXIT and "SIGUSR1 at step 3" in e.value.message
    assert model.seen == [0, 1, 2]  # step 3 never started
    c = torch.load(last, weights_only=True)
    assert c["global_step"] == 3 and torch.equal(c["state_dict"]["lin.weight"], model.lin.weight.detach())
    assert signal.getsignal(signal.SIGUSR1) == before
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,  # no signal
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Preemption(str(last))])
    trainer.fit(Tiny(), torch.utils.data.DataLoader(torch.randn(40, 2), batch_size=2))
    assert trainer.global_step == 2 and signal.getsignal(signal.SIGUSR1) == before


def test_preemption_config_errors_and_requeue_detection(tmp_path, monkeypatch):
    from srexp.training.preemption import Preemption, slurm_job_id
    from srexp.training.resume import requeued

    with pytest.raises(ConfigError, match="callbacks.preemption.signals: 'SIGKILL'"):
        Preemption("x", signals=["SIGKILL"])
    with pytest.raises(ConfigError, match="'USR9'"):
        Preemption("x", signals=["USR9"])
    assert Preemption("x", signals=["usr2"]).signals == [signal.SIGUSR2]
    for k in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(k, raising=False)
    assert slurm_job_id() is None
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert slurm_job_id() == "42"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "40")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert slurm_job_id() == "40_2"  # a sweep's array task is requeued by its array id
    (tmp_path / "checkpoints").mkdir()
    assert not requeued(tmp_path)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert not requeued(tmp_path)  # restarted, but nothing to continue from
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert requeued(tmp_path)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    assert not requeued(tmp_path)
