"""PNG settings for the masks a build writes: encode CPU time and size, same run.

Mattes are the demo source's 600x800 portraits (soft hair, anti-aliased edges) resized and
cropped to the build's 512x512 output, as a build stores them, plus their trimaps.  Each
setting encodes the same arrays; every output is decoded back and compared with the input
(PNG is lossless, so any setting must give the same pixels).  Compared:

* ``level 3`` (matdata's setting before: zlib level 3, default strategy, adaptive filters),
* ``matdata`` (:data:`matdata.imageio.PNG_MASK_PARAMS`: level 1, run-length strategy, no
  row filter),
* a few neighbours, so the choice can be checked.

Usage: ``python benchmarks/png_settings.py [--mattes 12] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np


def _mattes(n: int) -> list[np.ndarray]:
    from matdata.sources.demo import _render_fg
    from matdata.trimap import make_trimap

    out = []
    for i in range(n):
        _, alpha, _ = _render_fg(i, 600, 800, 0)
        a = cv2.resize(alpha, (512, 683), interpolation=cv2.INTER_AREA)[:512]
        out.append(np.ascontiguousarray(a))
        out.append(make_trimap(out[-1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mattes", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from matdata.imageio import PNG_MASK_PARAMS, _png_params

    C, S, F = cv2.IMWRITE_PNG_COMPRESSION, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_FILTER
    rle, sub = cv2.IMWRITE_PNG_STRATEGY_RLE, cv2.IMWRITE_PNG_FILTER_SUB
    settings = {
        "level 3 (before)": [C, 3],
        "matdata": _png_params(PNG_MASK_PARAMS),
        "level 1, RLE, sub filter": [C, 1, S, rle, F, sub],
        "level 1": [C, 1],
        "level 6": [C, 6],
    }
    arrays = _mattes(args.mattes)
    times: dict[str, list[float]] = {k: [] for k in settings}
    sizes: dict[str, float] = {}
    for _ in range(args.rounds):  # interleaved rounds: load on the machine hits all alike
        for name, params in settings.items():
            t = time.process_time()
            blobs = [cv2.imencode(".png", a, params)[1] for a in arrays]
            times[name].append((time.process_time() - t) / len(arrays) * 1e3)
            sizes[name] = sum(len(b) for b in blobs) / len(arrays) / 1e3
            for a, b in zip(arrays, blobs, strict=True):
                assert np.array_equal(cv2.imdecode(b, cv2.IMREAD_UNCHANGED), a), name
    base = statistics.median(times["level 3 (before)"])
    print(f"{len(arrays)} masks of 512x512 (mattes + trimaps), {args.rounds} rounds, CPU time")
    print(f"{'setting':28s} {'ms/mask':>8s} {'KB/mask':>8s} {'speed vs level 3':>17s}")
    for name in settings:
        ms = statistics.median(times[name])
        print(f"{name:28s} {ms:8.2f} {sizes[name]:8.1f} {base / ms:16.2f}x")


if __name__ == "__main__":
    main()
