"""A problem of a config file: where (a field path a user can find in the file) and what is wrong.

The loader and the validator print problems the same way, so ``config check``, ``run`` and every
other command name a bad field with the same words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

#: A location inside the config: keys and list indices, as pydantic reports them.
Location = tuple[str | int, ...]


def format_path(location: Iterable[str | int]) -> str:
    """``("aggregator", "sketch", "tasks", 1, "width")`` → ``aggregator.sketch.tasks[1].width``."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config, printed as ``path: message``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def model_problems(error: ValidationError, prefix: Location = (), *, unknown: str = "") -> list[Problem]:
    """One problem per error pydantic found, with the path from the file's top level."""
    problems = []
    for item in error.errors(include_url=False):
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = unknown or "unknown setting (check its spelling and section)"
        problems.append(Problem(format_path((*prefix, *item["loc"])), message))
    return problems


def format_problems(source: str, problems: Sequence[Problem]) -> str:
    """The report both ``config check`` and ``run`` print: a header, then one line per problem."""
    lines = [f"{source}: {len(problems)} problem(s)"]
    lines.extend(f"  {problem}" for problem in problems)
    return "\n".join(lines)


_RULE_PATH = re.compile(r"alerter\.rules\[(\d+)\]")


def rule_label(problem: Problem, raw: Any) -> Problem:
    """``alerter.rules[2].operator: ...`` → the same with ``rule 'Name': `` before the message."""
    match = _RULE_PATH.match(problem.path)
    if match is None:
        return problem
    try:
        name = raw["alerter"]["rules"][int(match.group(1))]["name"]
    except (KeyError, IndexError, TypeError):
        return problem
    if not isinstance(name, str) or not name:
        return problem
    return Problem(problem.path, f"rule {name!r}: {problem.message}")
