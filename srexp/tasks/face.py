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
        lq, ref_y, idx, boxes, hq = batch
        self.measure(lq, ref_y, idx, sr=self(lq, boxes), hr=hq)

    def bicubic(self, lr: Tensor, sr: Tensor) -> Tensor:
        return lr  # the network's input is already at the HQ size

    test_step = validation_step
