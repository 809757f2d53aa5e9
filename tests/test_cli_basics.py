"""The CLI shell: instant help without heavy imports, version, one-line errors."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "dask", "distributed", "pyarrow", "cv2", "datasets", "webdataset")
# the documented commands, one group per module of matdata/cli/
COMMANDS = (
    "ingest", "build",  # ingest_build
    "harmonize", "harmonize-eval",  # harmonize
    "train", "predict", "adapt",  # modnet
    "evaluate",  # evaluate
    "export",  # export
    "qa", "inspect", "verify",  # qa
)  # fmt: skip


def test_help_imports_no_heavy_module():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from matdata.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]", res.stdout


def test_every_command_help_is_light():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from matdata.cli import app\n"
        "import typer\n"
        "names = [c.name or c.callback.__name__ for c in app.registered_commands]\n"
        "for n in names:\n"
        "    r = CliRunner().invoke(app, [n.replace('_', '-'), '--help'])\n"
        "    assert r.exit_code == 0, (n, r.output)\n"
        "print(','.join(names))\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, heavy = res.stdout.strip().splitlines()
    assert heavy == "[]", res.stdout
    # every command of every group is registered (and so had its help checked above)
    assert set(COMMANDS) <= set(names.split(",")), res.stdout


def test_version_and_unknown_command():
    ok = subprocess.run(["matdata", "--version"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("matdata ")
    for args, what in (
        (["no-such-command"], "No such command 'no-such-command'"),
        (["build", "--fg", "demo", "--bg", "demo", "--out", "x", "--per-fg", "x"], "--per-fg"),
        (["build", "--bg", "demo", "--out", "x"], "--fg"),
    ):
        bad = subprocess.run(["matdata", *args], capture_output=True, text=True)
        _assert_one_usage_error(bad, what)


def _assert_one_usage_error(proc: subprocess.CompletedProcess, what: str) -> None:
    """A usage error: exit 2, nothing on stdout, click's short usage + ONE ``Error:`` line
    naming the problem on stderr; no traceback, no boxed panel."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == "", proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    assert len(errors) == 1 and what in errors[0], proc.stderr
    assert lines[0].startswith("Usage: matdata") and lines[-1] == errors[0], proc.stderr
    assert len(lines) == 3, proc.stderr  # usage, "Try 'matdata ... -h' for help.", error
    assert "Traceback" not in proc.stderr and "\u2500" not in proc.stderr


def test_unwritable_output_is_one_error_line(tmp_path):
    """A path that cannot be written (here: below a regular file) is one line, exit 1."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for args in (
        ["ingest", "folder", str(tmp_path), "--out", str(blocker / "out")],
        ["build", "--fg", "demo", "--bg", "demo", "--out", str(blocker / "ds"), "--no-progress"],
    ):
        proc = subprocess.run(["matdata", *args], capture_output=True, text=True)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "error" in ln]
        assert len(lines) == 1 and "file system" in lines[0] and "a-file" in lines[0]
