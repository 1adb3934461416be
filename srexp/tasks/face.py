"""FaceTask: GANTask for face restoration nets that take the component boxes beside the image (DFDNet)."""
from __future__ import annotations

from torch import Tensor

from srexp.tasks.gan import GANTask


class FaceTask(GANTask):
    """GANTask's training loop as is (batches ``(lq, hq, boxes)``: the boxes go to the net after the image), and
    validation on whole aligned faces: the restored face against the HQ one under the metric protocol, with the
    network's input — the degraded face brought back to the HQ size by bicubic — in bicubic's column."""

    def forward(self, lq: Tensor, boxes: Tensor | None = None) -> Tensor:
        ema = getattr(self, "net_ema", None)
        return (ema if ema is not None and not self.training else self.net)(lq, boxes)

    def validation_step(self, batch, batch_idx: int) -> None:
        lq, ref_y, idx, boxes = batch
        self.val_metrics.update(self.protocol.sr_to_y(self(lq, boxes)), ref_y, index=idx)
        self.bicubic_metrics.update(self.protocol.sr_to_y(lq), ref_y, index=idx)

    test_step = validation_step
