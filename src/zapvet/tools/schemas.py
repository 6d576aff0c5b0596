"""`tool`: langchain's decorator, with each tool function's argument schema built once.

The tools are closures made per graph (they close over the deps), so every graph built
rebuilt every schema with pydantic: most of building the two graphs (0.4-0.7 s on a busy
machine, 0.07 s with the schemas reused). The schema depends only on the function's code,
which every closure of one `def` shares, so it is made for the first and reused after.
"""

from __future__ import annotations

from collections.abc import Callable
from types import CodeType
from typing import Any

from langchain_core.tools import BaseTool
from langchain_core.tools import tool as langchain_tool

_SCHEMAS: dict[CodeType, Any] = {}


def tool(func: Callable[..., Any]) -> BaseTool:
    """`langchain_core.tools.tool(func)`, reusing the argument schema of `func`'s code."""
    schema = _SCHEMAS.get(func.__code__)
    made = langchain_tool(func) if schema is None else langchain_tool(func, args_schema=schema)
    _SCHEMAS.setdefault(func.__code__, made.args_schema)
    return made
