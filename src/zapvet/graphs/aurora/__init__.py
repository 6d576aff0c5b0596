"""Aurora, the owner's assistant: exact figures from SQL, and commands run only after a "sim"."""
