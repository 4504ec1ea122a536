"""The ``runtrack`` group: global options after the verb too, examples, help without noise.

The reference's scripts write ``runtrack get runs --no-ux``; click accepts a group's options only
before the verb, so the group copies its own options onto every verb below it. It also adds each
verb's examples (``api.cli.examples``) and drops the ``<bool>`` typer shows after every flag.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from api.cli.examples import EXAMPLES

__all__ = ["RuntrackGroup", "examples", "walk"]

Command = TyperCommand | TyperGroup

GLOBAL_PANEL = "Global options (before or after the verb)"
FIELDS = {"no_ux": "plain"}
"""The ``Connection`` field of each global option whose name differs."""


class RuntrackGroup(TyperGroup):
    """The root group; typer builds the verbs first, so they are all here to adjust."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        globals_ = [param for param in self.params if isinstance(param, TyperOption)]
        for param in globals_:
            param.rich_help_panel = GLOBAL_PANEL
        quiet_flags(self)
        for path, command in walk(self):
            command.epilog = _epilog(examples(path))
            if not isinstance(command, TyperGroup):
                _add_after_the_verb(command, globals_)
            quiet_flags(command)


def walk(group: TyperGroup, prefix: str = "") -> Iterator[tuple[str, Command]]:
    """Every command below ``group`` with its path (``"get runs"``), groups included."""
    for name, command in group.commands.items():
        if not isinstance(command, TyperCommand | TyperGroup):
            continue  # typer makes only these; the check tells the type checker
        path = f"{prefix}{name}"
        yield path, command
        if isinstance(command, TyperGroup):
            yield from walk(command, path + " ")


def examples(path: str) -> tuple[str, ...]:
    """A verb's examples; a group's are those of its verbs."""
    below = (lines for verb, lines in EXAMPLES.items() if verb.startswith(f"{path} "))
    return EXAMPLES.get(path) or tuple(line for lines in below for line in lines)


def _epilog(lines: tuple[str, ...]) -> str | None:
    """Typer joins an epilog's single newlines; paragraphs (blank lines) stay lines of their own."""
    return "\n\n".join(("Examples:", *(f"  $ {line}" for line in lines))) if lines else None


def _add_after_the_verb(command: Command, globals_: list[TyperOption]) -> None:
    taken = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
    for param in globals_:
        if taken.isdisjoint(param.opts):
            command.params.append(_after_the_verb(param))


def _after_the_verb(param: TyperOption) -> TyperOption:
    """A copy that, given, overrides the value before the verb (or its variable)."""
    after = copy.copy(param)
    after.expose_value = False  # the verb's function has no such parameter
    if not param.is_eager:  # --version acts at once wherever it is; the others set a value
        after.envvar, after.default, after.show_default = None, None, False
        after.callback = _override
    return after


def _override(ctx: Any, param: Any, value: Any) -> None:
    """A click callback (``Any``: typer's click context and parameter types are private)."""
    if value is None or value is False or param.name is None:
        return
    root = ctx.find_root()
    if root.obj is not None:
        setattr(root.obj, FIELDS.get(param.name, param.name), value)


def quiet_flags(command: Command) -> None:
    """No type after a flag (typer writes ``--no-ux <bool>``): an empty metavar shows nothing."""
    help_option = command.get_help_option(typer.Context(command))  # cached by click
    for param in [*command.params, help_option]:
        if isinstance(param, TyperOption) and param.is_flag:
            param.metavar = ""
