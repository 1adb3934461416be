"""DFDNet's component dictionaries: the file format, its validation, and the K-means that makes the atoms.

A dictionary is a safetensors file (no pickle) holding one float32 tensor per component and scale,
``"<part>.<layer>"`` → ``(K, C, h, w)`` (e.g. ``left_eye.relu2_2``: K atoms of C VGG channels on the component's
h×w RoI grid; shapes: :func:`srexp.nets.face.dfdnet.dictionary_shapes`), and in its metadata ``format`` and
``provenance``, a JSON object: the images' content hash and count, K, the face size, the layers, the encoder's
identity, the K-means settings. Loading checks every shape against the net config and the encoder against the net's:
a mismatch is one :class:`ConfigError` line naming the file, the entry, the expected and the found shape.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import Tensor

from srexp.errors import ConfigError

FORMAT = "srexp-dfdnet-dictionary/1"


def kmeans(x: Tensor, k: int, iters: int = 100, seed: int = 0) -> Tensor:
    """``k`` centres ``(k, D)`` of the rows of ``x`` ``(M, D)``: k-means++ seeding (from ``seed`` alone), then Lloyd
    iterations until no centre moves (or ``iters``). An emptied cluster takes the point farthest from its centre."""
    m = x.shape[0]
    if not 1 <= k <= m:
        raise ConfigError(f"K-means: K={k} clusters need at least K samples, got {m} (lower net.num_atoms or add "
                          f"images)")
    x = x.float()
    g = torch.Generator(device=x.device).manual_seed(seed)
    sq = x.pow(2).sum(1)

    def dist2(c: Tensor) -> Tensor:  # (M, len(c)) squared distances
        return (sq[:, None] - 2 * x @ c.T + c.pow(2).sum(1)[None]).clamp_min_(0)

    centres = x[torch.randint(m, (1,), generator=g, device=x.device)]
    d2 = dist2(centres)[:, 0]
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1 / m)
        new = x[torch.multinomial(p, 1, generator=g)]
        centres = torch.cat([centres, new])
        d2 = torch.minimum(d2, dist2(new)[:, 0])
    for _ in range(iters):
        d = dist2(centres)
        assign = d.argmin(1)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        new = sums / counts.clamp_min(1)[:, None].to(x.dtype)
        for j in torch.nonzero(counts == 0).flatten().tolist():  # re-seed an empty cluster
            far = d.gather(1, assign[:, None])[:, 0].argmax()
            new[j] = x[far]
            d[far] = 0
        if torch.equal(new, centres):
            break
        centres = new
    return centres


class ImagesHash:
    """Content hash of the images a dictionary was built from (decoded, resized uint8 pixels, in order)."""

    def __init__(self):
        self.h, self.count = hashlib.sha1(), 0

    def update(self, img: Tensor) -> None:
        self.h.update(str(tuple(img.shape)).encode())
        self.h.update(img.contiguous().cpu().numpy().tobytes())
        self.count += 1

    def hexdigest(self) -> str:
        return self.h.hexdigest()[:12]


def save_dictionary(path: str | Path, atoms: dict[str, Tensor], provenance: dict) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.float().contiguous().cpu() for k, v in atoms.items()}, str(tmp),
              metadata={"format": FORMAT, "provenance": json.dumps(provenance, sort_keys=True)})
    tmp.replace(path)  # never a half-written dictionary under the final name


def read_dictionary(path: str | Path, key: str = "net.dictionary") -> tuple[dict[str, Tensor], dict]:
    """(atoms, provenance) of a dictionary file; one-line errors for a missing or unreadable file."""
    from safetensors import safe_open

    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}={path}: no such file (make one with `srexp-face build-dictionary images=[DIR] "
                          f"output={path.name}`)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            atoms = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad dictionary file for the user
        raise ConfigError(f"{key}={path}: not a readable dictionary ({str(e).splitlines()[0][:160]})") from None
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{key}={path}: not a srexp DFDNet dictionary (format {meta.get('format')!r}, expected "
                          f"{FORMAT!r}; make one with srexp-face build-dictionary)")
    return atoms, json.loads(meta.get("provenance", "{}"))


def check_dictionary(atoms: dict[str, Tensor], shapes: dict[str, tuple], where: str) -> dict[str, Tensor]:
    """``atoms`` if every expected entry is there with its shape, else a one-line ConfigError."""
    for name, want in shapes.items():
        if name not in atoms:
            raise ConfigError(f"{where}: no entry {name} (expected shape {want}; found entries "
                              f"{', '.join(sorted(atoms)[:4]) or 'none'}…)")
        found = tuple(atoms[name].shape)
        if found != tuple(want):
            raise ConfigError(f"{where}: {name} has shape {found}, the net config expects {tuple(want)} "
                              f"(K=net.num_atoms, C×h×w from net.encoder.width and net.size; rebuild the dictionary "
                              f"with the same settings)")
    return atoms


def load_dictionary(path: str | Path, shapes: dict[str, tuple], encoder: str) -> tuple[dict[str, Tensor], dict]:
    """Atoms checked against the net's expected ``shapes`` and ``encoder`` identity, and the provenance."""
    atoms, provenance = read_dictionary(path)
    where = f"net.dictionary={Path(path).expanduser()}"
    check_dictionary(atoms, shapes, where)
    if provenance.get("encoder") not in (None, encoder):
        raise ConfigError(f"{where}: built with encoder {provenance['encoder']}, this net's is {encoder} (features "
                          f"of different encoders do not match; rebuild it with the same net.encoder)")
    return atoms, provenance
