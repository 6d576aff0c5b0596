"""OpenTelemetry: tracing, metrics and PII redaction."""
