#!/usr/bin/env python
"""Do the tests issue 14 strengthened really fail on the bug each one is meant to catch?

For every *break* below (one small, deliberate bug: an exact text edit of one or more
files, or one flipped byte of a data file) this script

1. copies the repository's files (tracked, plus untracked ones git does not ignore, so
   uncommitted work is checked too) into a scratch folder,
2. applies the edit there, failing loudly when the ``old`` text is not found exactly once
   (so a refactor cannot make it silently test nothing) or when an edited ``.py`` file no
   longer compiles,
3. runs only the named tests in that copy (``PYTHONPATH`` = the copy, so subprocesses and
   the ``matdata`` console script run the broken code too),
4. records per named test whether it FAILED (good: the break is caught) or passed (bad).

Before the breaks it runs all the named tests once on an unmodified copy: they must all
pass there, or a failure under a break would mean nothing.  A break counts as caught only
when pytest exits with 1 ("tests failed", not a collection or usage error) and every test
named for it has at least one failing case.  pytest runs without ``-x`` so that each named
test shows its own result.

Not part of the test suite and not run by CI (it runs parts of the suite once per break,
which takes a while).  Usage::

    python tools/break_checks.py              # all breaks
    python tools/break_checks.py --list       # the breaks, no run
    python tools/break_checks.py --only zoom --only digest

Exit code 0 when every break is caught, 1 otherwise, 2 when a break no longer applies to
the code (its ``old`` text is gone or not unique: update the break).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLIP_BYTE = object()  # ``old`` of an edit that flips the middle byte of a (binary) file


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` (found exactly once) by ``new`` in ``file`` (relative to the root);
    with ``old=FLIP_BYTE`` invert the middle byte of the file instead."""

    file: str
    old: str | object
    new: str = ""


@dataclass(frozen=True)
class Break:
    name: str
    issue: str  # what issue 14 says the tests let through
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]  # pytest node ids that must fail (all cases of a parametrized one)
    timeout: int = 900
    note: str = field(default="", compare=False)


BREAKS: tuple[Break, ...] = (
    # --- the trainer's and evaluate's metrics
    Break(
        "trainer-scores-gt",
        "feeding the ground truth in as the prediction leaves all trainer tests green",
        (
            Edit(
                "modnet/train.py",
                "p = pred.detach().float().clamp(0, 1).cpu().numpy()",
                "p = alpha.detach().float().clamp(0, 1).cpu().numpy()",
            ),
        ),
        (
            "tests/test_train.py::test_training_lowers_validation_loss",
            "tests/test_train_ddp.py::test_two_gloo_processes_train_on_disjoint_shards",
        ),
    ),
    Break(
        "evaluate-scores-gt",
        "the test_train check that only finds 'sad' in the output (evaluate's numbers)",
        (Edit("modnet/benchmarks.py", "sums.add(alpha, gt,", "sums.add(gt, gt,"),),
        (
            "tests/test_train.py::test_predict_and_evaluate_on_the_checkpoint",
            "tests/test_evaluate_library.py::test_evaluate_a_dataset_from_python",
        ),
    ),
    Break(
        "evaluate-prints-wrong-numbers",
        "the test_train check that only finds 'sad' in the output (the printed table)",
        (
            Edit(
                "matdata/cli/evaluate.py", 'f"{v * _SCALE[k]:.4f}"', 'f"{0.5 * v * _SCALE[k]:.4f}"'
            ),
        ),
        ("tests/test_train.py::test_predict_and_evaluate_on_the_checkpoint",),
    ),
    # --- compose: each domain-gap option a no-op on its own (its draws and record kept)
    Break(
        "compose-no-noise",
        "test_compose checks the domain-gap options only together: remove noise",
        (
            Edit(
                "matdata/compose.py",
                "rng.normal(0.0, sigma, image.shape)",
                "0.0 * rng.normal(0.0, sigma, image.shape)",
            ),
        ),
        ("tests/test_compose.py::test_domain_gap_noise_alone",),
    ),
    Break(
        "compose-no-bg-blur",
        "test_compose checks the domain-gap options only together: remove bg blur",
        (Edit("matdata/compose.py", "cv2.GaussianBlur(", "(lambda img, *_, **__: img)("),),
        ("tests/test_compose.py::test_domain_gap_bg_blur_alone",),
    ),
    Break(
        "compose-no-bg-jpeg",
        "test_compose checks the domain-gap options only together: remove bg JPEG",
        (Edit("matdata/compose.py", "_jpeg_roundtrip(b_f, q)", "b_f"),),
        ("tests/test_compose.py::test_domain_gap_jpeg_match_alone",),
    ),
    Break(
        "compose-no-bg-jitter",
        "test_compose checks the domain-gap options only together: remove bg jitter",
        (Edit("matdata/compose.py", "_jitter_colors(b_f, g_bg)", "b_f"),),
        ("tests/test_compose.py::test_domain_gap_color_jitter_alone",),
    ),
    Break(
        "compose-zoom-applied-twice",
        "`or bg_zoom > 1.0` in test_compose (a wrong cover zoom passed)",
        (Edit("matdata/compose.py", "out_h / bg_h) * zoom", "out_h / bg_h) * zoom * zoom"),),
        ("tests/test_compose.py::test_cover_crop_keeps_aspect",),
    ),
    # --- modnet data: saturation jitter, recompose
    Break(
        "saturation-not-applied",
        "test_modnet_data checks only the shape of the saturation jitter (matrix ignores s)",
        (
            Edit(
                "modnet/augment.py",
                "m = float(np.dot(cv2.mean(rgb)[:3], LUMA))",
                "m, s = float(np.dot(cv2.mean(rgb)[:3], LUMA)), 1.0",
            ),
        ),
        (
            "tests/test_modnet_data.py::test_color_jitter_identity_and_range",
            "tests/test_modnet_data.py::test_stream_applies_the_saturation_jitter",
        ),
    ),
    Break(
        "saturation-not-drawn",
        "test_modnet_data checks only the shape of the saturation jitter (factor always 1)",
        (
            Edit(
                "modnet/augment.py",
                "float(rng.uniform(1 - saturation, 1 + saturation))",
                "1.0 + 0.0 * float(rng.uniform(1 - saturation, 1 + saturation))",
            ),
        ),
        (
            "tests/test_modnet_data.py::test_color_jitter_identity_and_range",
            "tests/test_modnet_data.py::test_stream_applies_the_saturation_jitter",
        ),
    ),
    Break(
        "stream-drops-saturation",
        "saturation jitter disabled in modnet/data.py (the stream passes factor 1 on)",
        (
            Edit(
                "modnet/data.py",
                "crop_into(image, box, out.image, flip, jitter)",
                "crop_into(image, box, out.image, flip, jitter and (*jitter[:2], 1.0))",
            ),
        ),
        ("tests/test_modnet_data.py::test_stream_applies_the_saturation_jitter",),
    ),
    Break(
        "recompose-weight-off",
        "`atol=60` in test_modnet_data (recompose blends with 0.8 a instead of a)",
        (
            Edit(
                "modnet/augment.py",
                "a * fg.astype(np.float32) + (1.0 - a) * bg",
                "0.8 * a * fg.astype(np.float32) + (1.0 - 0.8 * a) * bg",
            ),
        ),
        ("tests/test_modnet_data.py::test_recompose_changes_background_only",),
    ),
    # --- CLI
    Break(
        "usage-error-traceback",
        "test_cli_basics passes while a usage error prints a traceback (re-raised)",
        (
            Edit(
                "matdata/cli/usage.py",
                'return isinstance(exc, _classes("ClickException"))',
                "return False",
            ),
        ),
        ("tests/test_cli_basics.py::test_version_and_unknown_command",),
    ),
    Break(
        "usage-error-traceback-exit-2",
        "test_cli_basics passes while a usage error prints a traceback (and still exits 2)",
        (
            Edit(
                "matdata/cli/app.py",
                "exc.show()",
                '(__import__("traceback").print_exc(), exc.show())',
            ),
        ),
        ("tests/test_cli_basics.py::test_version_and_unknown_command",),
    ),
    Break(
        "command-not-registered",
        "the unused `count` in test_cli_basics (a command group missing from the app)",
        (Edit("matdata/cli/__init__.py", "from matdata.cli import export  # noqa: F401", ""),),
        ("tests/test_cli_basics.py::test_every_command_help_is_light",),
    ),
    # --- storage digest
    Break(
        "digest-wrong-same-length",
        "the digest-length-only check in test_storage (sha3-256: same length, wrong value)",
        (Edit("matdata/storage.py", "h = hashlib.sha256()", "h = hashlib.sha3_256()"),),
        ("tests/test_storage.py::test_atomic_write_visible_only_when_complete",),
    ),
    # --- timing-dependent tests made deterministic (matdata/testhooks.py)
    Break(
        "hook-kill-does-nothing",
        "SIGKILL 'after the first marker, before the last': the kill hook does nothing",
        (Edit("matdata/testhooks.py", "os.killpg(os.getpgrp(), signal.SIGKILL)", "pass"),),
        ("tests/test_build_distributed.py::test_resume_after_kill",),
    ),
    Break(
        "hook-sigint-does-nothing",
        "Ctrl-C 'before step 10': the SIGINT hook does nothing",
        (Edit("matdata/testhooks.py", "n = _count(SIGINT_AFTER_STEPS)", "n = None"),),
        ("tests/test_train.py::test_ctrl_c_saves_a_consistent_checkpoint",),
    ),
    Break(
        "hook-sigint-after-shards-does-nothing",
        "Ctrl-C during a build (was: poll the log, then signal): the shard hook does nothing",
        (
            Edit(
                "matdata/testhooks.py",
                "_shards_written == interrupt:",
                "_shards_written == interrupt and False:",
            ),
        ),
        ("tests/test_cli_frontdoor.py::test_ctrl_c_during_build_is_one_line_and_resumable",),
    ),
    Break(
        "hook-sigint-in-cluster-start-does-nothing",
        "Ctrl-C while the Dask cluster starts: the fork-server hook does nothing",
        (Edit("matdata/testhooks.py", "if _count(SIGINT_IN_CLUSTER_START):", "if False:"),),
        ("tests/test_cli_frontdoor.py::test_ctrl_c_while_the_cluster_starts_is_clean",),
    ),
    Break(
        "hook-sigint-at-startup-does-nothing",
        "Ctrl-C while the command imports: the start-up hook does nothing",
        (Edit("matdata/testhooks.py", "if _count(SIGINT_AT_STARTUP):", "if False:"),),
        ("tests/test_cli_frontdoor.py::test_ctrl_c_while_the_command_imports_is_one_line",),
    ),
    Break(
        "hook-sigint-in-validation-does-nothing",
        "Ctrl-C in the first validation pass: the validation hook does nothing",
        (Edit("matdata/testhooks.py", "n = _count(SIGINT_AFTER_VAL_BATCHES)", "n = None"),),
        (
            "tests/test_cli_frontdoor.py::test_ctrl_c_in_the_first_validation_saves_and_names_the_resume",
        ),
    ),
    Break(
        "demo-renders-every-load",
        "'a 10 s allowance for 0.5 s of work': the demo render cache is off",
        (
            Edit(
                "matdata/sources/demo.py",
                "@functools.lru_cache(maxsize=64)\ndef _render_fg(",
                "@functools.lru_cache(maxsize=0)\ndef _render_fg(",
            ),
        ),
        ("tests/test_demo_source.py::test_options_errors_and_speed",),
    ),
    # --- golden data files
    Break(
        "golden-npz-one-byte",
        "golden .npz files in tests/data: one changed byte",
        (Edit("tests/data/specs/vectors/modnet.seed0.256x256.npz", FLIP_BYTE),),
        ("tests/test_data_files.py::test_every_data_file_is_documented_and_unchanged",),
    ),
    # --- errors that are bugs stay bugs
    Break(
        "builder-catches-everything",
        "builder.py turns every exception while loading into a silent reject",
        (
            Edit(
                "matdata/builder.py",
                "INPUT_ERRORS = (MatdataError,)",
                "INPUT_ERRORS = (Exception,)",
            ),
            # (a reject needs a reason: what a catch-all would record for a plain exception)
            Edit(
                "matdata/builder.py",
                "item.image, exc.reason,",
                "item.image, getattr(exc, 'reason', 'error'),",
            ),
        ),
        ("tests/test_build_errors.py::test_a_coding_error_in_a_source_fails_the_shard",),
    ),
)


# ------------------------------------------------------------------------------ mechanics


class BreakDefinitionError(RuntimeError):
    """A break cannot be applied as written (the code it targets has changed)."""


def repo_files(root: Path) -> list[str]:
    """Tracked files plus untracked, not ignored ones (deleted tracked files left out)."""
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({f for f in out.split("\0") if f and (root / f).is_file()})


def scratch_copy(root: Path, dest: Path) -> Path:
    for rel in repo_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    return dest


def edited(text: str, edit: Edit, name: str) -> str:
    """``text`` with ``edit.old`` (which must occur exactly once) replaced by ``edit.new``;
    an edited Python file must still compile (a break is a bug, not a syntax error)."""
    assert isinstance(edit.old, str)
    n = text.count(edit.old)
    if n != 1:
        raise BreakDefinitionError(
            f"{name}: {edit.file}: the old text {edit.old!r} is found {n} times (want 1); "
            "update the break to the current code"
        )
    text = text.replace(edit.old, edit.new)
    if edit.file.endswith(".py"):
        try:
            compile(text, edit.file, "exec")
        except SyntaxError as exc:
            msg = f"{name}: the edited {edit.file} does not compile: {exc}"
            raise BreakDefinitionError(msg) from exc
    return text


def apply_edit(copy: Path, edit: Edit, name: str) -> None:
    path = copy / edit.file
    if not path.is_file():
        raise BreakDefinitionError(f"{name}: {edit.file} does not exist")
    if edit.old is FLIP_BYTE:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path.write_text(edited(path.read_text(), edit, name))


@dataclass
class Run:
    rc: int | None  # None: timed out
    seconds: float
    outcomes: dict[str, list[tuple[str, str]]]  # node id -> [(PASSED|FAILED|ERROR, detail)]
    skipped: int
    tail: str


_LINE = re.compile(r"^(PASSED|FAILED|ERROR|XPASS|XFAIL) (\S+?)(?: - (.*))?$")


def run_tests(copy: Path, tests: tuple[str, ...], timeout: int) -> Run:
    """pytest on ``tests`` in ``copy``; every outcome from the ``-rA`` summary."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", COLUMNS="200")
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *tests]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        text, _ = proc.communicate(timeout=timeout)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # pytest and everything it started
        text, _ = proc.communicate()
        rc = None
    outcomes: dict[str, list[tuple[str, str]]] = {t: [] for t in tests}
    skipped = 0
    for line in text.splitlines():
        if line.startswith("SKIPPED"):
            skipped += 1
        m = _LINE.match(line)
        if not m:
            continue
        kind, node, detail = m.group(1), m.group(2), (m.group(3) or "")
        for t in tests:
            if node == t or node.startswith(t + "["):
                outcomes[t].append((kind, detail))
    return Run(rc, time.monotonic() - t0, outcomes, skipped, text[-3000:])


def _failed(cases: list[tuple[str, str]]) -> tuple[str, str] | None:
    return next(((k, d) for k, d in cases if k in ("FAILED", "ERROR")), None)


@dataclass
class Result:
    caught: bool
    per_test: list[tuple[str, str]]  # (node id, what it did under the break)
    seconds: float


def check_break(b: Break, timeout: int, keep: bool) -> Result:
    tmp = Path(tempfile.mkdtemp(prefix=f"break-{b.name}-"))
    try:
        copy = scratch_copy(ROOT, tmp / "repo")
        for e in b.edits:
            apply_edit(copy, e, b.name)
        run = run_tests(copy, b.tests, min(timeout, b.timeout))
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if run.rc is None:
        return Result(False, [(t, "TIMEOUT") for t in b.tests], run.seconds)
    per_test, caught = [], run.rc == 1
    for t in b.tests:
        cases = run.outcomes[t]
        bad = _failed(cases)
        if bad:
            per_test.append((t, f"{bad[0]}: {_clip(bad[1])}" if bad[1] else bad[0]))
        elif cases:
            caught = False
            per_test.append((t, f"passed ({len(cases)} case(s))"))
        else:
            caught = False
            per_test.append((t, f"no result (pytest exit {run.rc})"))
    if run.rc not in (0, 1):
        per_test.append(("pytest", f"exit {run.rc}: {_clip(run.tail.strip().splitlines()[-1])}"))
    return Result(caught, per_test, run.seconds)


def _short(node: str) -> str:
    return node.removeprefix("tests/")


def _clip(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def baseline(breaks: list[Break], timeout: int) -> tuple[bool, str]:
    tests = tuple(dict.fromkeys(t for b in breaks for t in b.tests))
    with tempfile.TemporaryDirectory(prefix="break-baseline-") as tmp:
        run = run_tests(scratch_copy(ROOT, Path(tmp) / "repo"), tests, timeout)
    missing = [t for t in tests if not run.outcomes[t]]
    failing = [t for t in tests if _failed(run.outcomes[t])]
    ok = run.rc == 0 and not missing and not failing and run.skipped == 0
    what = (
        f"{len(tests)} tests, {sum(len(v) for v in run.outcomes.values())} cases, "
        f"pytest exit {run.rc}, {run.skipped} skipped, {run.seconds:.0f} s"
    )
    if not ok:
        what += f"; failing: {failing}; no result: {missing}\n{run.tail}"
    return ok, what


def report(rows: list[tuple[Break, Result]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text without rich
        for b, r in rows:
            print(f"{'caught' if r.caught else 'NOT CAUGHT':11} {b.name:30} {b.issue}")
            for t, what in r.per_test:
                print(f"{'':42} {_short(t)}: {what}")
        return
    table = Table(title="issue 14: does each strengthened test fail on its break?")
    table.add_column("break (issue 14's wording)", overflow="fold", ratio=3)
    table.add_column("named test", overflow="fold", ratio=3)
    table.add_column("under the break", overflow="fold", ratio=3)
    table.add_column("s", justify="right")
    table.add_column("result")
    for b, r in rows:
        table.add_row(
            f"[bold]{b.name}[/]\n{b.issue}",
            "\n".join(_short(t) for t, _ in r.per_test),
            "\n".join(what for _, what in r.per_test),
            f"{r.seconds:.0f}",
            "[green]caught[/]" if r.caught else "[red]NOT CAUGHT[/]",
            end_section=True,
        )
    Console(width=max(150, shutil.get_terminal_size().columns)).print(table)


def check_definitions(breaks: list[Break]) -> list[str]:
    """What stops an edit from applying to the current tree (checked before anything runs)."""
    problems = []
    for b in breaks:
        texts: dict[str, str] = {}
        for e in b.edits:
            path = ROOT / e.file
            try:
                if not path.is_file():
                    raise BreakDefinitionError(f"{b.name}: {e.file} does not exist")
                if e.old is not FLIP_BYTE:
                    texts[e.file] = edited(texts.get(e.file) or path.read_text(), e, b.name)
            except BreakDefinitionError as exc:
                problems.append(str(exc))
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[], help="breaks whose name has this")
    ap.add_argument("--list", action="store_true", help="list the breaks and exit")
    ap.add_argument("--keep", action="store_true", help="keep the scratch copies (in $TMPDIR)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per pytest run")
    args = ap.parse_args(argv)
    breaks = [b for b in BREAKS if not args.only or any(s in b.name for s in args.only)]
    if not breaks:
        ap.error(f"no break matches {args.only}; see --list")
    problems = check_definitions(breaks)
    if problems:
        print("\n".join(["breaks that no longer apply:", *problems]), file=sys.stderr)
        return 2
    if args.list:
        for b in breaks:
            print(f"{b.name}: {b.issue}\n  " + "\n  ".join(b.tests))
        return 0
    print(f"baseline: the {len(breaks)} breaks' tests on the unmodified tree ...", flush=True)
    ok, what = baseline(breaks, args.timeout)
    print(f"baseline: {'all pass' if ok else 'FAILED'}: {what}", flush=True)
    if not ok:
        print("the tests must pass on the unmodified tree first; nothing checked", file=sys.stderr)
        return 1
    rows = []
    for i, b in enumerate(breaks, 1):
        print(f"[{i}/{len(breaks)}] {b.name} ...", flush=True)
        r = check_break(b, args.timeout, args.keep)
        what = "; ".join(f"{_short(t)}: {w}" for t, w in r.per_test)
        print(
            f"    {'caught' if r.caught else 'NOT CAUGHT'} ({r.seconds:.0f} s): {what}", flush=True
        )
        rows.append((b, r))
    report(rows)
    missed = [b.name for b, r in rows if not r.caught]
    tail = f"; NOT caught: {', '.join(missed)}" if missed else ""
    print(f"{len(rows) - len(missed)} of {len(rows)} breaks caught{tail}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
