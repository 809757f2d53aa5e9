"""How tests run ``matdata``: in a subprocess as users do (:func:`run_cli`), in the test's
own process with the console entry point's error handling (:func:`run_main`), and the small
demo datasets the CLI tests train on (:func:`build_demo`; cached per session by the
``demo_dataset`` fixture of conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "matdata"]


def cli_env(**extra: str) -> dict[str, str]:
    """This environment with this tree first on the path, one thread per numerical library
    (the suite runs processes side by side), wide rich tables and no MATDATA_DEBUG."""
    env = dict(os.environ)
    env.pop("MATDATA_DEBUG", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", COLUMNS="200")
    env.update(extra)
    return env


def run_cli(
    args: list[str],
    *,
    cwd: Path | None = None,
    timeout: float = 600,
    check: bool = False,
    **env: str,
) -> subprocess.CompletedProcess:
    """``matdata ARGS`` in a subprocess (text output captured); ``check``: raise an
    AssertionError with its output unless it exits 0."""
    proc = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=cli_env(**env)
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"matdata {' '.join(args[:2])} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_main(args: list[str]) -> int:
    """The exit code of ``matdata ARGS`` run in this process."""
    from matdata.cli import main

    old = sys.argv
    sys.argv = ["matdata", *args]
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = old
    return 0


def build_demo(
    out: Path,
    *,
    size: str = "64",
    per_fg: int = 1,
    samples_per_shard: int = 4,
    seed: int | None = None,
    fg: dict[str, object] | None = None,
    bg: dict[str, object] | None = None,
) -> Path:
    """``matdata build`` of the embedded demo source (one worker) into ``out``; ``fg`` and
    ``bg`` are ``--fg-option`` / ``--bg-option`` values."""
    args = ["build", "--fg", "demo", "--bg", "demo", "--out", str(out), "--size", size,
            "--per-fg", str(per_fg), "--workers", "1", "--samples-per-shard",
            str(samples_per_shard), "--no-progress"]  # fmt: skip
    for flag, options in (("--fg-option", fg), ("--bg-option", bg)):
        for key, value in (options or {}).items():
            args += [flag, f"{key}={value}"]
    if seed is not None:
        args += ["--seed", str(seed)]
    run_cli(args, check=True)
    return out
