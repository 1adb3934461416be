"""Building the DFDNet component dictionary: encode aligned HQ faces, RoI-align each component, K-means."""
from __future__ import annotations

import time

import torch
from omegaconf import DictConfig, OmegaConf

from srexp import __version__
from srexp.data.faces import flip_face, list_faces, load_face, load_landmarks
from srexp.errors import ConfigError
from srexp.ops.color import to_float
from srexp.ops.device import resolve_device


# ------------------------------------------------------------------------------------------------- build-dictionary
def build(cfg: DictConfig) -> dict:
    """Writes the dictionary ``cfg.output``; returns its provenance."""
    from srexp.nets.face.dfdnet import LAYERS, PARTS, STRIDES, dictionary_shapes, roi_align, vgg_encoder
    from srexp.nets.face.dictionary import ImagesHash, kmeans, save_dictionary

    if not cfg.output:
        raise ConfigError("output is not set: the dictionary file to write, e.g. output=dfdnet_dict.safetensors")
    files = list_faces(cfg.images, cfg.get("root"), "images")[: cfg.max_images or None]
    landmarks, dev = load_landmarks(cfg.landmarks), resolve_device(cfg.device)
    enc_cfg = {k: v for k, v in OmegaConf.to_container(cfg.net.encoder, resolve=True).items() if k != "trainable"}
    encoder = vgg_encoder(**enc_cfg).to(dev)
    size, k = int(cfg.net.size), int(cfg.net.num_atoms)
    shapes = dictionary_shapes(size, enc_cfg.get("width", 64), k)
    crops: dict[str, list[torch.Tensor]] = {name: [] for name in shapes}
    hasher, t0 = ImagesHash(), time.perf_counter()
    for start in range(0, len(files), cfg.batch):
        faces = [load_face(f, size, landmarks) for f in files[start : start + cfg.batch]]
        for img, _ in faces:
            hasher.update(img)
        if cfg.flip:
            faces += [flip_face(img, boxes) for img, boxes in faces]
        x = to_float(torch.stack([img for img, _ in faces])).to(dev)
        boxes = torch.stack([b for _, b in faces]).to(dev)
        with torch.no_grad():
            feats = encoder(x)
        for li, layer in enumerate(LAYERS):
            for pi, part in enumerate(PARTS):
                name = f"{part}.{layer}"
                crop = roi_align(feats[li], boxes[:, pi], shapes[name][-2:], 1 / STRIDES[li])
                crops[name].append(crop.flatten(1).half().cpu())  # half: the crops of every face are held
    atoms = {}
    for name, shape in shapes.items():
        samples = torch.cat(crops.pop(name))
        if samples.shape[0] < k:
            raise ConfigError(f"net.num_atoms={k}: K-means needs at least K component crops, {len(files)} faces"
                              f"{' (+ mirrored)' if cfg.flip else ''} give {samples.shape[0]} (lower net.num_atoms or "
                              f"add images)")
        atoms[name] = kmeans(samples.to(dev).float(), k, cfg.kmeans_iters, cfg.seed).reshape(shape).cpu()
    provenance = {"images_sha1": hasher.hexdigest(), "images": hasher.count, "flip": bool(cfg.flip), "K": k,
                  "size": size, "layers": list(LAYERS), "parts": list(PARTS), "encoder": encoder.identity,
                  "kmeans": {"init": "k-means++", "iters": int(cfg.kmeans_iters), "seed": int(cfg.seed)},
                  "landmarks": str(cfg.landmarks) if cfg.landmarks else "canonical boxes",
                  "srexp": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    save_dictionary(cfg.output, atoms, provenance)
    print(f"wrote {cfg.output}: K={k}, {hasher.count} faces{' (+ mirrored)' if cfg.flip else ''} at {size} px "
          f"(images sha1 {provenance['images_sha1']}), encoder {encoder.identity}, "
          f"{time.perf_counter() - t0:.1f} s")
    return provenance
