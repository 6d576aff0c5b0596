"""LangGraph state graphs: `client` (customer attendant) and `aurora` (owner assistant)."""
