"""The WhatsApp side: webhook app, payload parsers per provider, identity, senders."""
