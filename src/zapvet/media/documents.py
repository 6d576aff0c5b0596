"""The text of PDF documents customers send (a lab result, a vaccination card), kept short."""

from __future__ import annotations

import io

from pypdf import PdfReader

from zapvet.cleaning import CUT_ENDING, clean_text
from zapvet.errors import UnreadableDocument

#: What ends a text cut at the limit.
ELLIPSIS = "…"


def pdf_text(data: bytes, *, limit: int = 4000) -> str:
    """The text of the PDF `data`, pages in order, whitespace collapsed, at most `limit`
    characters (cut at a word, ending in "…"). A scanned PDF (images only) gives "".

    Raises:
        UnreadableDocument: not a PDF, broken beyond repair, or encrypted with a password.
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableDocument("the PDF is encrypted with a password")
        words: list[str] = []
        length = 0
        for page in reader.pages:
            extracted = page.extract_text() or ""
            cleaned = clean_text(extracted, limit=len(extracted) + len(CUT_ENDING) + 1)
            for word in cleaned.split():
                words.append(word)
                length += len(word) + 1
            if length > limit:
                break  # the rest of the pages would be cut anyway
    except UnreadableDocument:
        raise
    except Exception as exc:  # pypdf raises many kinds on a broken file, not only PdfReadError
        raise UnreadableDocument(f"pypdf cannot read it ({type(exc).__name__})") from None
    return _cut(" ".join(words), limit)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = text[:limit]
    if text[limit] != " " and " " in head:
        head = head.rsplit(" ", 1)[0]
    return head.rstrip() + ELLIPSIS
