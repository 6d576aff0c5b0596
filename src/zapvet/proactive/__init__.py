"""Messages Aurora sends on her own: escalation alerts, reminders, daily summaries."""
