"""The tree drawn in errors.py's docstring is the real class tree, and it shows every error."""

from __future__ import annotations

import re

from beeorm_celery import errors

_NODE = re.compile(r"^(?P<indent>[ │]*)[├└]── (?P<name>\w+)")


def _drawn() -> dict[str, str]:
    """Each drawn class -> its drawn parent."""
    parents: dict[str, str] = {}
    stack: list[str] = ["BeeormError"]
    for line in (errors.__doc__ or "").splitlines():
        found = _NODE.match(line.strip("\n")[4:] if line.startswith("    ") else line)
        if found is None:
            continue
        depth = len(found.group("indent")) // 4
        del stack[depth + 1 :]
        parents[found.group("name")] = stack[depth]
        stack.append(found.group("name"))
    return parents


def test_every_drawn_error_has_the_drawn_parent() -> None:
    drawn = _drawn()
    assert len(drawn) > 10
    for name, parent in drawn.items():
        cls = getattr(errors, name)
        assert parent in [base.__name__ for base in cls.__bases__], (name, parent)


def test_every_error_class_is_drawn() -> None:
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.BeeormError)
    }
    assert defined - {"BeeormError"} == set(_drawn())
