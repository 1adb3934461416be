"""spandrel (MIT) as the reference implementation of the official architectures, for the foreign-checkpoint tests.

spandrel's package ``__init__`` registers all its architectures, and two of them (LaMa, RestoreFormer) import
torchvision at import time. torchvision does not import beside the CPU torch of this project's machines (its
operators fail to register), so ``import spandrel`` fails there. :func:`spandrel` imports it with a stand-in for
exactly those names (``torchvision.transforms.functional``: ``InterpolationMode``, ``rotate``, ``normalize``) that
raises if it is ever called — the tests use neither LaMa nor RestoreFormer. Where the real torchvision imports, it is
used and nothing is stood in. Tests only: srexp itself never installs a stand-in.
"""
from __future__ import annotations

import enum
import sys
import types

import pytest


def _stand_in() -> None:
    def unavailable(*_a, **_k):
        raise RuntimeError("torchvision stand-in (tests/spandrel_ref.py): LaMa/RestoreFormer are not usable here")

    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = enum.Enum("InterpolationMode", "NEAREST BILINEAR BICUBIC")
    functional.rotate = functional.normalize = unavailable
    tv.transforms, transforms.functional = transforms, functional
    sys.modules.update({"torchvision": tv, "torchvision.transforms": transforms,
                        "torchvision.transforms.functional": functional})


def spandrel():
    """The spandrel module (skips the test with a reason when spandrel is not installed: ``pip install --no-deps
    spandrel einops``)."""
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - missing, or present but broken beside this torch: either way stand in
        _drop_torchvision()
        _stand_in()
        try:
            return pytest.importorskip("spandrel",
                                       reason="spandrel is not installed (pip install --no-deps spandrel einops)")
        finally:  # spandrel keeps its references; later tests must not see a torchvision without a __spec__
            _drop_torchvision()  # (Lightning's import checks call importlib.util.find_spec("torchvision"))
    return pytest.importorskip("spandrel", reason="spandrel is not installed (pip install --no-deps spandrel einops)")


def _drop_torchvision() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
