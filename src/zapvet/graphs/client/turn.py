"""Kept for imports written before the loop was shared: see `zapvet.graphs.turn`."""

from zapvet.graphs.turn import TurnResult, run_turn

__all__ = ["TurnResult", "run_turn"]
