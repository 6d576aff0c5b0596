"""Agent tools grouped per graph, with the pure domain logic (availability engine) beside them."""
