"""Chat models: the OpenAI-compatible client, the scripted model for tests, token counting."""
