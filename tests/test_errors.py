"""`errors.py` is the one exception tree: every exception class zapvet defines descends from
`ZapvetError` and is drawn in that module's docstring."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import zapvet
from zapvet import errors

SRC = Path(zapvet.__file__).parent


def defined_exceptions() -> list[type[BaseException]]:
    """Every exception class defined at the top of a zapvet module (the CLI entry excepted)."""
    found: list[type[BaseException]] = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "__main__.py" or "class " not in path.read_text(encoding="utf-8"):
            continue
        name = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        module = importlib.import_module(name)
        found += [
            member
            for _, member in inspect.getmembers(module, inspect.isclass)
            if issubclass(member, BaseException) and member.__module__ == name
        ]
    return found


def test_every_exception_zapvet_defines_is_in_the_one_tree() -> None:
    found = defined_exceptions()
    assert errors.__doc__ is not None

    outside = [
        f"{c.__module__}.{c.__name__}" for c in found if not issubclass(c, errors.ZapvetError)
    ]
    undrawn = [c.__name__ for c in found if c.__name__ not in errors.__doc__]
    assert outside == [] and undrawn == []
    assert {"_Raced", "_Refused", "SendError", "RejectedSend", "PayloadError"} <= {
        c.__name__ for c in found
    }  # the scan sees the classes that live outside errors.py too
