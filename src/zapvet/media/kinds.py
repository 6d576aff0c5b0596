"""Which MIME types zapvet reads per media kind; anything else is kept as a plain document."""

from __future__ import annotations

#: The types read (transcribed, shown to the model, parsed) per kind. A file outside its
#: kind's list is recorded as a document and never parsed.
ALLOWED_MIME: dict[str, frozenset[str]] = {
    "audio": frozenset(
        {
            "audio/ogg",
            "audio/opus",
            "audio/mpeg",
            "audio/mp4",
            "audio/aac",
            "audio/amr",
            "audio/wav",
            "audio/x-wav",
            "audio/webm",
            "audio/x-m4a",
        }
    ),
    "image": frozenset({"image/jpeg", "image/png", "image/webp"}),
    "document": frozenset({"application/pdf"}),
}


def base_mime(mimetype: str | None) -> str:
    """`mimetype` without parameters, lower case: "Audio/OGG; codecs=opus" → "audio/ogg"."""
    if not mimetype:
        return ""
    return mimetype.split(";", 1)[0].strip().lower()


def allowed(kind: str, mimetype: str | None) -> bool:
    """Whether a `kind` file of this type is one zapvet reads."""
    return base_mime(mimetype) in ALLOWED_MIME.get(kind, frozenset())
