"""Sweeps on a real SLURM cluster: scripts/slurm-local starts a one-node cluster (slurmctld + slurmd, no munge, no
cgroups) for this module; a 4-job sweep through hydra/launcher=slurm_cpu, each job a SLURM job, read by srexp-report;
DDP with 2 SLURM tasks (gloo) ending with the weights of the same run without SLURM. Skipped where slurm-wlm is not
installed (CI installs it with apt, .ci/run)."""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, ckpt_step, run_cli, shrink, train_losses

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("slurmctld") and shutil.which("slurmd") and shutil.which("sbatch")),
                       reason="slurm-wlm not installed (slurmctld/slurmd/sbatch): apt-get install -y slurm-wlm"),
]

SCRIPT = REPO / "scripts" / "slurm-local"
FAST = {"OMP_NUM_THREADS": "1"}


def _free_port_pair() -> int:
    """A port p with p and p+1 free (slurmctld, slurmd)."""
    for _ in range(50):
        p = random.randrange(20000, 40000)
        try:
            for q in (p, p + 1):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", q))
            return p
        except OSError:
            continue
    raise RuntimeError("no two free ports")


@pytest.fixture(scope="module")
def slurm():
    """A running one-node cluster; yields the environment its clients need (SLURM_CONF) and its folder."""
    folder = Path(tempfile.mkdtemp(prefix="srexp-slurm-"))
    env = {**os.environ, "SLURM_LOCAL_PORT": str(_free_port_pair())}
    r = subprocess.run(["bash", str(SCRIPT), "start", str(folder)], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    pids = [int((folder / f"{d}.pid").read_text()) for d in ("slurmctld", "slurmd")]
    yield {"SLURM_CONF": str(folder / "slurm.conf"), "SLURM_LOCAL_PORT": env["SLURM_LOCAL_PORT"]}, folder
    r = subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not folder.exists()
    for pid in pids:  # exactly the daemons it started are gone
        assert not Path(f"/proc/{pid}").exists(), pid


def completed_jobs(cluster: Path) -> list[dict]:
    """The job completion records (jobcomp/filetxt: the sacct of a cluster without slurmdbd)."""
    text = (cluster / "jobcomp.txt").read_text() if (cluster / "jobcomp.txt").exists() else ""
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in text.splitlines() if line.strip()]


def test_cluster_runs_srun(slurm):
    env, _ = slurm
    r = subprocess.run(["srun", "-n2", "hostname"], capture_output=True, text=True, env={**os.environ, **env},
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) == 2


def test_sweep_of_four_slurm_jobs_and_report(slurm, ddp_folders, tmp_path):
    env, cluster = slurm
    sweep = tmp_path / "sweep"
    t0 = time.time()
    r = run_cli("srexp.cli.train", "-m", "hydra/launcher=slurm_cpu",
                *shrink(*ddp_folders, "net.num_feat=4,8", "seed=0,1", width=None), f"hydra.sweep.dir={sweep}",
                env={**FAST, **env}, timeout=400)
    wall = time.time() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir()) == [".submitit", "0", "1", "2", "3", "multirun.yaml"]
    for job in ("0", "1", "2", "3"):
        d = sweep / job
        for f in ("val_metrics.json", "csv/metrics.csv", "checkpoints/last.ckpt", "config.yaml"):
            assert (d / f).is_file(), (job, f)
        assert json.loads((d / "val_metrics.json").read_text())["steps"] == 4
    # each job ran as a SLURM array task: its submitit log and the controller's completion record
    starts = sorted((sweep / ".submitit").glob("*_*/*_0_log.out"))
    assert len(starts) == 4 and all("Starting with JobEnvironment(job_id=" in p.read_text() for p in starts)
    array = {p.parent.name.split("_")[0] for p in starts}
    for _ in range(60):  # submitit returns on the result file; the controller records the job's end just after
        mine = [j for j in completed_jobs(cluster) if j.get("ArrayJobId") in array]
        if len(mine) >= 4:
            break
        time.sleep(0.5)
    assert len(mine) == 4 and all(j["JobState"] == "COMPLETED" for j in mine), mine
    first = min(time.mktime(time.strptime(j["StartTime"], "%Y-%m-%dT%H:%M:%S")) for j in mine)
    submit = min(time.mktime(time.strptime(j["SubmitTime"], "%Y-%m-%dT%H:%M:%S")) for j in mine)
    print(f"slurm sweep: submit -> first job running {first - submit:.0f} s (1 s resolution); "
          f"sweep wall time {wall:.1f} s")
    r = run_cli("srexp.cli.report", str(sweep), env={**FAST, **env})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "4 of 4 jobs finished" in r.stdout


def _weights(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def test_ddp_with_two_slurm_tasks_matches_local_ddp(slurm, ddp_folders, tmp_path):
    env, _ = slurm
    sweep, local = tmp_path / "sweep", tmp_path / "local"
    ddp = ["trainer=ddp", "trainer.devices=2", *shrink(*ddp_folders)]
    r = run_cli("srexp.cli.train", "-m", "hydra/launcher=slurm_cpu", "hydra.launcher.tasks_per_node=2",
                "hydra.launcher.cpus_per_task=1", *ddp, f"hydra.sweep.dir={sweep}", env={**FAST, **env}, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir()) == [".submitit", "0", "multirun.yaml"]  # one run folder
    run = sweep / "0"
    m = json.loads((run / "val_metrics.json").read_text())
    assert m["world_size"] == 2 and m["steps"] == 4 and m["n_images"] == 3
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best-4.ckpt", "last.ckpt"]
    logs = sorted((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2  # two SLURM tasks, rank 0 and rank 1
    r = run_cli("srexp.cli.train", *ddp, f"hydra.run.dir={local}", env=FAST)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _weights(run / "checkpoints" / "last.ckpt"), _weights(local / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_failing_job_is_one_line_and_the_others_finish(slurm, ddp_folders, tmp_path):
    env, _ = slurm
    sweep = tmp_path / "sweep"
    r = run_cli("srexp.cli.train", "-m", "hydra/launcher=slurm_cpu",
                *shrink(*ddp_folders, "net.num_feat=-2,8", width=None),
                f"hydra.sweep.dir={sweep}", env={**FAST, **env}, timeout=400)
    assert r.returncode != 0 and "negative dimension -2" in r.stderr  # the sweep says which job failed, and why
    for _ in range(240):  # Hydra stops waiting at the first failure; SLURM runs the other job to its end
        q = subprocess.run(["squeue", "-h"], capture_output=True, text=True, env={**os.environ, **env})
        if not q.stdout.strip():
            break
        time.sleep(0.5)
    assert (sweep / "1" / "val_metrics.json").is_file()
    r = run_cli("srexp.cli.report", str(sweep), env={**FAST, **env})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "1 of 2 jobs finished" in r.stdout
    md = (sweep / "leaderboard.md").read_text()
    assert sum("failed or unfinished" in line for line in md.splitlines()) == 1
    assert "| net.num_feat=-2 |" in md


def test_preempted_job_saves_requeues_and_ends_bit_identical(slurm, ddp_folders, tmp_path):
    """`scancel --signal=USR1` on a running sweep job (what `sbatch --signal=USR1@90` does before a time limit):
    srexp saves last.ckpt at the batch's end, requeues the job and stops; SLURM starts it again, submitit re-runs the
    same job in the same folder, which continues from that checkpoint. Final weights, the train-loss log and the W&B
    run id equal one uninterrupted run's."""
    env, cluster = slurm
    steps, stall_at = 12, 5
    base = [*shrink(*ddp_folders, "callbacks.last_checkpoint.every_n_train_steps=2", "callbacks.progress_bar=null",
                    "callbacks.image_grid=null", "task.ema_decay=0.9", steps=steps, val_every=4, logger="wandb")]
    run_env = {**FAST, **env, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
               "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    ref = tmp_path / "ref"
    r = run_cli("srexp.cli.train", *base, f"hydra.run.dir={ref}", env=run_env)
    assert r.returncode == 0, r.stderr[-3000:]

    sweep = tmp_path / "sweep"
    stall = ["+callbacks.stall._target_=stall_callback.Stall", f"+callbacks.stall.step={stall_at}"]
    p = subprocess.Popen([sys.executable, "-m", "srexp.cli.train", "-m",
                          "hydra/launcher=slurm_cpu", *base, *stall, f"hydra.sweep.dir={sweep}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                         env={**os.environ, **run_env})
    try:
        last = sweep / "0" / "checkpoints" / "last.ckpt"
        deadline = time.time() + 300
        while time.time() < deadline and p.poll() is None and ckpt_step(last) != stall_at - 1:
            time.sleep(0.2)
        assert p.poll() is None, p.stderr.read()[-3000:]
        assert ckpt_step(last) == stall_at - 1  # the job is running, stalled at step `stall_at`
        job = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                             env={**os.environ, **env}).stdout.split()
        assert len(job) == 1, job
        t_signal = time.time()
        r = subprocess.run(["scancel", "--signal=USR1", job[0]], capture_output=True, text=True,
                           env={**os.environ, **env})
        assert r.returncode == 0, r.stderr
        out, err = p.communicate(timeout=400)
    finally:
        p.kill()
    wall = time.time() - t_signal
    assert p.returncode == 0, err[-3000:]
    run = sweep / "0"
    logs = "".join(f.read_text() for f in (sweep / ".submitit").glob("*/*_log.*"))
    assert f"SIGUSR1 at step {stall_at + 1}: saved {last}; requeued SLURM job {job[0]}" in logs, logs[-3000:]
    for _ in range(60):  # the controller records the job's end just after submitit has its result
        records = [j for j in completed_jobs(cluster) if job[0].split("_")[0] in (j.get("JobId"), j.get("ArrayJobId"))]
        if len(records) >= 2:
            break
        time.sleep(0.5)
    # two runs of one job: the first ended by the requeue (jobcomp records it back in the queue), then the second
    assert [j["JobState"] for j in records] == ["PENDING", "COMPLETED"], records
    m = json.loads((run / "val_metrics.json").read_text())
    assert m["steps"] == steps
    a, b = _weights(ref / "checkpoints" / "last.ckpt"), _weights(last)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert train_losses(run) == train_losses(ref)  # one continuous CSV log: every step once, the same losses
    ids = {p.name.rsplit("-", 1)[1] for p in (run / "wandb").glob("offline-run-*")}
    assert len(list((run / "wandb").glob("offline-run-*"))) == 2 and ids == {(run / "wandb_id.txt").read_text().strip()}
    print(f"slurm preemption: signal -> requeued job finished in {wall:.1f} s; weights bit-identical")
