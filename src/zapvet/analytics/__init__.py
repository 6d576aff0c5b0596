"""The owner's figures, computed by SQL over one organization's rows."""
