"""Reading run folders: jobs, their configs, metrics, stamps and curves."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from srexp.errors import SrexpError


SKIP_DIRS = {"wandb", "csv", "checkpoints", ".hydra", ".submitit"}


class ReportError(SrexpError):
    pass


@dataclass
class Job:
    folder: Path
    overrides: list[str]
    choices: dict
    config: dict
    metrics: dict | None  # val_metrics.json; None = failed or unfinished
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, train/loss)
    label: str = ""  # the job's own overrides (what the sweep varied)
    short: str = ""  # their values only, for plots: "pre / pixel_shuffle"
    rank: int | None = None

    @property
    def ok(self) -> bool:
        return self.metrics is not None

    def status(self) -> str:
        if self.ok:
            return "ok"
        last = self.curve[-1][0] if self.curve else None
        ckpt = (self.folder / "checkpoints" / "last.ckpt").is_file()
        return "failed or unfinished: no val_metrics.json" + (f"; last logged step {last}" if last is not None else "") \
            + ("; has checkpoints/last.ckpt (resume=true)" if ckpt else "")


# ----------------------------------------------------------------------------------------------------- collecting
def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders at or under ``paths``: a folder with ``.hydra/``, ``config.yaml`` or ``val_metrics.json``."""
    def is_run(d: Path) -> bool:
        return (d / ".hydra").is_dir() or (d / "config.yaml").is_file() or (d / "val_metrics.json").is_file()

    runs: list[Path] = []
    for p in paths:
        if not p.is_dir():
            raise ReportError(f"{p}: no such folder")
        if is_run(p):
            runs.append(p)
            continue
        found = [d for d in sorted(p.rglob("*")) if d.is_dir() and not SKIP_DIRS & set(d.relative_to(p).parts)
                 and is_run(d)]
        runs += [d for d in found if not any(o != d and o in d.parents for o in found)]  # outermost only
    if not runs:
        raise ReportError(f"no run folders in {' '.join(map(str, paths))} (a run folder has .hydra/, config.yaml or "
                          f"val_metrics.json)")

    def order(d: Path):
        return [(0, int(s), "") if s.isdigit() else (1, 0, s) for s in d.parts]

    return sorted(dict.fromkeys(runs), key=order)


def _yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError:
        return None


def loss_curve(folder: Path, key: str = "train/loss") -> list[tuple[int, float]]:
    f = folder / "csv" / "metrics.csv"
    if not f.is_file():
        return []
    out = []
    with f.open(newline="") as fh:
        for row in csv.DictReader(fh):
            v = row.get(key)
            if v not in (None, "") and row.get("step", "") != "":
                out.append((int(float(row["step"])), float(v)))
    return out


def load_job(folder: Path) -> Job:
    hydra = _yaml(folder / ".hydra" / "hydra.yaml") or {}
    choices = ((hydra.get("hydra") or {}).get("runtime") or {}).get("choices") or {}
    overrides = _yaml(folder / ".hydra" / "overrides.yaml") or []
    config = _yaml(folder / "config.yaml") or _yaml(folder / ".hydra" / "config.yaml") or {}
    metrics = None
    try:
        if (folder / "val_metrics.json").is_file():
            metrics = json.loads((folder / "val_metrics.json").read_text())
        if metrics is not None and (folder / "benchmark.json").is_file():  # test_sets: the standard sets' rows
            metrics["benchmark"] = json.loads((folder / "benchmark.json").read_text()).get("rows", [])
    except json.JSONDecodeError:
        metrics = None
    return Job(folder, [str(o) for o in overrides], choices, config, metrics, loss_curve(folder))


def label_jobs(jobs: list[Job], root: Path | None) -> None:
    """A job's label: its overrides less those every job shares (the swept values), else its folder."""
    common = set.intersection(*(set(j.overrides) for j in jobs)) if len(jobs) > 1 else set()
    for j in jobs:
        own = [o for o in j.overrides if o not in common]
        folder = str(j.folder.relative_to(root)) if root and root in j.folder.parents else j.folder.name
        j.label = " ".join(own) if own else folder
        j.short = " / ".join(o.split("=", 1)[-1] for o in own) if own else folder


# -------------------------------------------------------------------------------------------------------- the table
def describe_stamp(stamp: dict | None) -> str:
    if not stamp:
        return "none"
    return (f"{stamp.get('name', stamp.get('protocol'))}, shave {stamp.get('shave')}, LR: {stamp.get('lr')}, Y: {stamp.get('y')}, "
            f"images sha1 {stamp.get('images_sha1')}")


def stamp_name(stamp: dict | None) -> str:
    """The protocol's name in a stamp (``protocol`` in run folders written before the stamp had one shape)."""
    return (stamp or {}).get("name", (stamp or {}).get("protocol", ""))


def _stamp_key(stamp: dict | None) -> str:
    return json.dumps(stamp or {}, sort_keys=True)


def check_protocols(jobs: list[Job], allow_mixed: bool) -> None:
    stamps: dict[str, list[Job]] = {}
    for j in jobs:
        if j.ok:
            stamps.setdefault(_stamp_key(j.metrics.get("stamp")), []).append(j)
    if len(stamps) > 1 and not allow_mixed:
        (a, ja), (b, jb) = list(stamps.items())[:2]
        da, db = json.loads(a), json.loads(b)
        diff = [k for k in sorted(set(da) | set(db)) if da.get(k) != db.get(k)]
        k = diff[0] if diff else "stamp"
        raise ReportError(f"the runs were measured under {len(stamps)} different protocols ({k}: {da.get(k)!r} in "
                          f"{ja[0].folder.name} vs {db.get(k)!r} in {jb[0].folder.name}); their numbers do not rank "
                          f"together (valid: runs with one protocol, or --allow-mixed to rank each protocol apart)")


# the perceptual metrics' columns (srexp.metrics.perceptual.LABELS, repeated: the report does not import torch)
PERCEPTUAL = {"lpips": "LPIPS", "lpips_vgg": "LPIPS-VGG", "dists": "DISTS"}
# what a leaderboard can be ranked by: val_metrics.json key → (label, higher is better)
RANK_BY = {"psnr": ("PSNR", True), "ssim": ("SSIM", True), **{k: (v, False) for k, v in PERCEPTUAL.items()}}


def rank_jobs(jobs: list[Job], by: str = "psnr") -> None:
    """Rank the finished jobs of each protocol by validation ``by`` (PSNR, SSIM: higher first; LPIPS, DISTS: lower
    first); a job without that value comes last."""
    if by not in RANK_BY:
        raise ReportError(f"--rank-by {by}: unknown (valid: {', '.join(RANK_BY)})")
    higher = RANK_BY[by][1]
    if not any(j.ok and j.metrics.get(by) is not None for j in jobs):
        raise ReportError(f"--rank-by {by}: no job has val/{by} in its val_metrics.json (train with "
                          f"task.metrics=[{by}]; valid here: psnr, ssim)")
    groups: dict[str, list[Job]] = {}
    for j in jobs:
        if j.ok:
            groups.setdefault(_stamp_key(j.metrics.get("stamp")), []).append(j)

    def key(j: Job) -> float:
        v = j.metrics.get(by)
        return math.inf if v is None else (-v if higher else v)

    for group in groups.values():
        for r, j in enumerate(sorted(group, key=key), start=1):
            j.rank = r


def val_set(cfg: dict) -> str:
    data = cfg.get("data") or {}
    specs = [*(data.get("val") or []), *([data["val_dir"]] if data.get("val_dir") else [])]
    names = [Path(str(s)).name if "/" in str(s) else str(s).split(":")[-1] for s in specs]
    return "+".join(names) if len(names) <= 3 else f"{'+'.join(names[:3])}+{len(names) - 3} more"


def bench_columns(jobs: list[Job]) -> list[tuple[str, int]]:
    cols = {(r["set"], int(r["scale"])) for j in jobs if j.ok for r in j.metrics.get("benchmark") or []}
    return sorted(cols)


def job_seconds(folder: Path) -> float | None:
    start = folder / ".hydra" / "config.yaml"
    end = folder / "val_metrics.json"
    if start.is_file() and end.is_file():
        return end.stat().st_mtime - start.stat().st_mtime
    return None
