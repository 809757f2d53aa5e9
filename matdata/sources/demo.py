"""The embedded demo source: procedural portraits and scenes, offline and deterministic.

Foregrounds (``demo-fg-0000`` ...) are head-and-shoulders figures drawn from smooth
shapes, with hair that ends in anti-aliased strands, semi-transparent fringes and faint
flyaways, so their alpha is truly fractional along a wide part of the outline (like a
real portrait matte).  Every foreground has three layers:

* the true foreground colours ``F`` (skin, hair, clothes) - :func:`demo_true_foreground`;
* the alpha ``a`` (uint8);
* the *source photo* ``I = round(a/255 * F + (1 - a/255) * B_orig)`` over a coloured studio
  backdrop ``B_orig`` - what :meth:`DemoSource.load_foreground` returns as ``rgb``, like a
  real dataset.  Compositing ``I`` instead of an estimate of ``F`` shows halos.

Backgrounds (``demo-bg-0000`` ...) are varied scenes (rooms, studio backdrops, sky and
hills, textures), of several sizes and aspect ratios other than the foregrounds', some
nearly grey; categories ``demo/indoor``, ``demo/studio`` (io 1) and ``demo/outdoor``,
``demo/texture`` (io 2).

Pixels are generated from the item id (and the ``seed`` option) with a private
``np.random.Generator``; nothing is read from disk.  A 192x256 foreground takes a few
milliseconds.  Options: ``n_fg`` (24), ``n_bg`` (16), ``size`` (W, H) of the foregrounds
((192, 256); also ``"192x256"``), ``seed`` (0), ``val_fraction`` (0.2).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from matdata.errors import SourceError
from matdata.rejects import Reject
from matdata.sources._common import opt_fraction
from matdata.sources.base import SOURCES, Foreground, Item, Progress, Source, assign_split

#: Bump when the generator changes: it is part of every item's hash.
DEMO_VERSION = 1
DEFAULT_FG_SIZE = (192, 256)
#: Background sizes (W, H), cycled by index: none has the foregrounds' 3:4 aspect.
BG_SIZES = ((320, 240), (256, 256), (384, 256), (200, 320), (300, 200), (400, 300))
CATEGORIES = (("demo/indoor", 1), ("demo/studio", 1), ("demo/outdoor", 2), ("demo/texture", 2))
_ID_RE = re.compile(r"^demo-(fg|bg)-(\d+)$")


# ---------------------------------------------------------------------------- helpers


def _rng(role: str, index: int, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"matdata-demo/v{DEMO_VERSION}/{seed}/{role}/{index}".encode())
    return np.random.default_rng(int.from_bytes(digest.digest()[:8], "little"))


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Value noise in [0, 1], ``(h, w)`` float32, features about ``cell`` pixels wide."""
    import cv2

    small = rng.random((h // cell + 3, w // cell + 3)).astype(np.float32)
    big = cv2.resize(small, (w + 3 * cell, h + 3 * cell), interpolation=cv2.INTER_CUBIC)
    return np.clip(big[cell : cell + h, cell : cell + w], 0.0, 1.0)


def _ellipse_sd(
    xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, rx: float, ry: float
) -> np.ndarray:
    """Approximate signed distance (pixels, negative inside) to an axis-aligned ellipse."""
    f = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    return (f - 1.0) * min(rx, ry)


def _coverage(sd: np.ndarray, soft: float) -> np.ndarray:
    """Edge coverage from a signed distance: a linear ramp ``soft`` pixels wide."""
    return np.clip(0.5 - sd / soft, 0.0, 1.0).astype(np.float32)


def _over(
    c: np.ndarray, a: np.ndarray, color: np.ndarray, alpha: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied "over": ``C = a_l*col + (1-a_l)*C``, ``A = a_l + (1-a_l)*A`` (in place)."""
    al = alpha[:, :, None]
    c -= color
    c *= 1.0 - al
    c += color  # = a_l*col + (1-a_l)*C
    a *= 1.0 - alpha
    a += alpha
    return c, a


# ------------------------------------------------------------------------ foregrounds

_SKIN = np.array(
    [[241, 194, 167], [224, 172, 105], [198, 134, 66], [141, 85, 36], [255, 219, 190]], np.float32
)
_HAIR = np.array(
    [[30, 22, 18], [72, 46, 28], [120, 80, 40], [200, 160, 90], [150, 60, 30], [90, 90, 95]],
    np.float32,
)
_BACKDROP = np.array(
    [[40, 170, 70], [40, 90, 200], [230, 120, 40], [235, 235, 230], [180, 40, 140]], np.float32
)


@functools.lru_cache(maxsize=64)
def _render_fg(index: int, w: int, h: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(F, alpha, photo)``: uint8 ``(h, w, 3)``, ``(h, w)``, ``(h, w, 3)`` (read-only).

    The layers are painted back to front, each drawing from the one generator in turn
    (so the order of the steps is part of the output)."""
    fig = _Figure.blank(_rng("fg", index, seed), w, h)
    body, body_a = _paint_body(fig)
    head = _paint_neck_and_head(fig, body)
    hair_img, cap = _paint_hair_cap(fig, head)
    _paint_strands(fig, cap, hair_img)
    _paint_scarf(fig, body, body_a)
    f8, alpha8 = _unpremultiply(fig, hair_img)
    photo = _source_photo(fig, f8, alpha8)
    for arr in (f8, alpha8, photo):
        arr.setflags(write=False)
    return f8, alpha8, photo


class _Ellipse(NamedTuple):
    """An axis-aligned ellipse: centre and radii, in pixels."""

    cx: float
    cy: float
    rx: float
    ry: float


@dataclass
class _Figure:
    """A foreground being painted: premultiplied colour ``c`` and coverage ``a``."""

    rng: np.random.Generator
    w: int
    h: int
    xx: np.ndarray  # pixel coordinates, float32 (h, w)
    yy: np.ndarray
    tex: np.ndarray  # value noise shared by cloth and skin
    c: np.ndarray  # (h, w, 3) float32
    a: np.ndarray  # (h, w) float32

    @classmethod
    def blank(cls, rng: np.random.Generator, w: int, h: int) -> _Figure:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        tex = _smooth_noise(rng, h, w, max(4, min(w, h) // 12))
        c = np.zeros((h, w, 3), np.float32)
        a = np.zeros((h, w), np.float32)
        return cls(rng, w, h, xx, yy, tex, c, a)

    @property
    def u(self) -> int:
        """The short side: the unit of hair sizes."""
        return min(self.w, self.h)

    def over(self, color: np.ndarray, alpha: np.ndarray) -> None:
        """Paint ``color`` with coverage ``alpha`` over what is there."""
        self.c, self.a = _over(self.c, self.a, color, alpha)


def _paint_body(fig: _Figure) -> tuple[_Ellipse, np.ndarray]:
    """Shoulders: a wide ellipse cut by the bottom edge, in plain or striped cloth;
    ``(the ellipse, its coverage)``."""
    rng, w, h, xx, yy = fig.rng, fig.w, fig.h, fig.xx, fig.yy
    shade = (0.8 + 0.35 * fig.tex)[:, :, None]
    cx = w * (0.5 + rng.uniform(-0.06, 0.06))
    body_cy = h * rng.uniform(1.02, 1.1)
    body_rx, body_ry = w * rng.uniform(0.4, 0.5), h * rng.uniform(0.36, 0.44)
    cloth = rng.uniform(30, 230, 3).astype(np.float32)
    stripes = (0.85 + 0.15 * np.sign(np.sin(yy / rng.uniform(3, 9))))[:, :, None]
    cloth_img = cloth * shade * (stripes if rng.random() < 0.5 else 1.0)
    body_a = _coverage(_ellipse_sd(xx, yy, cx, body_cy, body_rx, body_ry), 1.2)
    fig.over(cloth_img, body_a)
    return _Ellipse(cx, body_cy, body_rx, body_ry), body_a


def _paint_neck_and_head(fig: _Figure, body: _Ellipse) -> _Ellipse:
    """Neck and head in one skin tone; the head ellipse."""
    rng, w, h, xx, yy, tex = fig.rng, fig.w, fig.h, fig.xx, fig.yy, fig.tex
    cx, body_cy, _, body_ry = body
    skin = _SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.9, 1.05)
    head_cx = cx + w * rng.uniform(-0.03, 0.03)
    head_cy = h * rng.uniform(0.43, 0.47)
    head_rx, head_ry = w * rng.uniform(0.16, 0.2), h * rng.uniform(0.13, 0.15)
    neck_w = head_rx * 0.45
    neck_sd = np.maximum(np.abs(xx - head_cx) - neck_w, head_cy - yy)
    neck_sd = np.maximum(neck_sd, yy - (body_cy - body_ry + 0.1 * h))
    skin_img = skin * (0.75 + 0.3 * (1.0 - yy / h))[:, :, None] * (0.95 + 0.1 * tex)[:, :, None]
    fig.over(skin_img, _coverage(neck_sd, 1.0))
    head_a = _coverage(_ellipse_sd(xx, yy, head_cx, head_cy, head_rx, head_ry), 1.0)
    fig.over(skin_img, head_a)
    return _Ellipse(head_cx, head_cy, head_rx, head_ry)


def _paint_hair_cap(fig: _Figure, head: _Ellipse) -> tuple[np.ndarray, _Ellipse]:
    """A hair cap with a soft, noisy, semi-transparent fringe, long or short, leaving the
    face clear; ``(hair colour image, the cap's ellipse)``."""
    rng, h, w, xx, yy, u = fig.rng, fig.h, fig.w, fig.xx, fig.yy, fig.u
    head_cx, head_cy, head_rx, head_ry = head
    hair = _HAIR[rng.integers(len(_HAIR))]
    hair_img = np.clip(hair * (0.7 + 0.6 * _smooth_noise(rng, h, w, 3))[:, :, None], 0, 255)
    cap_rx, cap_ry = head_rx * rng.uniform(1.1, 1.3), head_ry * rng.uniform(1.08, 1.2)
    cap_cy = head_cy - head_ry * rng.uniform(0.05, 0.15)
    long_hair = rng.random() < 0.5
    cut_y = head_cy + head_ry * (rng.uniform(0.6, 1.6) if long_hair else rng.uniform(-0.3, 0.1))
    cap_sd = _ellipse_sd(xx, yy, head_cx, cap_cy, cap_rx, cap_ry)
    fringe = max(3.0, u * rng.uniform(0.02, 0.05))
    cap_a = _coverage(cap_sd, fringe) * _coverage(yy - cut_y, fringe)
    fuzz = _smooth_noise(rng, h, w, 2)
    cap_a = np.where(cap_sd > -fringe, cap_a * (0.35 + 0.65 * fuzz), cap_a)
    # no hair over the face: keep the face oval (lower part of the head) clear
    face_sd = _ellipse_sd(xx, yy, head_cx, head_cy + head_ry * 0.25, head_rx * 0.8, head_ry * 0.85)
    cap_a = cap_a * (1.0 - _coverage(face_sd, 2.0))
    fig.over(hair_img, cap_a.astype(np.float32))
    return hair_img, _Ellipse(head_cx, cap_cy, cap_rx, cap_ry)


def _paint_strands(fig: _Figure, cap: _Ellipse, hair_img: np.ndarray) -> None:
    """Anti-aliased 1-px curves leaving the cap outline, curly or straight, with faint
    flyaways among them."""
    import cv2

    rng, u = fig.rng, fig.u
    head_cx, cap_cy, cap_rx, cap_ry = cap
    canvas = np.zeros((fig.h, fig.w), np.uint8)
    n = int(rng.integers(70, 160))
    th = rng.uniform(-math.pi * 1.05, 0.05, n)  # upper half and the sides of the head
    lengths = rng.uniform(0.04, 0.2, n) * u
    curl = rng.normal(0.0, 0.25 if rng.random() < 0.5 else 0.06, n)  # curly or straight
    opac = rng.uniform(0.25, 1.0, n)
    for k in range(n):
        px = head_cx + cap_rx * math.cos(th[k]) * 0.95
        py = cap_cy + cap_ry * math.sin(th[k]) * 0.95
        ang = th[k] + rng.normal(0.0, 0.3)
        pts = [(px, py)]
        steps = 8
        for _ in range(steps):
            ang += curl[k]
            px += math.cos(ang) * lengths[k] / steps
            py += math.sin(ang) * lengths[k] / steps + 0.3  # a little gravity
            pts.append((px, py))
        poly = np.round(np.array(pts) * 16).astype(np.int32)  # 4 fractional bits
        val = int(255 * opac[k])
        cv2.polylines(canvas, [poly], False, val, 1, cv2.LINE_AA, shift=4)
    strands_a = canvas.astype(np.float32) / 255.0
    fig.over(np.clip(hair_img * 1.15, 0, 255), strands_a)


def _paint_scarf(fig: _Figure, body: _Ellipse, body_a: np.ndarray) -> None:
    """Sometimes a translucent scarf (a large region of constant fractional alpha)."""
    rng, h, w, yy = fig.rng, fig.h, fig.w, fig.yy
    _, body_cy, _, body_ry = body
    if rng.random() < 0.35:
        scarf_sd = np.abs(yy - (body_cy - body_ry * 0.75)) - h * 0.035
        scarf_a = _coverage(scarf_sd, 2.0) * rng.uniform(0.35, 0.6) * (body_a > 0.5)
        scarf = rng.uniform(60, 250, 3).astype(np.float32)
        fig.over(np.broadcast_to(scarf, (h, w, 3)), scarf_a.astype(np.float32))


def _unpremultiply(fig: _Figure, hair_img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(F, alpha)`` as uint8: the true colours (hair colour where nothing is painted)."""
    c, a = fig.c, fig.a
    alpha8 = np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    safe = a > 1e-6
    f = np.where(safe[:, :, None], c / np.maximum(a, 1e-6)[:, :, None], hair_img)
    f8 = np.rint(np.clip(f, 0, 255)).astype(np.uint8)
    return f8, alpha8


def _source_photo(fig: _Figure, f8: np.ndarray, alpha8: np.ndarray) -> np.ndarray:
    """The "source photo": F over a coloured studio backdrop with a gradient and texture."""
    rng, w, h, xx = fig.rng, fig.w, fig.h, fig.xx
    base = _BACKDROP[rng.integers(len(_BACKDROP))]
    grad = 0.75 + 0.4 * (xx / w) * rng.uniform(0.5, 1.0) + 0.1 * _smooth_noise(rng, h, w, 16)
    backdrop = np.clip(base * grad[:, :, None], 0, 255)
    af = alpha8.astype(np.float32)[:, :, None] / 255.0
    return np.rint(np.clip(af * f8 + (1.0 - af) * np.rint(backdrop), 0, 255)).astype(np.uint8)


# ------------------------------------------------------------------------ backgrounds


@functools.lru_cache(maxsize=64)
def _render_bg(index: int, w: int, h: int, seed: int) -> np.ndarray:
    """A background scene, uint8 ``(h, w, 3)`` (read-only)."""
    import cv2

    rng = _rng("bg", index, seed)
    kind = index % len(CATEGORIES)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    col = lambda: rng.uniform(20, 240, 3).astype(np.float32)  # noqa: E731
    if kind == 0:  # indoor: wall, floor, windows, furniture
        wall, floor = col(), col() * 0.6
        img = np.where((yy > h * rng.uniform(0.55, 0.75))[:, :, None], floor, wall)
        img = img * (0.8 + 0.3 * (xx / w))[:, :, None]
        img = np.ascontiguousarray(img)
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = int(rng.uniform(0, w * 0.8)), int(rng.uniform(0, h * 0.4))
            x1, y1 = (
                x0 + int(rng.uniform(w * 0.1, w * 0.3)),
                y0 + int(rng.uniform(h * 0.1, h * 0.3)),
            )
            cv2.rectangle(img, (x0, y0), (x1, y1), tuple(float(v) for v in col() * 0.3 + 170), -1)
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = int(rng.uniform(0, w * 0.8)), int(rng.uniform(h * 0.4, h * 0.8))
            x1, y1 = x0 + int(rng.uniform(w * 0.1, w * 0.4)), h
            cv2.rectangle(img, (x0, y0), (x1, y1), tuple(float(v) for v in col()), -1)
        img = cv2.GaussianBlur(img, (0, 0), 1.0)
    elif kind == 1:  # studio: radial gradient backdrop
        c0, c1 = col(), col()
        cx, cy = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7)
        r = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) / math.hypot(w, h)
        t = np.clip(r * rng.uniform(1.2, 2.2), 0, 1)[:, :, None]
        img = c0 * (1 - t) + c1 * t
    elif kind == 2:  # outdoor: sky, sun, hills with texture, trees
        sky0, sky1 = np.array([90, 140, 230], np.float32), np.array([200, 220, 245], np.float32)
        t = (yy / h)[:, :, None]
        img = sky0 * (1 - t) + sky1 * t
        horizon = h * rng.uniform(0.45, 0.7) + h * 0.08 * np.sin(xx[0] / w * rng.uniform(3, 9))
        ground = np.array([60, 130, 50], np.float32) * rng.uniform(0.6, 1.3)
        grass = ground * (0.7 + 0.6 * _smooth_noise(rng, h, w, 3))[:, :, None]
        img = np.where((yy > horizon[None, :])[:, :, None], grass, img)
        img = np.ascontiguousarray(img)
        cv2.circle(img, (int(rng.uniform(0, w)), int(h * 0.15)), int(h * 0.06), (255, 240, 200), -1)
        for _ in range(int(rng.integers(2, 7))):
            x = int(rng.uniform(0, w))
            y = int(horizon[min(w - 1, max(0, x))])
            cv2.circle(
                img, (x, y - int(h * 0.08)), int(h * rng.uniform(0.05, 0.12)), (40, 90, 35), -1
            )
    else:  # texture: stripes / checks / noise
        c0, c1 = col(), col()
        ang = rng.uniform(0, math.pi)
        period = rng.uniform(6, 40)
        proj = xx * math.cos(ang) + yy * math.sin(ang)
        if rng.random() < 0.5:
            t = 0.5 + 0.5 * np.sin(proj / period * 2 * math.pi)
        else:
            proj2 = -xx * math.sin(ang) + yy * math.cos(ang)
            t = ((np.floor(proj / period) + np.floor(proj2 / period)) % 2).astype(np.float32)
        t = 0.7 * t + 0.3 * _smooth_noise(rng, h, w, 8)
        img = c0 * (1 - t[:, :, None]) + c1 * t[:, :, None]
    img = img + rng.normal(0.0, 3.0, img.shape)
    if index % 5 == 3:  # nearly grey, like the grayscale JPEGs of Places365
        grey = img @ np.array([0.299, 0.587, 0.114])
        img = grey[:, :, None] + rng.uniform(-4, 4, 3)
    out = np.rint(np.clip(img, 0, 255)).astype(np.uint8)
    out.setflags(write=False)
    return out


# ------------------------------------------------------------------------ the source


def _parse_size(size: Any) -> tuple[int, int]:
    if size is None:
        return DEFAULT_FG_SIZE
    if isinstance(size, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", size)
        if not m:
            raise SourceError(f"demo size {size!r} is not WxH", hint="e.g. size=192x256")
        return int(m.group(1)), int(m.group(2))
    w, h = (int(v) for v in size)
    return w, h


def parse_demo_id(item_id: str) -> tuple[str, int]:
    """``"demo-fg-0003"`` -> ``("fg", 3)``; :class:`SourceError` for anything else."""
    m = _ID_RE.match(item_id)
    if not m:
        raise SourceError(f"{item_id!r} is not a demo item id", hint="ids look like demo-fg-0003")
    return m.group(1), int(m.group(2))


def bg_size(index: int) -> tuple[int, int]:
    """Size ``(W, H)`` of background ``index``."""
    return BG_SIZES[index % len(BG_SIZES)]


@SOURCES.register("demo")
class DemoSource(Source):
    """Procedural foregrounds and backgrounds (see the module docstring). ``root`` is ignored."""

    kind = "demo"
    roles = ("fg", "bg")
    known_options = ("n_fg", "n_bg", "size", "seed", "val_fraction")

    def __init__(self, root: str = "", **options: Any):
        super().__init__(root or "demo", **options)
        self.n_fg = int(options.get("n_fg", 24))
        self.n_bg = int(options.get("n_bg", 16))
        self.size = _parse_size(options.get("size"))
        self.seed = int(options.get("seed", 0))
        self.val_fraction = opt_fraction(options, "val_fraction", 0.2)
        bad = not (0 <= self.n_fg <= 100_000 and 0 <= self.n_bg <= 100_000)
        if bad or min(self.size) < 16 or max(self.size) > 8192:
            raise SourceError(
                f"bad demo options n_fg={self.n_fg} n_bg={self.n_bg} "
                f"size={self.size[0]}x{self.size[1]}",
                hint="counts in 0..100000, sides in 16..8192",
            )

    def _item(self, role: str, index: int) -> Item:
        if role == "fg":
            w, h = self.size
            group = f"demo-person-{index // 2:04d}"  # two poses per "person"
            category, io = None, None
        else:
            w, h = bg_size(index)
            group = f"demo-bg-{index:04d}"
            category, io = CATEGORIES[index % len(CATEGORIES)]
        params = {"version": DEMO_VERSION, "seed": self.seed, "role": role, "index": index}
        sha = hashlib.sha256(json.dumps({**params, "w": w, "h": h}, sort_keys=True).encode())
        return Item(
            id=f"demo-{role}-{index:04d}",
            source=self.kind,
            role=role,
            split=assign_split(group, val_fraction=self.val_fraction, salt="demo"),
            image=f"demo://{role}/{index:04d}",
            width=w,
            height=h,
            sha256=sha.hexdigest(),
            group=group,
            category=category,
            io=io,
            tags=("demo",),
            extra=json.dumps({"seed": self.seed, "version": DEMO_VERSION}, sort_keys=True),
        )

    def scan(self, progress: Progress | None = None) -> Iterator[Item | Reject]:
        for i in range(self.n_fg):
            yield self._item("fg", i)
            if progress:
                progress(1)
        for i in range(self.n_bg):
            yield self._item("bg", i)
            if progress:
                progress(1)

    def _seed_of(self, item: Item) -> int:
        try:
            return int(item.extra_dict().get("seed", self.seed))
        except (ValueError, TypeError):
            return self.seed

    def load_foreground(self, item: Item) -> Foreground:
        role, index = parse_demo_id(item.id)
        if role != "fg":
            raise SourceError(f"{item.id} is a background, not a foreground")
        _, alpha, photo = _render_fg(index, item.width, item.height, self._seed_of(item))
        return Foreground(rgb=photo.copy(), alpha=alpha.copy(), ignore=None, coarse=False)

    def load_background(self, item: Item) -> np.ndarray:
        role, index = parse_demo_id(item.id)
        if role != "bg":
            raise SourceError(f"{item.id} is a foreground, not a background")
        return _render_bg(index, item.width, item.height, self._seed_of(item)).copy()


def demo_true_foreground(
    item_or_index: Item | int, size: tuple[int, int] = DEFAULT_FG_SIZE, seed: int = 0
) -> np.ndarray:
    """The true foreground colours ``F`` (uint8 ``(H, W, 3)``) of a demo foreground.

    With an :class:`Item`, its size and seed are used; with an index, ``size`` and ``seed``.
    """
    if isinstance(item_or_index, Item):
        _, index = parse_demo_id(item_or_index.id)
        w, h = item_or_index.width, item_or_index.height
        seed = int(item_or_index.extra_dict().get("seed", seed))
    else:
        index, (w, h) = int(item_or_index), size
    return _render_fg(index, w, h, seed)[0].copy()


def demo_foreground_layers(
    index: int, size: tuple[int, int] = DEFAULT_FG_SIZE, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(F_true, alpha, photo)`` copies for foreground ``index`` (tests, benchmarks)."""
    f, a, p = _render_fg(int(index), int(size[0]), int(size[1]), int(seed))
    return f.copy(), a.copy(), p.copy()
