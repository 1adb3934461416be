"""srexp-data: what is under the data root, fetching the standard sets, checking them.

    srexp-data list                    every named set: where it was found, image count vs expected, problems
    srexp-data download NAME [...]     a set (Set5, Set14, B100, Urban100, T91, BSD200, 291, DIV2K, DIV2K_valid) or
                                       an archive (benchmark, DIV2K_train_LR_bicubic_X2, ...): srexp/data/download.py
    srexp-data verify [NAME ...]       counts as expected, every image decodes, shipped LR images fit their HR

The data root is ``--root``, else ``$SREXP_DATA``. Layouts: ``srexp/data/benchmarks.py`` (``LAYOUTS``).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from PIL import Image

from srexp.data.benchmarks import COMPOSITES, EXPECTED, LAYOUTS, DataNotFoundError, data_root, find_set_folder, \
    premade_lr_file
from srexp.data.download import ARCHIVES, download
from srexp.data.images import ImageError, list_images, load_image
from srexp.cli import one_line_errors

LR_SCALES = (2, 3, 4)


def require_root(root: str | None) -> Path:
    base = data_root(root)
    if base is None:
        raise DataNotFoundError("no data root: pass --root DIR or set SREXP_DATA=DIR")
    if not base.is_dir():
        raise DataNotFoundError(f"data root {base} ({'--root' if root else 'SREXP_DATA'}) does not exist")
    return base


def header_problems(files: list[Path]) -> list[str]:
    """Files PIL cannot even identify (cheap: the header only; `verify` decodes every pixel)."""
    bad = []
    for f in files:
        try:
            with Image.open(f):
                pass
        except Exception as e:  # noqa: BLE001 - any failure to identify is a problem to report
            bad.append(f"{f.name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    return bad


def shipped_lr_scales(files: list[Path]) -> list[int]:
    return [s for s in LR_SCALES if files and premade_lr_file(files[0], s) is not None]


def cmd_list(root: str | None) -> int:
    base = require_root(root)
    print(f"data root: {base}")
    print(f"{'set':<12} {'images':>6} {'expected':>8}  folder / problems")
    for name in LAYOUTS:
        want = EXPECTED.get(name, "?")
        try:
            folder = find_set_folder(name, base)
        except DataNotFoundError:
            hint = "not downloadable here" if name == "Manga109" else f"srexp-data download {name}"
            print(f"{name:<12} {'–':>6} {want:>8}  missing ({hint})")
            continue
        files = list_images(folder)
        notes = []
        if isinstance(want, int) and len(files) != want:
            notes.append(f"{len(files)} of {want} images")
        bad = header_problems(files)
        if bad:
            notes.append(f"{len(bad)} unreadable: {'; '.join(bad[:3])}")
        if lr := shipped_lr_scales(files):
            notes.append("shipped bicubic LR " + ", ".join(f"×{s}" for s in lr))
        print(f"{name:<12} {len(files):>6} {want:>8}  {folder}" + (f"  [{'; '.join(notes)}]" if notes else ""))
    for name, parts in COMPOSITES.items():
        found = [p for p in parts if _found(p, base)]
        state = "complete" if len(found) == len(parts) else f"needs {', '.join(p for p in parts if p not in found)}"
        print(f"{name:<12} {'':>6} {sum(EXPECTED.get(p, 0) for p in parts):>8}  = {' + '.join(parts)} ({state})")
    return 0


def _found(name: str, base: Path) -> bool:
    try:
        find_set_folder(name, base)
        return True
    except DataNotFoundError:
        return False


def fits(hr: int, lr: int, scale: int) -> bool:
    """An LR side made from an HR side: MATLAB's imresize gives ceil(hr / s), a modcropped HR floor(hr / s)."""
    return lr in (hr // scale, math.ceil(hr / scale))


def verify_set(name: str, base: Path) -> list[str]:
    """Problems of one found set: image count, undecodable images, shipped LR images whose size does not fit."""
    folder = find_set_folder(name, base)
    files = list_images(folder)
    problems = []
    if name in EXPECTED and len(files) != EXPECTED[name]:
        problems.append(f"{len(files)} images in {folder}, expected {EXPECTED[name]}")
    for f in files:
        try:
            img = load_image(f)
        except ImageError as e:
            problems.append(str(e))
            continue
        for s in LR_SCALES:
            lr_file = premade_lr_file(f, s)
            if lr_file is None:
                continue
            try:
                lr = load_image(lr_file)
            except ImageError as e:
                problems.append(str(e))
                continue
            h, w = img.shape[-2:]
            if not (fits(h, lr.shape[-2], s) and fits(w, lr.shape[-1], s)):
                problems.append(f"{lr_file}: {lr.shape[-1]}×{lr.shape[-2]} does not fit HR {w}×{h} / {s}")
    return problems


def cmd_verify(root: str | None, names: list[str]) -> int:
    base = require_root(root)
    names = [p for n in names for p in COMPOSITES.get(n, [n])] if names else [n for n in LAYOUTS if _found(n, base)]
    if not names:
        raise DataNotFoundError(f"no named set under {base} (srexp-data list shows what is looked for)")
    failed = 0
    for name in names:
        if name not in LAYOUTS:
            raise DataNotFoundError(f"unknown set {name!r} (valid: {', '.join([*LAYOUTS, *COMPOSITES])})")
        if not _found(name, base):
            print(f"{name}: missing")
            failed += 1
            continue
        problems = verify_set(name, base)
        failed += bool(problems)
        print(f"{name}: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
        for p in problems[:20]:
            print(f"  {p}")
    print("all verified" if not failed else f"{failed} set(s) with problems")
    return 1 if failed else 0


def cmd_download(root: str | None, names: list[str], url: str | None, sha256: str | None, force: bool,
                 keep: bool) -> int:
    base = data_root(root)
    if base is None:
        raise DataNotFoundError("no data root to download into: pass --root DIR or set SREXP_DATA=DIR")
    for name in names:
        for r in download(name, base, url=url, sha256=sha256, force=force, keep=keep):
            if r.skipped:
                sets = ", ".join(ARCHIVES[r.name].provides)
                print(f"{r.name}: already in place ({sets}), skipped (--force refetches)")
                continue
            print(f"{r.name}: verified by {r.verified_by}; sha256 {r.digests['sha256']}")
            for p in r.placed:
                print(f"  → {p}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="srexp-data", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", help="the data root (default: $SREXP_DATA)")
    root = argparse.ArgumentParser(add_help=False)  # --root also after the command; SUPPRESS keeps the first one
    root.add_argument("--root", default=argparse.SUPPRESS, help="the data root (default: $SREXP_DATA)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", parents=[root], help="what is found under the data root, with counts and problems")
    d = sub.add_parser("download", parents=[root], help="fetch sets or archives into the data root")
    d.add_argument("names", nargs="+", metavar="NAME")
    d.add_argument("--url", help="fetch from this URL instead of the registry's (one archive)")
    d.add_argument("--sha256", help="check the download against this SHA-256")
    d.add_argument("--force", action="store_true", help="refetch and replace what is in place")
    d.add_argument("--keep", action="store_true", help="keep the archive in <root>/.downloads/")
    v = sub.add_parser("verify", parents=[root], help="check every found set (or the named ones)")
    v.add_argument("names", nargs="*", metavar="NAME")
    return p


@one_line_errors("srexp-data")
def main(argv: list[str] | None = None) -> None:
    a = parser().parse_args(argv)
    if a.cmd == "list":
        rc = cmd_list(a.root)
    elif a.cmd == "verify":
        rc = cmd_verify(a.root, a.names)
    else:
        rc = cmd_download(a.root, a.names, a.url, a.sha256, a.force, a.keep)
    sys.exit(rc)


if __name__ == "__main__":
    main()
