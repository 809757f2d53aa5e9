"""Running the Typer app the same way on every supported typer / click version.

Typer up to 0.2x builds its commands on the ``click`` package; newer releases bundle their
own copy as ``typer._click``, whose exception classes are *not* those of ``click``.  This
module never names one of them directly: it asks typer which click its commands use
(:func:`click_modules`) and handles usage errors from all of them, so a mistake on the
command line is always click's short usage line plus one ``Error:`` line and exit code 2.

It also refuses what click would otherwise accept silently: an option that takes a single
value given twice (click keeps the last one without a word).  The check reads each
option's declaration, so an option that becomes repeatable (``multiple=True``) is accepted
repeated without any change here.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import typer


def click_modules() -> list[ModuleType]:
    """The click implementations in play: typer's bundled one first, then ``click``."""
    mods: list[ModuleType] = []
    try:
        from typer import _click as bundled  # typer >= 0.2x

        mods.append(bundled)
    except ImportError:
        pass
    try:
        import click

        mods.append(click)
    except ImportError:  # a typer that bundles click does not install it
        pass
    return mods


def command_click() -> ModuleType:
    """The click module typer's commands are built on (where its exceptions come from)."""
    from typer.core import TyperCommand

    for mod in click_modules():
        if issubclass(TyperCommand, mod.Command):
            return mod
    return click_modules()[0]  # pragma: no cover - typer without either


def _classes(name: str) -> tuple[type, ...]:
    """The classes called ``name`` in every click in play (the commands' click first)."""
    out: list[type] = []
    for mod in (command_click(), *click_modules()):
        cls = getattr(mod, name, None)
        if cls is None:
            cls = getattr(getattr(mod, "exceptions", None), name, None)
        if isinstance(cls, type) and cls not in out:
            out.append(cls)
    return tuple(out)


def is_click_exception(exc: BaseException) -> bool:
    """True for a ``ClickException`` (usage errors included) of any click in play."""
    return isinstance(exc, _classes("ClickException"))


def is_abort(exc: BaseException) -> bool:
    return isinstance(exc, _classes("Abort"))


def is_exit(exc: BaseException) -> bool:
    """click's ``Exit`` (typer.Exit is one) of any click in play."""
    return isinstance(exc, (*_classes("Exit"), typer.Exit))


def prog_name() -> str:
    """What the user typed to start the program (``matdata`` or ``python -m matdata``)."""
    mod = command_click()
    detect = getattr(getattr(mod, "utils", None), "_detect_program_name", None)
    try:
        return detect() if detect else "matdata"
    except Exception:  # pragma: no cover - defensive: never fail on a name
        return "matdata"


# ------------------------------------------------------------------------ repeat check


def _option_table(command: Any) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for p in getattr(command, "params", []):
        if getattr(p, "param_type_name", None) == "option":
            for name in (*p.opts, *p.secondary_opts):
                table[name] = p
    return table


def _takes_value(param: Any) -> bool:
    return not getattr(param, "is_flag", False) and not getattr(param, "count", False)


def _scan(command: Any, args: Sequence[str]) -> tuple[dict[str, list[str]], list[int]]:
    """Occurrences of each single-value option in ``args`` and the positions of the
    positional arguments."""
    table = _option_table(command)
    seen: dict[str, list[str]] = {}
    positional: list[int] = []
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--":
            positional.extend(range(i + 1, len(args)))
            break
        if tok.startswith("--"):
            name, eq, _ = tok.partition("=")
            attached = bool(eq)
        elif tok.startswith("-") and len(tok) > 1 and not _is_number(tok):
            name, attached = tok[:2], len(tok) > 2
        else:
            positional.append(i)
            i += 1
            continue
        param = table.get(name)
        if param is not None and _takes_value(param):
            if not attached:  # the value(s), whatever they look like (`--lr -1`)
                i += max(1, int(getattr(param, "nargs", 1) or 1))
            if not getattr(param, "multiple", False):
                seen.setdefault(param.name, []).append(name)
        i += 1
    return seen, positional


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def find_repeat(root: Any, args: Sequence[str]) -> tuple[list[str], Any, str] | None:
    """``(path of command names, command, message)`` for the first single-value option given
    more than once in ``args``, or None."""
    command, path, rest = root, [], list(args)
    while True:
        seen, positional = _scan(command, rest)
        if isinstance(getattr(command, "commands", None), dict) and positional:
            name = rest[positional[0]]
            sub = command.commands.get(name)
            if sub is None:
                return None  # click reports the unknown command
            path.append(name)
            rest = rest[positional[0] + 1 :]
            command = sub
            continue
        for used in seen.values():
            if len(used) > 1:
                spelled = " and ".join(dict.fromkeys(used))
                return (
                    path,
                    command,
                    f"{spelled} given {len(used)} times; this option takes one value "
                    "(give it once)",
                )
        return None


def usage_error(root: Any, path: list[str], message: str) -> Exception:
    """A click ``UsageError`` whose context prints the usage line of ``path``."""
    mod = command_click()
    helps = ["-h", "--help"]
    ctx = mod.Context(root, info_name=prog_name(), help_option_names=helps)
    command = root
    for name in path:
        command = command.commands[name]
        ctx = mod.Context(command, info_name=name, parent=ctx, help_option_names=helps)
    return _classes("UsageError")[0](message, ctx=ctx)


def tidy_help(command: Any) -> None:
    """Drop the ``<bool>`` type placeholder some typer versions print beside a flag."""
    params = list(getattr(command, "params", []))
    try:  # the help option is made on demand (and cached) by newer click
        ctx = command_click().Context(command, help_option_names=["-h", "--help"])
        params.append(command.get_help_option(ctx))
    except Exception:  # pragma: no cover - an older click without it: nothing to tidy
        pass
    for p in params:
        if getattr(p, "is_flag", False) and getattr(p, "metavar", None) is None:
            p.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        tidy_help(sub)


def invoke(app: typer.Typer, argv: Sequence[str] | None = None) -> Any:
    """Run ``app`` (non-standalone: exceptions reach the caller) after the repeat check.

    With no arguments at all, prints the help and returns 0.
    """
    root = typer.main.get_command(app)
    tidy_help(root)
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        args = ["--help"]
    asks_help = any(a in ("-h", "--help") for a in args)
    found = None if asks_help else find_repeat(root, args)
    if found is not None:
        path, _command, message = found
        raise usage_error(root, path, message)
    return root.main(args=args, prog_name=prog_name(), standalone_mode=False)
