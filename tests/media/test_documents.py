"""`pdf_text`: the text of a PDF, in page order, cut at the limit."""

from __future__ import annotations

import io
from typing import Any

import pytest
from pypdf import PageObject, PdfReader, PdfWriter

from zapvet.errors import UnreadableDocument
from zapvet.media.documents import pdf_text
from zapvet.testing.media import pdf


def test_documents_pdf_text_round_trips_lines_in_page_order() -> None:
    lines = ["Hemograma do Thor", "Plaquetas: 250.000 (normal)", "Observação: coração ok"]
    text = pdf_text(pdf(lines, lines_per_page=1))  # three pages
    assert text == "Hemograma do Thor Plaquetas: 250.000 (normal) Observação: coração ok"


def test_documents_pdf_text_cuts_at_a_word_with_an_ellipsis() -> None:
    text = pdf_text(pdf(["vacina antirrábica em dia"] * 20), limit=40)
    assert text.endswith("…")
    assert len(text) <= 41
    assert text.removesuffix("…") == "vacina antirrábica em dia vacina"


def test_documents_pdf_text_under_the_limit_is_whole() -> None:
    assert pdf_text(pdf(["curto"]), limit=5) == "curto"


def test_documents_pdf_text_stops_reading_pages_past_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read: list[int] = []
    extract = PageObject.extract_text

    def counting(page: PageObject, *args: Any, **kwargs: Any) -> str:
        read.append(page.page_number or 0)
        return extract(page, *args, **kwargs)

    monkeypatch.setattr(PageObject, "extract_text", counting)
    data = pdf(["primeira página " * 10, "segunda", "terceira"], lines_per_page=1)
    assert pdf_text(data, limit=20) == "primeira página…"
    assert read == [0]
    assert pdf_text(data, limit=1000).endswith("página segunda terceira")
    assert read == [0, 0, 1, 2]


def test_documents_pdf_text_of_a_page_without_text_is_empty() -> None:
    assert pdf_text(pdf([])) == ""


def test_documents_pdf_text_is_cleaned() -> None:
    assert pdf_text(pdf(["Thor\x07 (cão)"])) == "Thor (cão)"


@pytest.mark.parametrize("data", [b"", b"not a pdf at all", b"%PDF-1.4\n1 0 obj <<"])
def test_documents_garbage_is_unreadable(data: bytes) -> None:
    with pytest.raises(UnreadableDocument):
        pdf_text(data)


def test_documents_encrypted_pdf_is_unreadable() -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf(["segredo"]))))
    writer.encrypt(user_password="senha", owner_password="dono", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(UnreadableDocument):
        pdf_text(out.getvalue())
