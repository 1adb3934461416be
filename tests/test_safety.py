"""Safety: no pickled code is ever loaded, no secret reaches a config file, W&B or a checkpoint; EMA weights are what
evaluation and export use."""
import re

import torch
from omegaconf import OmegaConf

from conftest import REPO, compose_cfg
from srexp.training.callbacks import ConfigInCheckpoint
from srexp.training.checkpoint import load_model
from srexp.training.runtime import build_loggers, redact, save_resolved_config


def _call(text: str, start: int) -> str:
    depth = 0
    for i in range(text.index("(", start), len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start : i + 1]
    return text[start:]


def test_every_torch_load_is_weights_only():
    calls = [(f.name, _call(t, m.start())) for f in (REPO / "srexp").rglob("*.py")
             for t in [f.read_text()] for m in re.finditer(r"torch\.load\(", t)]
    assert calls and all("weights_only=True" in c for _, c in calls), calls


def test_secrets_are_redacted(tmp_path, monkeypatch):
    cfg = compose_cfg("train", ["logger=wandb", "+wandb_api_key=abc123", "+data.token=xyz", "+db.password=hunter2",
                                "+my_secret={a: 1}"])
    plain = redact(OmegaConf.to_container(cfg, resolve=True))
    assert plain["wandb_api_key"] == plain["data"]["token"] == plain["db"]["password"] == plain["my_secret"] == "***"
    assert plain["net"]["body"]["kernel_size"] == 3 and plain["seed"] == 0  # the rest untouched

    save_resolved_config(cfg, tmp_path)
    text = (tmp_path / "config.yaml").read_text()
    assert "abc123" not in text and "xyz" not in text and "hunter2" not in text and "***" in text

    ckpt = {}
    ConfigInCheckpoint(cfg).on_save_checkpoint(None, None, ckpt)
    assert ckpt["srexp_config"]["wandb_api_key"] == "***"

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg.paths.output_dir = str(tmp_path)
    wandb = build_loggers(cfg, str(tmp_path))[-1]
    init = wandb._wandb_init  # what wandb.init will get: the run folder's id, resume, the redacted config
    assert init["id"] == (tmp_path / "wandb_id.txt").read_text().strip() and init["resume"] == "allow"
    assert init["config"]["wandb_api_key"] == "***" and "abc123" not in str(init["config"])
    assert build_loggers(cfg, str(tmp_path))[-1]._wandb_init["id"] == init["id"]  # the same id next time


def test_ema_weights_are_the_ones_loaded(tmp_path):
    cfg = compose_cfg("train", ["net.num_feat=4"])
    state = {"net.conv_first.weight": torch.zeros(1), "net_ema.conv_first.weight": torch.ones(1)}
    torch.save({"state_dict": state, "srexp_config": OmegaConf.to_container(cfg, resolve=True)}, tmp_path / "a.ckpt")
    _, _, net_state = load_model(tmp_path / "a.ckpt")
    assert torch.equal(net_state["conv_first.weight"], torch.ones(1))
