"""Scheduling: free slots, bookings against the database, the catalogue and pt-BR wording."""
