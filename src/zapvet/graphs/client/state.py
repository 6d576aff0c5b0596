"""The client graph's state is the shared agent state (`zapvet.graphs.state`)."""

from zapvet.graphs.state import AgentState as ClientState

__all__ = ["ClientState"]
