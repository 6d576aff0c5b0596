"""Conversation scenarios: a YAML format, a runner on a real database, and pass^k reports."""
