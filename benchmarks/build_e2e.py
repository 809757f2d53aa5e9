"""End-to-end build throughput as a user runs it, against a codec floor (issue 15).

``matdata build --workers 1`` is run as a subprocess, as a user runs it, at two build
sizes (``--small`` and ``--large`` composites); the difference cancels start-up (Python
and Dask start, planning, index writing), so what is left is the *marginal* cost of
1,000 more composites.  Measured by wall time and by the CPU time of the whole process
tree (the build, its fork server, nanny and worker processes: ``RUSAGE_CHILDREN`` after
each build exits), which stays put when other jobs share the machine.

Inputs, written once to a temporary folder and ingested (``matdata ingest``, untimed):

* foregrounds in the AISegment layout: 600x800 JPEG photos (``clip_img/``) and RGBA PNG
  mattes (``matting/``: the photo's colours plus the alpha channel, like the download),
  photo-like portraits with soft hair (the demo generator's, at that size);
* backgrounds: photo-like 683x512 JPEG scenes (Places365-large size), one per composite
  (``fg * K``), so that each is used about once as with Places' 1.8M scenes.

Output 512x512, K = ``--per-fg`` (10), Parquet, JPEG quality 95.

**Codec floor**, in this process, one core (``cv2.setNumThreads(1)``, as in a worker), in
the same run: decode every input of the large build once, with the decoders the build
uses (fg JPEG, matte PNG's alpha, bg JPEG), and encode one output per composite at the
build's settings (JPEG quality 95 for the composite, PNG at the build's compression for
the alpha) from realistic content (the decoded photo blended over the decoded
background, the real matte resized), prepared outside the timed part.  Floor per 1,000
composites = that time / composites * 1000.

Floor and builds are interleaved (``--rounds`` rounds of floor, small, large); the ratio
floor / marginal build time is taken per round and the median reported, by CPU time and
by wall time.  Target >= 0.8x.

``--baseline PATH`` (another checkout, e.g. main) runs that tree's builds interleaved
with this tree's, on the same inputs and against the same floor (this tree's decoders),
for a before/after from one run.

Usage: ``python benchmarks/build_e2e.py [--small 50] [--large 300] [--per-fg 10]
[--rounds 3] [--baseline ../main]`` (composites; rounded to whole foregrounds).
``--profile`` also runs one shard task of the large build in this process under cProfile
and prints where the time goes (``--stages``: CPU time per stage instead).  A marginal
of a few hundred composites is noisy on a shared machine (a 10 -> 20 run can come out
negative): raise ``--large`` and ``--rounds`` for a figure worth quoting.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

QUALITY = 95
SIZE = 512


def make_aisegment(root: Path, n_fg: int, group_size: int = 10) -> None:
    """``n_fg`` portraits in AISegment's layout (JPEG photo + RGBA PNG matte)."""
    import cv2

    from matdata.imageio import encode_jpeg
    from matdata.sources.demo import demo_foreground_layers

    for i in range(n_fg):
        group = f"18031{i // group_size:05d}"
        stem = f"{group}-{i:08d}"
        img_dir = root / "clip_img" / group / f"clip_{i:08d}"
        mat_dir = root / "matting" / group / f"matting_{i:08d}"
        img_dir.mkdir(parents=True)
        mat_dir.mkdir(parents=True)
        _, alpha, photo = demo_foreground_layers(i, size=(600, 800), seed=1)
        (img_dir / f"{stem}.jpg").write_bytes(encode_jpeg(photo, QUALITY))
        bgra = np.dstack([cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), alpha])
        ok, buf = cv2.imencode(".png", bgra)
        assert ok
        (mat_dir / f"{stem}.png").write_bytes(buf.tobytes())


def make_backgrounds(root: Path, n_bg: int) -> None:
    from build_throughput import _scene

    from matdata.imageio import encode_jpeg

    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for j in range(n_bg):
        (root / f"s{j:06d}.jpg").write_bytes(encode_jpeg(_scene(rng, 683, 512), QUALITY))


def _env(catalog: Path, repo: Path = REPO) -> dict[str, str]:
    """The environment of a ``matdata`` command: the catalog, and ``repo``'s code."""
    env = dict(os.environ)
    env["MATDATA_CATALOG"] = str(catalog)
    env["PYTHONPATH"] = str(repo)
    return env


def _matdata(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``python -m matdata ARGS``; (wall, CPU of the whole process tree) seconds.

    The CPU time of the command itself is exact (``RUSAGE_CHILDREN``, it is waited for
    here).  Dask's fork server is never waited for by the build, so its time and its
    workers' (which it reaps) never reach the build's rusage: every descendant is polled
    (psutil, every 0.1 s) and its last seen user + system time added; the tail of a
    process after its last poll is lost (a few ms, the same in both build sizes).
    """
    import psutil

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    seen: dict[tuple[int, float], float] = {}
    # (output to a file: a pipe could fill up and stall the command)
    with tempfile.TemporaryFile("w+") as log:
        p = subprocess.Popen(
            [sys.executable, "-m", "matdata", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        root = psutil.Process(p.pid)
        while p.poll() is None:
            try:
                kids = root.children(recursive=True)
            except psutil.Error:
                kids = []
            for c in kids:
                try:
                    ct = c.cpu_times()
                    seen[(c.pid, c.create_time())] = ct.user + ct.system
                except psutil.Error:
                    pass
            time.sleep(0.1)
        p.wait()
        log.seek(0)
        out = log.read()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"matdata {' '.join(args)} failed:\n{out}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime) + sum(seen.values())
    return wall, cpu


def build(fg: str, out: Path, per_fg: int, env: dict[str, str]) -> tuple[float, float]:
    return _matdata(
        [
            "build",
            "--fg",
            fg,
            "--bg",
            "bg",
            "--out",
            str(out),
            "--workers",
            "1",
            "--per-fg",
            str(per_fg),
            "--size",
            str(SIZE),
            "--jpeg-quality",
            str(QUALITY),
            "--no-progress",
        ],
        env,
    )


def _inputs(root: Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    fgs = sorted((root / "clip_img").rglob("*.jpg"))
    mattes = {p.stem: p for p in (root / "matting").rglob("*.png")}
    return [(f, mattes[f.stem]) for f in fgs], sorted((root.parent / "bg").glob("*.jpg"))


def codec_floor(root: Path, per_fg: int) -> tuple[float, float, int]:
    """(wall, CPU) seconds to decode every input once and encode every output; outputs."""
    import cv2

    from matdata.imageio import decode_alpha, decode_image, encode_jpeg, encode_png

    cv2.setNumThreads(1)
    pairs, bgs = _inputs(root)
    t0, c0 = time.perf_counter(), time.process_time()
    fgs = [
        (decode_image(f.read_bytes(), f.name), decode_alpha(m.read_bytes(), m.name))
        for f, m in pairs
    ]
    bg_px = [decode_image(b.read_bytes(), b.name) for b in bgs]
    t_dec, c_dec = time.perf_counter() - t0, time.process_time() - c0
    outs = [
        _floor_output(rgb, a, bg_px[(i * per_fg + k) % len(bg_px)], k)
        for i, (rgb, a) in enumerate(fgs)
        for k in range(per_fg)
    ]
    t0, c0 = time.perf_counter(), time.process_time()
    for img, al in outs:
        encode_jpeg(img, QUALITY)
        encode_png(al)
    t_enc, c_enc = time.perf_counter() - t0, time.process_time() - c0
    return t_dec + t_enc, c_dec + c_enc, len(outs)


def _floor_output(rgb: np.ndarray, a: np.ndarray, bg: np.ndarray, k: int):
    """A realistic 512x512 composite and alpha (the portrait scaled into the frame over
    a cover crop of the scene, as the build makes them; made outside the timed part)."""
    import cv2

    from matdata.compose import composite_rgb

    s = 0.8 + 0.02 * (k % 10)  # the build's fg scale range, roughly
    h, w = a.shape
    sw, sh = round(w * SIZE / h * s), round(SIZE * s)
    f = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    al = cv2.resize(a, (sw, sh), interpolation=cv2.INTER_AREA)
    canvas_a = np.zeros((SIZE, SIZE), np.uint8)
    canvas_f = np.zeros((SIZE, SIZE, 3), np.uint8)
    x0, y0 = (SIZE - sw) // 2, SIZE - sh
    canvas_a[y0:, x0 : x0 + sw] = al
    canvas_f[y0:, x0 : x0 + sw] = f
    b = cv2.resize(bg[:, 85:597], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return composite_rgb(canvas_f, canvas_a, b), canvas_a


def profile_shard(catalog: Path, fg: str, per_fg: int, stages: bool) -> None:
    """One shard task of the large build, in this process: cProfile, or with ``stages``
    CPU time per stage (wrappers around the functions a shard task calls)."""
    import cProfile
    import pstats

    os.environ["MATDATA_CATALOG"] = str(catalog)
    import cv2

    from matdata.build_config import BuildConfig
    from matdata.builder import prepare_build, run_shard
    from pipelines.build import prepare_output

    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="matdata-prof-") as out:
        cfg = BuildConfig(fg=fg, bg="bg", out=out, per_fg=per_fg, size=(SIZE, SIZE))
        plan = prepare_build(cfg)
        prepare_output(plan)
        task = max(plan.tasks, key=lambda t: t.samples)
        run_shard(plan.tasks[0] if plan.tasks[0] is not task else plan.tasks[-1])  # warm
        timers = _stage_timers() if stages else None
        prof = cProfile.Profile()
        c0 = time.process_time()
        if timers is None:
            prof.enable()
        res = run_shard(task)
        prof.disable()
        cpu = time.process_time() - c0
        print(f"shard {task.name}: {res.samples} samples, {res.seconds:.2f} s wall, "
              f"{cpu:.2f} s CPU, {1000 * cpu / res.samples:.2f} CPU-ms per composite")  # fmt: skip
        if timers is None:
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
            return
        total, calls = timers
        for label, sec in sorted(total.items(), key=lambda x: -x[1]):
            per = 1000 * sec / res.samples
            print(f"  {label:34s} {per:6.2f} CPU-ms per composite "
                  f"({calls[label] / res.samples:.2f} calls)")  # fmt: skip


def _stage_timers() -> tuple[dict[str, float], dict[str, int]]:
    """Wrap the stages of a shard task with CPU timers (nested stages count in both)."""
    import matdata.builder as B
    import matdata.compose as C
    import matdata.foreground as F
    import matdata.imageio as IO
    import matdata.shards as S
    import matdata.sources._common as CM

    total: dict[str, float] = {}
    calls: dict[str, int] = {}

    def wrap(owner: Any, name: str, label: str) -> None:
        fn = getattr(owner, name)

        def timed(*a: Any, **kw: Any) -> Any:
            c0 = time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                total[label] = total.get(label, 0.0) + time.process_time() - c0
                calls[label] = calls.get(label, 0) + 1

        setattr(owner, name, timed)

    for owner, name, label in (
        (IO, "decode_image", "codec: decode JPEG (fg + bg)"),
        (IO, "decode_alpha", "codec: decode matte PNG"),
        (IO, "encode_jpeg", "codec: encode JPEG"),
        (IO, "encode_png", "codec: encode PNG alpha"),
        (CM, "content_hash", "sha256 of the inputs"),
        (IO, "read_bytes", "read input files"),
        (F, "estimate_foreground", "foreground estimation"),
        (C, "rgba_layer", "colours + alpha as one RGBA (per fg)"),
        (C, "compose_sample", "compose_sample (all)"),
        (C, "_resize", "  of which resizes"),
        (C, "_blend_into", "  of which blend"),
        (B, "conform_meta", "meta"),
        (S.ShardWriter, "write", "shard writer: write"),
        (S.ShardWriter, "close", "shard writer: close"),
    ):
        wrap(owner, name, label)
    return total, calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=50, help="composites of the small build")
    ap.add_argument("--large", type=int, default=300, help="composites of the large build")
    ap.add_argument("--per-fg", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="also cProfile one shard task")
    ap.add_argument("--stages", action="store_true", help="(with --profile) stage timers")
    ap.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout (e.g. `git worktree` of main): its builds run interleaved "
        "with this tree's, same inputs and floor, for a before/after in one run",
    )
    args = ap.parse_args()
    k = args.per_fg
    n_small, n_large = max(1, args.small // k), max(2, args.large // k)
    if n_large <= n_small:
        raise SystemExit("--large must exceed --small by at least one foreground's K")

    from rich.console import Console

    console = Console()
    with tempfile.TemporaryDirectory(prefix="matdata-e2e-") as tmp:
        t = Path(tmp)
        t0 = time.perf_counter()
        make_aisegment(t / "small" / "aiseg", n_small)
        make_aisegment(t / "large" / "aiseg", n_large)
        make_backgrounds(t / "large" / "bg", n_large * k)
        env = _env(t / "catalog")
        for name, root in (("fgs", t / "small" / "aiseg"), ("fgl", t / "large" / "aiseg")):
            _matdata(["ingest", "aisegment", str(root), "--name", name, "-o",
                      "val_fraction=0", "--no-progress"], env)  # fmt: skip
        _matdata(["ingest", "folder", str(t / "large" / "bg"), "--name", "bg", "-o", "role=bg",
                  "-o", "val_fraction=0", "--no-progress"], env)  # fmt: skip
        console.print(
            f"inputs: {n_large} + {n_small} fg 600x800 (AISegment layout, RGBA mattes), "
            f"{n_large * k} bg 683x512, ingested ({time.perf_counter() - t0:.1f} s); "
            f"load {os.getloadavg()[0]:.1f}"
        )
        if args.profile:
            profile_shard(t / "catalog", "fgl", k, args.stages)
        d_samples = (n_large - n_small) * k
        trees = {"build": env}
        if args.baseline is not None:
            trees["baseline"] = _env(t / "catalog", args.baseline.resolve())
        rows: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        per_k = 1000 / d_samples
        for r in range(args.rounds):
            fw, fc, n = codec_floor(t / "large" / "aiseg", k)
            for name, tree_env in trees.items():
                sw, sc = build("fgs", t / f"out-{name}-s{r}", k, tree_env)
                lw, lc = build("fgl", t / f"out-{name}-l{r}", k, tree_env)
                row = {
                    "floor_wall": fw / n * 1000,
                    "floor_cpu": fc / n * 1000,
                    "build_wall": (lw - sw) * per_k,
                    "build_cpu": (lc - sc) * per_k,
                    "small_wall": sw,
                    "small_cpu": sc,
                    "load": os.getloadavg()[0],
                }
                rows[name].append(row)
                console.print(
                    f"round {r + 1}, {name}: per 1,000 composites floor "
                    f"{row['floor_cpu']:.1f} CPU-s ({row['floor_wall']:.1f} s wall), build "
                    f"{row['build_cpu']:.1f} CPU-s ({row['build_wall']:.1f} s wall); small "
                    f"build {sc:.1f} CPU-s ({sw:.1f} s); load {row['load']:.1f}"
                )

    for name, tree_rows in rows.items():
        if tree_rows:  # (--rounds 0: only the --profile run)
            _report(console, name, tree_rows, k, d_samples, n_small, n_large)


def _report(
    console: Any,
    name: str,
    rows: list[dict[str, float]],
    k: int,
    d_samples: int,
    n_small: int,
    n_large: int,
) -> None:
    from rich.table import Table

    med = statistics.median
    tab = Table(
        title=f"{name} end to end (matdata build --workers 1), {SIZE}x{SIZE}, K={k}, "
        f"marginal over {d_samples} composites ({n_small * k} -> {n_large * k}), "
        f"median of {len(rows)} rounds, load {med(x['load'] for x in rows):.1f}",
        title_justify="left",
    )
    for col in ("measure", "per 1,000 composites", "ratio (floor / build)", "target"):
        tab.add_column(col, justify="left" if col == "measure" else "right")
    tab.add_row("codec floor, CPU", f"{med(x['floor_cpu'] for x in rows):.1f} s", "1.00x", "")
    tab.add_row("codec floor, wall", f"{med(x['floor_wall'] for x in rows):.1f} s", "", "")
    tab.add_row(
        "build, CPU of the process tree",
        f"{med(x['build_cpu'] for x in rows):.1f} s",
        f"{med(x['floor_cpu'] / x['build_cpu'] for x in rows):.2f}x",
        ">= 0.80x",
    )
    tab.add_row(
        "build, wall",
        f"{med(x['build_wall'] for x in rows):.1f} s",
        f"{med(x['floor_wall'] / x['build_wall'] for x in rows):.2f}x",
        ">= 0.80x",
    )
    tab.add_row(
        f"small build ({n_small * k} composites), CPU / wall",
        f"{med(x['small_cpu'] for x in rows):.1f} / {med(x['small_wall'] for x in rows):.1f} s",
        "",
        "",
    )
    console.print(tab)


if __name__ == "__main__":
    main()
