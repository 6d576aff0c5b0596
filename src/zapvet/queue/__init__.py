"""Dramatiq on Redis: broker setup, middleware, actors and the scheduler."""
