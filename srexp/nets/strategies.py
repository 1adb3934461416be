"""Strategies: where upsampling sits (``conf/net/strategy/``). Each strategy builds its net from a ``body``
partial and an ``upsample`` partial (contracts in :mod:`srexp.nets`), so any body and any upsample layer
work under any strategy.

Common arguments: ``num_feat`` (width after ``conv_first``), ``first_kernel``/``last_kernel`` (the head and
reconstruction convs; 0 = none where the strategy allows it), ``act`` (after the strategy's own convs),
``init`` (a partial or list of partials from :mod:`srexp.nets.init`; none = PyTorch's default), ``rgb_mean``
(EDSR's mean shift: subtracted at the input, added back at the output).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from srexp.nets import ConfigError
from srexp.nets.blocks import (Act, DownProjection, MeanShift, UpProjection, cat, check_scale, conv, conv_act,
                               exact_padding, pad_to_multiple)
from srexp.nets.upsample import InterpolateUp

Body = Callable[..., nn.Module]      # body(in_channels=…) -> module with .out_channels
Upsample = Callable[..., nn.Module]  # upsample(in_channels=…, out_channels=…, scale=…)
Init = Callable[[nn.Module], None]


class Strategy(nn.Module):
    """Shared plumbing: ``scale``, the mean shift, the head conv and the init."""

    def __init__(self, in_channels: int, out_channels: int, scale: int,
                 rgb_mean: Sequence[float] | None = None) -> None:
        super().__init__()
        check_scale(scale)
        self.scale, self.in_channels, self.out_channels = scale, in_channels, out_channels
        if rgb_mean is not None:
            if not len(rgb_mean) == in_channels == out_channels:
                raise ConfigError(f"net.rgb_mean has {len(rgb_mean)} values for channels={in_channels} "
                                  f"(valid: null, or one value per channel)")
            self.sub_mean, self.add_mean = MeanShift(list(rgb_mean), -1.0), MeanShift(list(rgb_mean), 1.0)
        else:
            self.sub_mean = self.add_mean = nn.Identity()

    def _apply_init(self, init: Init | Sequence[Init] | None) -> None:
        for fn in ([init] if callable(init) else init or []):
            fn(self)

    any_scale: bool = False  # True where the weights do not depend on the scale (forward takes ``scale=``)

    @property
    def pad_multiple(self) -> int:
        """The image is reflect-padded to a multiple of this before the head conv and the output cropped: the least
        common multiple of the ``pad_multiple`` its modules declare (SwinIR's window, so windows align to the image
        as in the official code); 1 = no padding."""
        if "_pad_multiple" not in self.__dict__:
            self._pad_multiple = math.lcm(*(getattr(m, "pad_multiple", 1) for m in self.modules() if m is not self))
        return self._pad_multiple

    def forward(self, lr: Tensor, scale: int | None = None) -> Tensor | list[Tensor]:
        """``scale``: another scale than the built one, for nets whose weights do not depend on it
        (pre-upsampling with an interpolation: multi-scale training, one net evaluated at ×2, ×3, ×4)."""
        h, w = lr.shape[-2:]
        x = self.sub_mean(pad_to_multiple(lr, self.pad_multiple))
        if scale is not None and scale != self.scale:
            if not self.any_scale:
                raise ConfigError(f"{type(self).__name__} is built for scale={self.scale}, got a ×{scale} batch "
                                  f"(valid: data.scales=null, or net/strategy=pre with net/upsample=interpolate)")
            out = self.run(x, scale=scale)
        else:
            out = self.run(x)
        outs = [self.add_mean(_crop(o, h, w, x.shape[-2])) for o in (out if isinstance(out, list) else [out])]
        return outs if isinstance(out, list) else outs[0]

    def run(self, x: Tensor) -> Tensor | list[Tensor]:
        raise NotImplementedError


class PreUpsample(Strategy):
    """Upsample the image first, run the body at HR (SRCNN, VDSR): the body sees the final grid, at
    ``scale²`` times the cost. ``residual`` adds the upsampled input to the output (VDSR's global residual:
    the net learns only the missing high frequencies). With ``first_kernel``/``last_kernel`` 0 and the
    ``none`` body it is a zero-parameter interpolation baseline."""

    def __init__(self, in_channels: int, out_channels: int, scale: int, body: Body, upsample: Upsample,
                 num_feat: int = 64, first_kernel: int = 3, last_kernel: int = 3, act: Act | None = nn.ReLU,
                 residual: bool = False, init: Init | Sequence[Init] | None = None,
                 rgb_mean: Sequence[float] | None = None) -> None:
        super().__init__(in_channels, out_channels, scale, rgb_mean)
        if residual and in_channels != out_channels:
            raise ConfigError(f"net.residual=true needs in_channels == out_channels, got {in_channels} and "
                              f"{out_channels} (valid: false)")
        self.up = upsample(in_channels=in_channels, out_channels=in_channels, scale=scale)
        width = num_feat if first_kernel else in_channels
        self.conv_first = conv_act(in_channels, width, first_kernel, act) if first_kernel else nn.Identity()
        self.body = body(in_channels=width)
        if last_kernel:
            self.conv_last: nn.Module = conv(self.body.out_channels, out_channels, last_kernel)
        elif self.body.out_channels != out_channels:
            raise ConfigError(f"net.last_kernel=0 needs a body that outputs {out_channels} channels, got "
                              f"{self.body.out_channels} (valid: last_kernel >= 1)")
        else:
            self.conv_last = nn.Identity()
        self.residual = residual
        self.any_scale = isinstance(self.up, InterpolateUp)  # the body runs on the upsampled grid at any scale
        self._apply_init(init)

    def run(self, x: Tensor, scale: int | None = None) -> Tensor:
        x = self.up(x) if scale is None else self.up(x, scale=scale)
        y = self.conv_last(self.body(self.conv_first(x)))
        return x + y if self.residual else y


def _crop(out: Tensor, h: int, w: int, padded_h: int) -> Tensor:
    """The output of an ``h × w`` image padded to height ``padded_h``: its top-left ``h·r × w·r`` (r = out/padded)."""
    r = out.shape[-2] // padded_h
    return out if out.shape[-2] == h * r and out.shape[-1] == w * r else out[..., :h * r, :w * r]


def _power_of_2(scale: int) -> bool:
    return scale >= 2 and scale & (scale - 1) == 0


class PostUpsample(Strategy):
    """Body at LR, upsample at the end (FSRCNN, ESPCN, SRResNet, EDSR): all the convs run on the small grid.

    ``stepwise``: a power-of-2 scale is made as ×2 steps (EDSR/SRResNet: ×4 = two ×2 sub-pixel layers),
    any other scale as one step; ``false`` always uses one step (ESPCN, FSRCNN). ``last_kernel: 0`` lets the
    last upsample layer output the image itself (ESPCN's sub-pixel conv, FSRCNN's deconv). The steps and the last
    conv keep the body's output width (``num_feat`` for most bodies; SwinIR's body narrows 180 to 64 first).
    ``hr_kernel``/``hr_act``: a conv (+ act) at HR before the last conv (ESRGAN's HRconv). ``residual: nearest``
    adds the nearest-upsampled input to the output (Real-ESRGAN's SRVGGNetCompact: the net learns a residual)."""

    RESIDUALS = ("nearest",)

    def __init__(self, in_channels: int, out_channels: int, scale: int, body: Body, upsample: Upsample,
                 num_feat: int = 64, first_kernel: int = 3, last_kernel: int = 3, act: Act | None = None,
                 stepwise: bool = True, init: Init | Sequence[Init] | None = None,
                 rgb_mean: Sequence[float] | None = None, hr_kernel: int = 0, hr_act: Act | None = None,
                 residual: str | None = None) -> None:
        super().__init__(in_channels, out_channels, scale, rgb_mean)
        if residual is not None and (residual not in self.RESIDUALS or in_channels != out_channels):
            raise ConfigError(f"net.residual={residual} with {in_channels} → {out_channels} channels is not supported "
                              f"(valid: null, or {', '.join(self.RESIDUALS)} with equal channels)")
        self.residual = residual
        if not first_kernel:
            raise ConfigError("net.first_kernel=0: post-upsampling needs a head conv (valid: 1, 3, 5, …)")
        if hr_kernel and not last_kernel:
            raise ConfigError(f"net.hr_kernel={hr_kernel} needs a last conv after it, got net.last_kernel=0 "
                              f"(valid: hr_kernel: 0, or last_kernel >= 1)")
        self.conv_first = conv_act(in_channels, num_feat, first_kernel, act)
        self.body = body(in_channels=num_feat)
        steps = [2] * int(math.log2(scale)) if stepwise and _power_of_2(scale) else [scale]
        w = self.body.out_channels  # the upsample steps keep the body's width (SwinIR: 180 in the body, 64 after)
        outs = [w] * (len(steps) - 1) + [w if last_kernel else out_channels]
        self.upsample = nn.Sequential(*[upsample(in_channels=w, out_channels=b, scale=r) for b, r in zip(outs, steps)])
        self.conv_hr = conv_act(w, w, hr_kernel, hr_act) if hr_kernel else nn.Identity()
        self.conv_last = conv(w, out_channels, last_kernel) if last_kernel else nn.Identity()
        self._apply_init(init)

    def run(self, x: Tensor) -> Tensor:
        y = self.conv_last(self.conv_hr(self.upsample(self.body(self.conv_first(x)))))
        return y + F.interpolate(x, scale_factor=self.scale, mode=self.residual) if self.residual else y


class ProgressiveUpsample(Strategy):
    """log2(scale) ×2 levels, an output at each (LapSRN): level k's features go through ``body``, a ×2
    feature upsample and a ``last_kernel`` conv that predicts a residual image; the image branch upsamples the
    previous level's image ×2 and adds it. ``forward`` returns ``[×2, ×4, …, ×scale]`` so the loss can
    supervise every level, which is what makes the coarse levels meaningful."""

    def __init__(self, in_channels: int, out_channels: int, scale: int, body: Body, upsample: Upsample,
                 num_feat: int = 64, first_kernel: int = 3, last_kernel: int = 3, act: Act | None = nn.ReLU,
                 init: Init | Sequence[Init] | None = None, rgb_mean: Sequence[float] | None = None) -> None:
        super().__init__(in_channels, out_channels, scale, rgb_mean)
        if not _power_of_2(scale):
            raise ConfigError(f"net.strategy=progressive needs a power-of-2 scale, got scale={scale} "
                              f"(valid: 2, 4, 8)")
        if in_channels != out_channels:
            raise ConfigError(f"net.strategy=progressive upsamples the input image, so in_channels must equal "
                              f"out_channels, got {in_channels} and {out_channels} (valid: equal channels)")
        if not (first_kernel and last_kernel):
            raise ConfigError(f"net.first_kernel={first_kernel}, net.last_kernel={last_kernel}: progressive "
                              f"needs both convs (valid: 1, 3, 5, …)")
        self.conv_first = conv_act(in_channels, num_feat, first_kernel, act)
        self.bodies, self.feat_ups, self.to_residual, self.image_ups = (nn.ModuleList() for _ in range(4))
        for _ in range(int(math.log2(scale))):
            b = body(in_channels=num_feat)
            up = upsample(in_channels=b.out_channels, out_channels=num_feat, scale=2)
            self.bodies.append(b)
            self.feat_ups.append(nn.Sequential(up, act()) if act is not None else up)
            self.to_residual.append(conv(num_feat, out_channels, last_kernel))
            self.image_ups.append(upsample(in_channels=out_channels, out_channels=out_channels, scale=2))
        self._apply_init(init)

    def run(self, x: Tensor) -> list[Tensor]:
        feat, image, outs = self.conv_first(x), x, []
        for body, feat_up, to_residual, image_up in zip(self.bodies, self.feat_ups, self.to_residual,
                                                       self.image_ups):
            feat = feat_up(body(feat))
            image = image_up(image) + to_residual(feat)
            outs.append(image)
        return outs


class IterativeUpsample(Strategy):
    """DBPN: alternating up- and down-projection units (:mod:`srexp.nets.blocks`) that feed the
    reconstruction error back, ``num_stages`` up-projections in all; the HR outputs of every up-projection are
    concatenated for the ``last_kernel`` reconstruction conv. ``dense`` (D-DBPN) feeds each unit the
    concatenation of all earlier outputs of the other resolution (reduced by a 1×1 conv).

    The ×r steps inside the units are the ``upsample`` layer (DBPN: a transposed conv, kernel r+4, stride r,
    padding 2); the ÷r steps a strided conv with ``kernel_size`` (null: r+4). The body runs at LR between the
    head and the first unit (D-DBPN: the 1×1 conv that reduces 256 to 64 channels)."""

    def __init__(self, in_channels: int, out_channels: int, scale: int, body: Body, upsample: Upsample,
                 num_feat: int = 64, num_stages: int = 3, dense: bool = True, first_kernel: int = 3,
                 last_kernel: int = 3, kernel_size: int | None = None, act: Act = nn.PReLU,
                 init: Init | Sequence[Init] | None = None, rgb_mean: Sequence[float] | None = None) -> None:
        super().__init__(in_channels, out_channels, scale, rgb_mean)
        if act is None:
            raise ConfigError("net.act=null: the iterative projection units need an activation (valid: a partial "
                              "such as {_target_: torch.nn.PReLU, _partial_: true})")
        if num_stages < 1:
            raise ConfigError(f"net.num_stages={num_stages} is too small (valid: >= 1)")
        if not (first_kernel and last_kernel):
            raise ConfigError(f"net.first_kernel={first_kernel}, net.last_kernel={last_kernel}: iterative "
                              f"needs both convs (valid: 1, 3, 5, …)")
        k, pad, _ = exact_padding(kernel_size, scale, "net.kernel_size")
        self.conv_first = conv_act(in_channels, num_feat, first_kernel, act)
        self.body = body(in_channels=num_feat)
        w = self.body.out_channels

        def up() -> nn.Module:
            return nn.Sequential(upsample(in_channels=w, out_channels=w, scale=scale), act())

        def down() -> nn.Module:
            return nn.Sequential(nn.Conv2d(w, w, k, scale, pad), act())

        def width(t: int) -> int:  # t earlier outputs are concatenated in dense mode
            return w * max(t, 1) if dense else w

        self.ups = nn.ModuleList(UpProjection(width(t), w, up, down, act) for t in range(num_stages))
        self.downs = nn.ModuleList(DownProjection(width(t), w, up, down, act) for t in range(1, num_stages))
        self.conv_last = conv(w * num_stages, out_channels, last_kernel)
        self.dense = dense
        self._apply_init(init)

    def run(self, x: Tensor) -> Tensor:
        highs, lows = [self.ups[0](self.body(self.conv_first(x)))], []
        for down, up in zip(self.downs, self.ups[1:]):
            lows.append(down(cat(highs) if self.dense else highs[-1]))
            highs.append(up(cat(lows) if self.dense else lows[-1]))
        return self.conv_last(cat(highs))


class AtScale(nn.Module):
    """A net whose weights do not depend on the scale (``any_scale``), run at another scale than it was built for."""

    def __init__(self, net: nn.Module, scale: int):
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, x):
        return self.net(x, scale=self.scale)


def at_scale(net: nn.Module, scale: int, refuse: str) -> nn.Module:
    """The one way to run a net at another scale than it was built for: itself at its own scale; wrapped in
    :class:`AtScale` where its weights do not depend on the scale (``any_scale``); else ConfigError(``refuse``)."""
    if scale == getattr(net, "scale", scale):
        return net
    if not getattr(net, "any_scale", False):
        raise ConfigError(refuse)
    return AtScale(net, scale)
