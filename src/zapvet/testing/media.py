"""Small valid media files made on the fly (no binary blobs in the repository): a WAV tone,
a PNG square and a PDF with text that PDF readers extract back."""

from __future__ import annotations

import hashlib
import io
import math
import struct
import wave
import zlib


def sha256(data: bytes) -> str:
    """The hex sha256 of `data`, as `media.fetch.Fetched.sha256` carries it."""
    return hashlib.sha256(data).hexdigest()


def wav(seconds: float = 1.0, rate: int = 8000, tone_hz: float = 440) -> bytes:
    """A mono 16-bit PCM WAV of a sine tone lasting `seconds`."""
    frames = round(seconds * rate)
    samples = (round(12000 * math.sin(2 * math.pi * tone_hz * n / rate)) for n in range(frames))
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return out.getvalue()


def wav_seconds(data: bytes) -> float | None:
    """The duration of a WAV file from its header, or None if `data` is not one."""
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            return reader.getnframes() / reader.getframerate()
    except (wave.Error, EOFError, ZeroDivisionError):
        return None


def png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A PNG of one colour, truecolour 8-bit, no interlace."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    row = b"\x00" + bytes(rgb) * width  # filter type 0 per scanline
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def pdf(text_lines: list[str], *, lines_per_page: int = 40) -> bytes:
    """A PDF of `text_lines` in Helvetica (WinAnsi: Portuguese accents survive), one page per
    `lines_per_page` lines; no lines gives one blank page, like a scan without text."""
    pages = [
        text_lines[start : start + lines_per_page]
        for start in range(0, len(text_lines), lines_per_page)
    ] or [[]]
    font = len(pages) * 2 + 3
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        font: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    }
    kids = []
    for index, lines in enumerate(pages):
        page, contents = 3 + index * 2, 4 + index * 2
        kids.append(f"{page} 0 R".encode())
        objects[page] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents "
            + f"{contents} 0 R /Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        shown = b" T* ".join(b"(" + _pdf_string(line) + b") Tj" for line in lines)
        stream = b"BT /F1 11 Tf 14 TL 56 790 Td " + shown + b" ET"
        objects[contents] = (
            f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream"
        )
    objects[2] = f"<< /Type /Pages /Kids [{' '.join(k.decode() for k in kids)}] ".encode() + (
        f"/Count {len(pages)} >>".encode()
    )
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += f"{number} 0 obj\n".encode() + objects[number] + b"\nendobj\n"
    xref = len(out)
    size = max(objects) + 1
    out += f"xref\n0 {size}\n0000000000 65535 f \n".encode()
    for number in range(1, size):
        out += f"{offsets[number]:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {size} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _pdf_string(text: str) -> bytes:
    """`text` as the inside of a PDF literal string in WinAnsi, bytes over 127 octal-escaped."""
    out = bytearray()
    for byte in text.encode("cp1252", errors="replace"):
        if byte in b"()\\":
            out += b"\\" + bytes([byte])
        elif byte < 32 or byte > 126:
            out += f"\\{byte:03o}".encode()
        else:
            out.append(byte)
    return bytes(out)
