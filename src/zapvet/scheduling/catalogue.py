"""Finding the service a customer means ("consulta geral", "vacinação") in the catalogue."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Protocol, TypeVar

_STOPWORDS = {"de", "da", "do", "das", "dos", "e", "para", "pra", "um", "uma", "o", "a", "no", "na"}
_WORD = re.compile(r"[a-z0-9]+")


class Named(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def category(self) -> str: ...


S = TypeVar("S", bound=Named)


def fold(text: str) -> str:
    """Lowercase without accents: "Vacinação" → "vacinacao"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).strip()


def _stems(text: str) -> set[str]:
    # A 5-letter prefix makes "vacina", "vacinação" and "vacinar" (and "consulta"/"consultas")
    # meet without a stemmer.
    return {word[:5] for word in _WORD.findall(fold(text)) if word not in _STOPWORDS}


def match_services(services: Sequence[S], query: str) -> list[S]:
    """The services `query` most plausibly names, best first; empty when nothing matches.

    An exact name wins; then an exact category (all its services); then the services
    sharing the most word stems with the query.
    """
    wanted = fold(query)
    if not wanted:
        return []
    exact = [s for s in services if fold(s.name) == wanted]
    if exact:
        return exact
    category = [s for s in services if fold(s.category) == wanted]
    if category:
        return category
    stems = _stems(query)
    scored = [(len(stems & _stems(f"{s.name} {s.category}")), s) for s in services]
    best = max((score for score, _ in scored), default=0)
    if best == 0:
        return []
    return [s for score, s in scored if score == best]
