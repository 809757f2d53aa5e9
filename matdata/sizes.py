"""The one size convention of the command line: **W x H** (width first, as image sizes are
usually written: ``640x480``), or one number for a square.

``matdata build --size`` and ``matdata harmonize --net-size`` both read it; ``matdata
train --image-size`` takes a single side (square crops).  Inside the library, arrays are
numpy-shaped, so size *tuples* named ``image_size`` / ``size`` of a network are
``(H, W)``; :func:`parse_wxh` returns ``(W, H)`` and callers convert once, at the edge.
"""

from __future__ import annotations

import re

from matdata.errors import ConfigError

_WXH = re.compile(r"(\d+)(?:\s*[x×]\s*(\d+))?")


def parse_wxh(text: str, option: str) -> tuple[int, int]:
    """``"512"`` -> ``(512, 512)``; ``"640x480"`` -> ``(640, 480)`` = (W, H).  Any other
    form (``480,640``, ``(480, 640)``, ``HxW`` words...) is a :class:`ConfigError` that
    states the convention."""
    m = _WXH.fullmatch(str(text).strip().lower())
    if not m:
        raise ConfigError(
            f"{option} {text!r} is not a size",
            hint="give one side (512) or W x H, width first (640x480)",
        )
    w = int(m.group(1))
    return w, int(m.group(2)) if m.group(2) else w
