"""The CLI's front door, as a user meets it: every mistake is one clear message (never a
traceback), nothing typed is silently ignored, long jobs talk outside a terminal, and
Ctrl-C ends cleanly.  User-visible behaviour runs ``python -m matdata`` in a subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import numpy as np
import pytest
import typer
from cli_run import CLI, cli_env, run_cli


def _env(**extra: str) -> dict[str, str]:
    return cli_env(MATDATA_PROGRESS_INTERVAL="0", **extra)


def run(
    args: list[str], cwd: Path | None = None, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess:
    return run_cli(args, cwd=cwd, timeout=timeout, MATDATA_PROGRESS_INTERVAL="0", **env)


def _png(path: Path, size: tuple[int, int] = (8, 8)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 128, np.uint8)).save(path)


# ----------------------------------------------------------------------- mistake matrix


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("frontdoor")
    junk = root / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    _png(root / "imgs" / "a" / "x.png")
    _png(root / "imgs" / "b" / "x.png")
    _png(root / "one" / "y.png")
    notes = root / "notes"  # not a Places365 layout at all
    for i in range(5):
        (notes / f"readme{i}.txt").parent.mkdir(parents=True, exist_ok=True)
        (notes / f"readme{i}.txt").write_text("hello\n")
    ds = root / "ds"
    ds.mkdir()
    (root / "catalog").mkdir()
    return {"root": root, "junk": junk, "ds": ds, "notes": notes, "catalog": root / "catalog"}


#: (id, arguments, words the message must contain).  {root} etc. are filled from `files`.
MISTAKES: list[tuple[str, list[str], list[str]]] = [
    ("unknown-command", ["bogus"], ["No such command", "bogus"]),
    ("build-no-options", ["build"], ["Missing option", "--fg"]),
    ("unknown-option", ["build", "--bogus"], ["No such option", "--bogus"]),
    ("not-a-number", ["build", "--fg", "demo", "--bg", "demo", "--out", "{root}/o1",
                      "--per-fg", "abc"], ["--per-fg"]),
    ("missing-model", ["harmonize", "{ds}", "--out", "{root}/h"], ["Missing option", "--model"]),
    ("repeated-out", ["build", "--fg", "demo", "--bg", "demo", "--out", "{root}/o2", "--out",
                      "{root}/o2b"], ["--out given 2 times"]),
    ("repeated-checkpoint", ["predict", "{root}/one", "--checkpoint", "a.pt", "--checkpoint",
                             "b.pt", "-o", "{root}/p"], ["--checkpoint given 2 times"]),
    ("repeated-short-long", ["evaluate", "-c", "a.pt", "--checkpoint", "b.pt", "--data", "x"],
     ["-c and --checkpoint given 2 times"]),
    ("workers-negative", ["build", "--fg", "demo", "--bg", "demo", "--out", "{root}/o3",
                          "--workers", "-1"], ["--workers"]),
    ("workers-zero", ["build", "--fg", "demo", "--bg", "demo", "--out", "{root}/o4",
                      "--workers", "0"], ["--workers"]),
    ("lr-negative", ["train", "--data", "{ds}", "--out", "{root}/r", "--lr", "-1"], ["--lr"]),
    ("predict-batch-zero", ["predict", "{root}/one", "-c", "{junk}", "-o", "{root}/p",
                            "--batch-size", "0"], ["--batch-size"]),
    ("image-size-huge", ["train", "--data", "{ds}", "--out", "{root}/r", "--image-size",
                         "65536"], ["--image-size"]),
    ("trimap-width-huge", ["build", "--fg", "demo", "--bg", "demo", "--out", "{root}/o5",
                           "--trimap-width", "1e9"], ["--trimap-width"]),
    ("recompose-2", ["train", "--data", "{ds}", "--out", "{root}/r", "--recompose", "2"],
     ["--recompose"]),
    ("warmup-negative", ["train", "--data", "{ds}", "--out", "{root}/r", "--warmup", "-3"],
     ["--warmup"]),
    ("val-fraction-2", ["ingest", "demo", "-o", "val_fraction=2"], ["val_fraction", "[0, 1]"]),
    ("ref-size-negative", ["predict", "{root}/one", "-c", "{junk}", "-o", "{root}/p",
                           "--ref-size", "-512"], ["--ref-size"]),
    ("qa-out-is-dataset", ["qa", "{ds}", "--out", "{ds}"], ["the dataset directory"]),
    ("size-huge", ["build", "--fg", "demo", "--bg", "demo", "--out", "{root}/o6", "--size",
                   "100000"], ["--size", "8192"]),
    ("per-fg-huge", ["build", "--fg", "demo", "--bg", "demo", "--out", "{root}/o7",
                     "--per-fg", "1000000"], ["--per-fg"]),
    ("unknown-source-option", ["ingest", "places365", "{notes}", "-o", "catgories=kitchen"],
     ["catgories", "valid options", "categories"]),
    ("unknown-build-source-option", ["build", "--fg", "demo", "--fg-option", "n_gf=3", "--bg",
                                     "demo", "--out", "{root}/o8"], ["n_gf", "n_fg"]),
    ("ingest-wrong-layout", ["ingest", "places365", "{notes}"],
     ["no usable item", "Places365 layout", "--allow-empty"]),
    ("resume-random-bytes", ["train", "--resume", "{junk}"], ["not a checkpoint"]),
    ("predict-random-bytes", ["predict", "{root}/one", "-c", "{junk}", "-o", "{root}/p"],
     ["not a checkpoint"]),
    ("predict-name-collision", ["predict", "{root}/imgs", "-c", "{junk}", "-o", "{root}/p"],
     ["{root}/imgs/a/x.png", "{root}/imgs/b/x.png", "x.png"]),
    ("unknown-catalog-name", ["build", "--fg", "nosuch", "--bg", "demo", "--out", "{root}/o9"],
     ["nosuch", "MATDATA_CATALOG"]),
    ("steps-zero", ["train", "--data", "{ds}", "--out", "{root}/r", "--steps", "0"],
     ["--steps"]),
    ("missing-root", ["ingest", "folder", "{root}/does-not-exist"], ["does not exist"]),
]  # fmt: skip


PROGRESS = re.compile(r" elapsed \d+:\d\d:\d\d")


def _fill(items: list[str], files: dict[str, Path]) -> list[str]:
    return [x.format(**{k: str(v) for k, v in files.items()}) for x in items]


@pytest.fixture(scope="module")
def mistakes(files: dict[str, Path]) -> dict[str, subprocess.CompletedProcess]:
    """Every mistake of :data:`MISTAKES`, run concurrently (each is a short process)."""

    def one(case: tuple[str, list[str], list[str]]) -> subprocess.CompletedProcess:
        return run(_fill(case[1], files), cwd=files["root"], MATDATA_CATALOG=str(files["catalog"]))

    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(one, MISTAKES))
    return {case[0]: proc for case, proc in zip(MISTAKES, done, strict=True)}


@pytest.mark.parametrize("case", MISTAKES, ids=[c[0] for c in MISTAKES])
def test_a_mistake_is_one_clear_message(case, mistakes, files) -> None:
    name, _args, needles = case
    proc = mistakes[name]
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    assert "Traceback" not in text, text
    for needle in _fill(needles, files):
        assert needle in text, f"{needle!r} not in:\n{text}"
    # usage errors: click's short usage + one Error line, exit 2; own errors: one line, 1
    # (plain progress lines of the work done before the error may come first)
    err = [ln for ln in proc.stderr.splitlines() if ln.strip() and not PROGRESS.search(ln)]
    if proc.returncode == 2:
        assert err[0].startswith("Usage:") and err[-1].startswith("Error:"), proc.stderr
        assert len(err) <= 4, proc.stderr
    else:
        assert proc.returncode == 1, text
        assert len(err) == 1 and err[0].startswith("error:"), proc.stderr
        assert "{'" not in err[0] and "['" not in err[0], err[0]  # no raw Python reprs


def test_nothing_is_written_before_options_are_valid(mistakes, files) -> None:
    assert mistakes["workers-zero"].returncode == 2
    for name in ("o3", "o4", "o5", "o6", "o7"):
        assert not (files["root"] / name).exists(), name
    # the directory a refused build did not touch takes a correct build's plan later
    assert not (files["root"] / "o4" / ".parts").exists()


def test_no_arguments_shows_help() -> None:
    proc = run([])
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout and "build" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_flag_help_has_no_type_placeholder() -> None:
    for cmd in (["-h"], ["build", "-h"], ["train", "-h"], ["ingest", "-h"]):
        proc = run(cmd)
        assert proc.returncode == 0, proc.stderr
        assert "<bool>" not in proc.stdout, cmd
        assert "--help" in proc.stdout


def test_numeric_bounds_are_documented_in_help() -> None:
    text = run(["build", "-h"]).stdout
    assert "1<=x<=1000" in text  # --per-fg
    assert "0<=x<=1" in text  # probabilities
    assert "x>=1" in run(["train", "-h"]).stdout


# ------------------------------------------------------------------- in-process pieces


def test_repeat_check_follows_each_options_declaration() -> None:
    from matdata.cli import app
    from matdata.cli.usage import find_repeat

    root = typer.main.get_command(app)
    assert find_repeat(root, ["ingest", "demo", "-o", "a=1", "-o", "b=2"]) is None  # multiple
    assert find_repeat(root, ["build", "--bg-category", "a", "--bg-category", "b"]) is None
    assert find_repeat(root, ["train", "--lr", "-1", "--steps", "2"]) is None  # values skipped
    # --fg / --bg are repeatable (several sources per role); --out is not
    assert find_repeat(root, ["build", "--fg=a", "--fg", "b", "--bg", "c", "--bg", "d"]) is None
    path, _cmd, msg = find_repeat(root, ["build", "--out=a", "--out", "b"])
    assert path == ["build"] and "--out given 2 times" in msg
    _, _, msg = find_repeat(root, ["-v", "train", "--data", "x", "-w", "1", "--workers", "2"])
    assert "-w and --workers given 2 times" in msg
    # a value that looks like the command name is not taken for it
    assert find_repeat(root, ["build", "--out", "train", "--seed", "1"]) is None
    # when an option is declared repeatable, the same check accepts it repeated
    demo = typer.Typer()

    @demo.command()
    def go(
        data: Annotated[list[str], typer.Option("--data")],
        out: Annotated[str, typer.Option("--out")] = "x",
    ) -> None:
        pass

    @demo.command()
    def other() -> None:
        pass

    group = typer.main.get_command(demo)
    assert find_repeat(group, ["go", "--data", "a", "--data", "b"]) is None
    assert find_repeat(group, ["go", "--out", "a", "--out", "b"]) is not None


def test_usage_errors_are_recognised_from_the_click_typer_uses() -> None:
    from typer.core import TyperCommand

    from matdata.cli import usage

    mod = usage.command_click()
    assert issubclass(TyperCommand, mod.Command)
    exc = mod.exceptions.UsageError("bad")
    assert usage.is_click_exception(exc)
    assert not usage.is_click_exception(ValueError("x"))


def test_line_progress_prints_whole_lines_off_a_terminal() -> None:
    import io

    from rich.console import Console

    from matdata.progress import LineProgress, make_progress

    buf = io.StringIO()
    console = Console(file=buf, width=40, force_terminal=False)
    with make_progress(console=console, label="train step", unit="steps") as prog:
        assert isinstance(prog, LineProgress)
        prog.interval = 3600.0
        task = prog.add_task("t", total=100, info="")
        for i in range(100):
            prog.update(task, advance=1, info=f"loss {1 / (i + 1):.4f} " + "x" * 60)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2, lines  # the first update and the end, nothing between
    assert lines[0].startswith("train step 1/100 (1%)")
    assert lines[-1].startswith("train step 100/100 (100%)") and "steps/s" in lines[-1]
    assert "ETA" in lines[-1] and len(lines[-1]) > 80  # never wrapped or cut at the width
    tty = Console(file=io.StringIO(), force_terminal=True)
    assert not isinstance(make_progress(console=tty), LineProgress)


def test_thread_plan_does_not_oversubscribe(monkeypatch) -> None:
    from matdata import threads

    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    p = threads.plan()
    assert (p.torch, p.loader_workers) == (1, 1)
    assert threads.plan(threads=3).torch == 3
    assert threads.plan(loader_workers=0).torch == 2
    monkeypatch.setattr(threads, "usable_cores", lambda: 16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    p = threads.plan()
    assert p.cores == 4 and p.torch + p.loader_workers == 4
    monkeypatch.setattr(threads, "usable_cores", lambda: 1)
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert threads.plan() == threads.ThreadPlan(cores=1, torch=1, loader_workers=0)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's explicit choice is kept
    assert threads.plan().torch == 3 and threads.plan(threads=2).torch == 2


def test_catalog_is_found_upwards(tmp_path, monkeypatch) -> None:
    from matdata import catalog

    monkeypatch.delenv("MATDATA_CATALOG", raising=False)
    (tmp_path / ".matdata").mkdir()
    (tmp_path / ".matdata" / "catalog.json").write_text("{}")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert catalog.catalog_dir() == str(tmp_path / ".matdata")
    monkeypatch.setenv("MATDATA_CATALOG", str(tmp_path / "elsewhere"))
    assert catalog.catalog_dir() == str(tmp_path / "elsewhere")


# ---------------------------------------------------------------------- subprocess flows


def test_ingest_from_a_subdirectory_uses_the_catalog_above(tmp_path) -> None:
    env = {"MATDATA_CATALOG": ""}
    proc = run(["ingest", "demo", "--name", "first", "-o", "n_fg=2", "-o", "n_bg=2"],
               cwd=tmp_path, **env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    sub = tmp_path / "work" / "deeper"
    sub.mkdir(parents=True)
    proc = run(["ingest", "demo", "--name", "second", "-o", "n_fg=2", "-o", "n_bg=2"],
               cwd=sub, **env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    names = json.loads((tmp_path / ".matdata" / "catalog.json").read_text())
    assert {"first", "second"} <= set(names)
    assert not (sub / ".matdata").exists()


def test_ingest_allow_empty_registers_anyway(files, tmp_path) -> None:
    env = {"MATDATA_CATALOG": str(tmp_path / "cat")}
    proc = run(["ingest", "places365", str(files["notes"]), "--name", "bgs"], **env)
    assert proc.returncode == 1 and "nothing was registered" in proc.stderr
    assert not (tmp_path / "cat" / "catalog.json").exists()
    proc = run(["ingest", "places365", str(files["notes"]), "--name", "bgs", "--allow-empty"],
               **env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "bgs" in json.loads((tmp_path / "cat" / "catalog.json").read_text())


def _interrupted(args: list[str], **hooks: str) -> tuple[subprocess.Popen, str]:
    """Run ``matdata ARGS`` in a session of its own with test hooks (:mod:`matdata.testhooks`)
    that send the SIGINT at an exact point, as a terminal's Ctrl-C does; its stderr."""
    proc = subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(**hooks),
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    return proc, err


def _one_interrupted_line(proc: subprocess.Popen, err: str) -> str:
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Error" not in err and "Nanny failed" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("build ")]
    assert len(lines) == 1 and lines[0].startswith("interrupted"), err
    return lines[0]


BUILD = ["build", "--fg", "demo", "--bg", "demo", "--size", "64", "--per-fg", "2",
         "--workers", "1", "--samples-per-shard", "4"]  # fmt: skip


def _markers(out: Path) -> list[str]:
    return sorted(p.name for p in (out / ".parts").glob("*-*.json"))


@pytest.mark.slow
def test_ctrl_c_during_build_is_one_line_and_resumable(tmp_path) -> None:
    out = tmp_path / "ds"
    # 48 samples in 12 shards on one single-threaded worker, which sends the Ctrl-C right
    # after its 3rd shard's marker and starts no further shard
    proc, err = _interrupted([*BUILD, "--out", str(out)], MATDATA_TEST_SIGINT_AFTER_SHARDS="3")
    line = _one_interrupted_line(proc, err)
    assert line.startswith("interrupted: build stopped;"), err
    assert "run the same command again to resume" in line
    assert _markers(out) == ["train-00000.json", "train-00001.json", "train-00002.json"]
    kept = sorted(p.name for p in (out / "parquet").iterdir())
    assert kept == ["train-00000.parquet", "train-00001.parquet", "train-00002.parquet"]
    assert not (out / "dataset.json").exists()
    again = run([*BUILD, "--out", str(out)])
    assert again.returncode == 0, again.stderr
    m = re.search(r"written / resumed\s*│\s*(\d+) / (\d+)", again.stdout)
    assert m and (int(m.group(1)), int(m.group(2))) == (9, 3), again.stdout
    assert json.loads((out / "dataset.json").read_text())["samples"] == 48


@pytest.mark.slow
def test_ctrl_c_while_the_cluster_starts_is_clean(tmp_path) -> None:
    out = tmp_path / "ds"
    # the Dask fork server sends the Ctrl-C while it imports its preload: the CLI is then
    # inside LocalCluster's start-up, waiting for its first worker
    proc, err = _interrupted([*BUILD, "--out", str(out)], MATDATA_TEST_SIGINT_IN_CLUSTER_START="1")
    _one_interrupted_line(proc, err)
    assert (out / ".parts" / "plan.json").exists() and _markers(out) == []


#: what pip's console-script wrapper for ``matdata = "matdata.cli:main"`` runs
SCRIPT = (
    "import sys\nfrom matdata.cli import main\n\nif __name__ == '__main__':\n    sys.exit(main())\n"
)


@pytest.mark.parametrize("how", ["console-script", "python-m"])
def test_ctrl_c_while_the_command_imports_is_one_line(how: str, tmp_path: Path) -> None:
    """The command sends itself SIGINT while it imports its modules, before ``main()``
    runs (a test hook): one line, exit 130, no traceback."""
    cmd = CLI
    if how == "console-script":
        script = tmp_path / "bin" / "matdata"
        script.parent.mkdir()
        script.write_text(SCRIPT)
        cmd = [sys.executable, str(script)]
    proc = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120,
                          env=_env(MATDATA_TEST_SIGINT_AT_STARTUP="1"))  # fmt: skip
    assert (proc.returncode, proc.stderr, proc.stdout) == (130, "interrupted\n", ""), proc.stderr


def test_a_program_importing_the_cli_keeps_its_own_ctrl_c() -> None:
    code = "import matdata.cli"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=_env(MATDATA_TEST_SIGINT_AT_STARTUP="1"))  # fmt: skip
    # an uncaught KeyboardInterrupt: Python dies of the SIGINT, with its traceback
    assert proc.returncode == -signal.SIGINT, proc
    assert proc.stderr.rstrip().endswith("KeyboardInterrupt"), proc.stderr


def test_the_fork_server_ignores_ctrl_c_before_its_slow_imports() -> None:
    """A Ctrl-C while the fork server imports its preload (seconds on a busy machine) killed
    it with a traceback and "Nanny failed to start" while SIGINT was ignored only after the
    imports: the module that ignores it comes first."""
    from pipelines.cluster import PRELOAD

    assert PRELOAD[0] == "pipelines._ignore_sigint"


# ------------------------------------------------------------------------- train flows


@pytest.fixture(scope="module")
def tiny(demo_dataset) -> Path:
    return demo_dataset(per_fg=2)  # the dataset BUILD makes


TRAIN = ["--hr-channels", "8", "--batch-size", "4", "--image-size", "64", "--device", "cpu",
         "--workers", "0", "--threads", "1", "--val-every", "0"]  # fmt: skip


@pytest.mark.slow
def test_train_talks_when_piped_and_resume_says_what_changed(tiny: Path, tmp_path) -> None:
    run_dir = tmp_path / "run"
    proc = run(["train", "--data", str(tiny), "--out", str(run_dir), "--steps", "3",
                "--val-limit", "4", *TRAIN])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.splitlines()
    steps = [ln for ln in err if ln.startswith("train step ")]
    assert steps and steps[-1].startswith("train step 3/3 (100%)"), proc.stderr
    assert all("loss" in ln and "samples/s" in ln and "ETA" in ln for ln in steps)
    assert max(map(len, steps)) > 80  # whole lines, not cut at 80 columns
    val = [ln for ln in err if ln.startswith("validate batch ")]
    assert val and all(" 1/1 " in ln for ln in val), proc.stderr  # --val-limit 4 = 1 batch
    assert "Traceback" not in proc.stderr

    more = run(["train", "--resume", str(run_dir), "--steps", "4", *TRAIN[-6:]])
    assert more.returncode == 0, more.stderr
    assert "steps: 3 -> 4 (extends the run from step 3" in more.stderr, more.stderr
    back = run(["train", "--resume", str(run_dir), "--steps", "2"])
    assert back.returncode == 1
    assert "--steps 2 is below the checkpoint's step 4" in back.stderr, back.stderr


@pytest.mark.slow
def test_ctrl_c_in_the_first_validation_saves_and_names_the_resume(tiny: Path, tmp_path) -> None:
    run_dir = tmp_path / "run"
    # the run sends itself the Ctrl-C right after the first batch of its first validation
    proc, err = _interrupted(
        ["train", "--data", str(tiny), "--out", str(run_dir), "--steps", "50",
         "--val-limit", "0", *TRAIN],
        MATDATA_TEST_SIGINT_AFTER_VAL_BATCHES="1",
    )  # fmt: skip
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    last = [ln for ln in err.splitlines() if ln.strip()][-1]
    assert last.startswith("interrupted: training stopped at step 0 of 50"), err
    assert str(run_dir / "checkpoints") in last and "matdata train --resume" in last, err
    assert (run_dir / "last.pt").exists()


def test_an_ingest_of_mostly_unexpected_files_fails() -> None:
    from matdata.errors import SourceError
    from matdata.ingest import IngestResult, check_usable

    def result(usable: int, unexpected: int, other: int = 0) -> IngestResult:
        reasons = {"unexpected_file": unexpected, "truncated": other}
        return IngestResult(
            name="x", kind="aisegment", root="/r", options={}, manifest="m", rejects_path="r",
            found=usable + unexpected + other, usable=usable, rejected=unexpected + other,
            by_reason={k: v for k, v in reasons.items() if v},
        )  # fmt: skip

    check_usable(result(10, 2, 5))  # a few strays: fine
    with pytest.raises(SourceError, match="30 of 40 files do not fit the aisegment layout"):
        check_usable(result(10, 30))
    with pytest.raises(SourceError, match="no usable item among 3 files") as info:
        check_usable(result(0, 0, 3))
    assert "clip_img" in info.value.one_line() and "--allow-empty" in info.value.one_line()


def test_resume_notes_name_each_change() -> None:
    from modnet.train import TrainConfig, _resume_notes

    base = TrainConfig(data="d", out="o", steps=10, lr=1e-3)
    notes = _resume_notes(base, {"steps": 20, "lr": 1e-3, "workers": 1, "out": "o"}, 10)
    assert notes[0].startswith("steps: 10 -> 20 (extends the run from step 10")
    assert notes[1] == "workers: None -> 1"
    assert len(notes) == 2  # unchanged values are not reported
