"""Fetching the standard SR image sets into the data root's documented layout (``srexp-data download NAME``).

One registry, :data:`ARCHIVES`: each archive's URL, its checksum where a trustworthy one is known, and which folder
inside it becomes which folder under the data root. Checksums: the MD5s below are the ones torchSR
(Coloquinte/torchSR, ``torchsr/datasets``) publishes for these files; they were not re-measured here (no network on
the machine that wrote this). No SHA-256 of these archives is known to us; where there is no checksum at all the
structure is verified instead (the expected image count of every set the archive provides) and the SHA-256 of what
was downloaded is printed so it can be recorded. ``--sha256 HEX`` checks a value you have.

Flow: stream to ``<root>/.downloads/<file>.part`` (hashing as it goes) → verify → extract (zip/tar, members
confined to the extraction folder) → move the mapped folders into place → check the image counts.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from srexp.data.benchmarks import EXPECTED, DataNotFoundError, find_set_folder
from srexp.data.images import list_images
from srexp.errors import SrexpError

log = logging.getLogger(__name__)

TORCHSR = "torchSR's registry (Coloquinte/torchSR); not re-measured here"
DCSCN_COMMIT = "27d8f11cd8b5d58de0b91128b4b6c72375c69e16"  # a commit of jiny2001/dcscn-super-resolution with data/


class DownloadError(SrexpError):
    """A download, checksum, archive or layout problem: one line naming the file and what was expected."""


@dataclass(frozen=True)
class Archive:
    url: str
    members: dict[str, str]  # folder inside the archive (matched as a path suffix) → folder under the data root
    checksum: str | None = None  # "md5:<hex>" or "sha256:<hex>"; None = none known, the structure is checked instead
    checksum_source: str = ""
    provides: tuple[str, ...] = ()  # named sets this archive puts in place (their image counts are checked)
    note: str = ""

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]


_DIV2K = "http://data.vision.ee.ethz.ch/cvl/DIV2K/"
ARCHIVES: dict[str, Archive] = {
    # EDSR's benchmark.tar: benchmark/{Set5,Set14,B100,Urban100}/{HR,LR_bicubic/X2,X3,X4}/ (a LAYOUTS entry).
    "benchmark": Archive("https://cv.snu.ac.kr/research/EDSR/benchmark.tar", {"benchmark": "benchmark"},
                         "md5:4ace41d33c2384b97e6b320cd0afd6ba", TORCHSR, ("Set5", "Set14", "B100", "Urban100")),
    # T91 and BSD200 as the project's reference data has them (shared/data/README.md), pinned to one commit.
    "dcscn": Archive(f"https://github.com/jiny2001/dcscn-super-resolution/archive/{DCSCN_COMMIT}.zip",
                     {"data/yang91": "T91", "data/bsd200": "BSD200"}, None,
                     "none: GitHub archives are not byte-stable", ("T91", "BSD200")),
    "DIV2K_train_HR": Archive(_DIV2K + "DIV2K_train_HR.zip", {"DIV2K_train_HR": "DIV2K/DIV2K_train_HR"},
                              "md5:bdc2d9338d4e574fe81bf7d158758658", TORCHSR, ("DIV2K",)),
    "DIV2K_valid_HR": Archive(_DIV2K + "DIV2K_valid_HR.zip", {"DIV2K_valid_HR": "DIV2K/DIV2K_valid_HR"},
                              "md5:9fcdda83005c5e5997799b69f955ff88", TORCHSR, ("DIV2K_valid",)),
    **{f"DIV2K_train_LR_bicubic_X{s}": Archive(
        _DIV2K + f"DIV2K_train_LR_bicubic_X{s}.zip",
        {f"DIV2K_train_LR_bicubic/X{s}": f"DIV2K/DIV2K_train_LR_bicubic/X{s}"}, md5, TORCHSR,
        note="LR for data.lr_source=files|auto")
       for s, md5 in ((2, "md5:9a637d2ef4db0d0a81182be37fb00692"), (3, "md5:ad80b9fe40c049a07a8a6c51bfab3b6d"),
                      (4, "md5:76c43ec4155851901ebbe8339846d93d"))},
}
# What `srexp-data download NAME` fetches for a named set.
SET_ARCHIVES: dict[str, list[str]] = {
    "Set5": ["benchmark"], "Set14": ["benchmark"], "B100": ["benchmark"], "Urban100": ["benchmark"],
    "T91": ["dcscn"], "BSD200": ["dcscn"], "291": ["dcscn"],
    "DIV2K": ["DIV2K_train_HR"], "DIV2K_valid": ["DIV2K_valid_HR"],
}
NOT_DOWNLOADABLE = {
    "Manga109": "Manga109 is given out on request by its authors (http://www.manga109.org/en/download.html); put "
                "its images under <data root>/Manga109/",
}


def archives_for(name: str) -> list[str]:
    if name in NOT_DOWNLOADABLE:
        raise DownloadError(NOT_DOWNLOADABLE[name])
    if name in SET_ARCHIVES:
        return SET_ARCHIVES[name]
    if name in ARCHIVES:
        return [name]
    raise DownloadError(f"nothing to download named {name!r} (valid: {', '.join([*SET_ARCHIVES, *ARCHIVES])})")


def resolve_url(archive: Archive, url: str | None = None) -> str:
    """``url`` when given; else under ``$SREXP_DATA_MIRROR`` (a folder URL holding the same file names); else the
    registry's."""
    if url:
        return url
    mirror = os.environ.get("SREXP_DATA_MIRROR")
    return f"{mirror.rstrip('/')}/{archive.filename}" if mirror else archive.url


def fetch(url: str, dest: Path, progress: bool = True) -> dict[str, str]:
    """Stream ``url`` to ``dest`` (via ``dest.part``); return its ``{"md5": hex, "sha256": hex}``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    md5, sha = hashlib.md5(), hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(part, "wb") as f:
            total, done, shown = int(r.headers.get("Content-Length") or 0), 0, -1
            while chunk := r.read(1 << 20):
                f.write(chunk)
                md5.update(chunk)
                sha.update(chunk)
                done += len(chunk)
                if progress and total and (pct := 100 * done // total) // 10 != shown:
                    shown = pct // 10
                    print(f"  {dest.name}: {pct}% of {total / 1e6:.1f} MB", file=sys.stderr, flush=True)
    except (OSError, ValueError) as e:  # URLError, HTTPError, timeouts, unknown url type
        part.unlink(missing_ok=True)
        raise DownloadError(f"download of {url} failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    part.replace(dest)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def file_digests(path: Path) -> dict[str, str]:
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
            sha.update(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def check_digest(path: Path, digests: dict[str, str], expected: str | None) -> None:
    if expected is None:
        return
    kind, _, value = expected.partition(":")
    if kind not in digests or not value:
        raise DownloadError(f"checksum {expected!r} is not understood (valid: md5:<hex> or sha256:<hex>)")
    if digests[kind] != value.lower():
        raise DownloadError(f"{path.name}: {kind} is {digests[kind]}, expected {value.lower()} (a corrupt or changed "
                            f"file; it was removed)")


def extract(archive_file: Path, dest: Path) -> None:
    """Unpack a zip or tar (any compression) into ``dest``, refusing members that would land outside it."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        if zipfile.is_zipfile(archive_file):
            with zipfile.ZipFile(archive_file) as z:
                for m in z.namelist():
                    if not (root / m).resolve().is_relative_to(root):
                        raise DownloadError(f"{archive_file.name}: member {m!r} would be written outside the "
                                            f"extraction folder")
                z.extractall(dest)
        elif tarfile.is_tarfile(archive_file):
            with tarfile.open(archive_file) as t:
                t.extractall(dest, filter="data")  # rejects absolute paths, '..', devices and outside links
        else:
            raise DownloadError(f"{archive_file.name}: not a zip or tar archive")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as e:
        raise DownloadError(f"{archive_file.name}: cannot extract ({str(e).splitlines()[0]})") from None


def find_member(tree: Path, suffix: str) -> Path | None:
    """The folder in ``tree`` whose path ends with ``suffix`` (archives often add a top folder), shallowest first."""
    want = tuple(p.lower() for p in Path(suffix).parts)
    hits = [d for d in tree.rglob("*")
            if d.is_dir() and tuple(p.lower() for p in d.relative_to(tree).parts)[-len(want):] == want]
    return min(hits, key=lambda d: len(d.parts)) if hits else None


def place(tree: Path, archive: Archive, root: Path, force: bool) -> list[Path]:
    placed = []
    for inside, target in archive.members.items():
        src = find_member(tree, inside)
        if src is None:
            raise DownloadError(f"{archive.filename}: no folder {inside}/ inside (the archive's layout changed?)")
        dst = root / target
        if dst.exists():
            if not force:  # e.g. BSD200 already there when T91 is fetched from the same archive
                log.warning("%s exists: kept (--force replaces it)", dst)
                continue
            shutil.rmtree(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dst))
        placed.append(dst)
    return placed


def count_problem(name: str, root: Path) -> str | None:
    """None when the named set is in place with its expected image count, else what is wrong (one line)."""
    try:
        folder = find_set_folder(name, root)
    except DataNotFoundError as e:
        return str(e)
    n, want = len(list_images(folder)), EXPECTED.get(name)
    return None if want is None or n == want else f"{name}: {n} images in {folder}, expected {want}"


@dataclass
class Report:
    name: str
    placed: list[Path] = field(default_factory=list)
    skipped: bool = False
    digests: dict[str, str] = field(default_factory=dict)
    verified_by: str = ""


def download(name: str, root: str | os.PathLike, url: str | None = None, sha256: str | None = None,
             force: bool = False, keep: bool = False, progress: bool = True) -> list[Report]:
    """Fetch what ``name`` needs (a set such as ``Set5``/``291``/``DIV2K``, or an archive of :data:`ARCHIVES`) into
    ``root``; sets already in place with their expected counts are skipped unless ``force``."""
    root = Path(root).expanduser()
    names = archives_for(name)
    if url and len(names) > 1:
        raise DownloadError(f"--url: {name} needs {len(names)} archives ({', '.join(names)}); download them one by one")
    reports = []
    for key in names:
        archive = ARCHIVES[key]
        report = Report(key)
        reports.append(report)
        if archive.provides and not force and all(count_problem(s, root) is None for s in archive.provides):
            report.skipped = True
            continue
        src = resolve_url(archive, url)
        downloads = root / ".downloads"
        file = downloads / (Path(src.split("?")[0]).name or archive.filename)
        report.digests = fetch(src, file, progress)
        expected = f"sha256:{sha256}" if sha256 else archive.checksum
        try:
            check_digest(file, report.digests, expected)
        except DownloadError:
            file.unlink(missing_ok=True)
            raise
        report.verified_by = (f"{expected.split(':')[0]} ({'--sha256' if sha256 else archive.checksum_source})"
                              if expected else "structure only (no checksum known)")
        tree = downloads / f"{key}.extract"
        shutil.rmtree(tree, ignore_errors=True)
        try:
            extract(file, tree)
            report.placed = place(tree, archive, root, force)
        finally:
            shutil.rmtree(tree, ignore_errors=True)
        if not keep:
            file.unlink(missing_ok=True)
        problems = [p for s in archive.provides if (p := count_problem(s, root))]
        if problems:
            raise DownloadError(f"{archive.filename} was extracted but {problems[0]} (--force replaces what was there)")
    return reports


__all__ = ["ARCHIVES", "SET_ARCHIVES", "Archive", "DownloadError", "download", "extract", "fetch"]
