"""Perceptual hashes (dHash, pHash) and near-duplicate grouping.

Written here on numpy / scipy / OpenCV rather than taken from ``imagehash``: the two
hashes are a few lines each on libraries matdata already depends on, so one dependency
(and its Pillow-based resize path, slower than OpenCV's) is saved.

Definitions (``g`` = the grey 64 x 64 thumbnail of :func:`_thumb`, area-averaged to the
sizes below; bits are packed row-major, most significant bit first, into a uint64)::

    dHash:  g -> 9 x 8 (W x H);    bit(y, x) = g[y, x + 1] > g[y, x]        (64 bits)
    pHash:  g -> 32 x 32;  D = DCT-II(g) (orthonormal, 2-D);  L = D[:8, :8];
            m = median(L without L[0, 0]);   bit(y, x) = L[y, x] > m         (64 bits)

Two images are near duplicates when both Hamming distances are within the limits
(:class:`matdata.qa.analysis.Thresholds`).

A grey input is used as it is: the QA scan passes the JPEG's own luma plane (decoded
without colour), which equals ``0.299 R + 0.587 G + 0.114 B`` of the decoded RGB up to
rounding (+-1 on about 0.1 % of the pixels of the benchmark images; far below what a
64 x 64 average resolves: the hashes of the benchmark and test sets are the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np


def _thumb(img: np.ndarray) -> np.ndarray:
    """Grey 64 x 64 float32 thumbnail: the common start of both hashes.

    An image whose short side is >= 512 is first halved by 2 x 2 block means
    (:func:`matdata.qa.halo.halve`, in colour: the halo score's working image at 512 px,
    so the scan passes the grey of that and computes it once); then grey (``0.299 R +
    0.587 G + 0.114 B``, OpenCV), halved with a Gaussian pyramid (``cv2.pyrDown``) while
    the short side is >= 256, and area-averaged to 64 x 64.  Area resampling of the full
    image would be as robust but slow at non-integer ratios (3 ms for 800 x 600, as long
    as its JPEG decode); bilinear sampling is fast but aliases noise (a JPEG re-encode
    then moves the pHash by up to 8 bits instead of 2).
    """
    import cv2

    from matdata.qa.halo import halve

    if min(img.shape[:2]) >= 512:
        img = halve(img)
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    while min(g.shape[:2]) >= 256:
        g = cv2.pyrDown(g)
    return cv2.resize(g, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)


def _resize(g: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    return cv2.resize(g, (w, h), interpolation=cv2.INTER_AREA)


def _pack(bits: np.ndarray) -> int:
    return int(np.packbits(bits.astype(np.uint8).ravel()).view(">u8")[0])


def dhash(img: np.ndarray, thumb: np.ndarray | None = None) -> int:
    """64-bit difference hash of an RGB ``(H, W, 3)`` or grey ``(H, W)`` uint8 image."""
    g = _resize(_thumb(img) if thumb is None else thumb, 9, 8)
    return _pack(g[:, 1:] > g[:, :-1])


def phash(img: np.ndarray, thumb: np.ndarray | None = None) -> int:
    """64-bit DCT perceptual hash of an RGB ``(H, W, 3)`` or grey ``(H, W)`` uint8 image."""
    from scipy.fft import dctn

    g = _resize(_thumb(img) if thumb is None else thumb, 32, 32).astype(np.float64)
    low = dctn(g, type=2, norm="ortho")[:8, :8]
    m = np.partition(low.ravel()[1:], 31)[31]  # the median of the 63 AC terms (np.median's)
    return _pack(low > m)


def image_hashes(img: np.ndarray) -> tuple[int, int]:
    """``(phash, dhash)`` of one image, sharing the grey thumbnail."""
    t = _thumb(img)
    return phash(img, t), dhash(img, t)


def hamming(a: int, b: int) -> int:
    return int((int(a) ^ int(b)).bit_count())


def near_duplicate_groups(
    phashes: Sequence[int],
    dhashes: Sequence[int],
    max_phash: int = 4,
    max_dhash: int = 8,
) -> list[list[int]]:
    """Groups (sorted index lists, >= 2 members) of mutually linked near duplicates.

    Two items link when ``hamming(phash) <= max_phash`` and ``hamming(dhash) <=
    max_dhash``; groups are the connected components.  Candidates come from the
    pigeonhole principle: split the 64 pHash bits into ``max_phash + 1`` chunks, two
    hashes within distance ``max_phash`` agree exactly on at least one chunk, so only
    items sharing a chunk value are compared (near-linear for distinct images, unlike the
    all-pairs O(n^2)).  Identical pHashes are collapsed first so that many copies of one
    image (e.g. blank frames) cost one comparison per copy.
    """
    n = len(phashes)
    ph = np.asarray(phashes, np.uint64) if n else np.zeros(0, np.uint64)
    dh = [int(d) for d in dhashes]
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    # identical pHashes: link members whose dHashes also agree (to their first such peer)
    uniq, inverse = np.unique(ph, return_inverse=True)
    members: dict[int, list[int]] = {}
    for i, u in enumerate(inverse.tolist()):
        members.setdefault(u, []).append(i)
    reps: list[int] = []  # one representative per distinct (pHash, dHash-cluster)
    for idx in members.values():
        clusters: list[int] = []
        for i in idx:
            for r in clusters:
                if hamming(dh[i], dh[r]) <= max_dhash:
                    union(i, r)
                    break
            else:
                clusters.append(i)
        reps.extend(clusters)
    # near pHashes among representatives
    rep = np.asarray(sorted(reps), np.int64)
    if rep.size > 1:
        k = max_phash + 1
        bounds = np.linspace(0, 64, k + 1).astype(int)
        seen: set[tuple[int, int]] = set()
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            mask = np.uint64((1 << int(hi - lo)) - 1)
            chunk = (ph[rep] >> np.uint64(lo)) & mask
            order = np.argsort(chunk, kind="stable")
            sc = chunk[order]
            starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
            ends = np.r_[starts[1:], sc.size]
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
                if e - s < 2:
                    continue
                for a, b in combinations(rep[order[s:e]].tolist(), 2):
                    pair = (min(a, b), max(a, b))
                    if pair in seen:
                        continue
                    seen.add(pair)
                    if (
                        hamming(int(ph[a]), int(ph[b])) <= max_phash
                        and hamming(dh[a], dh[b]) <= max_dhash
                    ):
                        union(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])
