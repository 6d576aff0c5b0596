"""Aurora's tools: figures computed by SQL, and commands that only propose (see `commands`).

Identity comes from the runtime context, and every call re-checks that the owner number is
still active in that organization. Every query is scoped by that organization.
"""

from __future__ import annotations

from langchain_core.tools import BaseTool

from zapvet.tools.aurora.proposals import make_proposal_tools
from zapvet.tools.aurora.reads import make_read_tools
from zapvet.tools.deps import ToolDeps

__all__ = ["make_aurora_tools"]


def make_aurora_tools(deps: ToolDeps) -> list[BaseTool]:
    """Aurora's read tools and command tools, bound to this process's database and clock."""
    return make_read_tools(deps) + make_proposal_tools(deps)
