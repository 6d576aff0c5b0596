"""Short answers recognised without a model: confirmations, opt-outs and opt-ins.

A message only counts when it is nothing but the answer ("sim", "não, deixa", "parar"),
after dropping accents, punctuation and emoji; "sim, mas muda para as 11h" is a new
request for the model, not a confirmation.
"""

from __future__ import annotations

import re
from typing import Literal

from zapvet.scheduling.catalogue import fold

_NOISE = re.compile(r"[^\w\s]", re.UNICODE)
_SPACES = re.compile(r"\s+")

_YES = {
    "sim", "s", "ss", "confirmo", "confirma", "confirmado", "pode", "pode sim", "pode fazer",
    "pode mandar", "ok", "okay", "isso", "isso mesmo", "manda", "fechado", "certo", "beleza",
    "sim pode", "sim confirmo", "yes", "👍",
}  # fmt: skip
_NO = {
    "nao", "n", "nao pode", "cancela", "cancelar", "deixa", "deixa pra la", "esquece",
    "nao obrigado", "nao quero", "no", "nao confirmo", "👎",
}  # fmt: skip
_OPT_OUT = re.compile(
    r"^(parar|pare|para|sair|stop|cancelar|descadastrar|remover)"
    r"( (de )?(receber|mandar|enviar))?( (as |os )?(mensagens|lembretes|avisos))?$"
    r"|^(nao|n) (quero|desejo) (mais )?receber( (mais )?(mensagens|lembretes|avisos))?( mais)?$"
    r"|^(nao|n) (me )?(mande|envie|manda) mais( (mensagens|lembretes|avisos))?$"
)
_OPT_IN = re.compile(
    r"^(voltar|quero voltar|quero|pode voltar|voltar a|aceito) (a )?receber"
    r"( (as |os )?(mensagens|lembretes|avisos))?$"
)


def normalise(text: str) -> str:
    """Lowercase, no accents, no punctuation, single spaces; emoji kept only when alone."""
    stripped = text.strip()
    if stripped in {"👍", "👎"}:
        return stripped
    return _SPACES.sub(" ", _NOISE.sub(" ", fold(stripped))).strip()


def confirmation(text: str) -> Literal["yes", "no"] | None:
    said = normalise(text)
    if said in _YES:
        return "yes"
    words = said.split()
    if said in _NO or (
        words[:1] == ["nao"] and len(words) <= 3 and not any(c.isdigit() for c in said)
    ):
        return "no"
    return None


def subscription(text: str) -> Literal["opt_out", "opt_in"] | None:
    """A customer asking to stop (or restart) proactive messages."""
    said = normalise(text)
    if _OPT_OUT.match(said):
        return "opt_out"
    if _OPT_IN.match(said):
        return "opt_in"
    return None


#: What a customer asking to be forgotten hears: the owner decides, never the model.
ERASURE_ACK = (
    "Recebemos o seu pedido para apagar os seus dados. 🙂 A equipe da loja vai confirmar a "
    "exclusão e te avisar por aqui."
)

#: A customer asking to have their data erased (LGPD): "apaga meus dados", "quero que vocês
#: excluam meu cadastro", "podem remover minhas informações?" (matched without accents).
_ERASURE = re.compile(
    r"\b(?P<verb>apag|exclu|delet|remov|esquec|elimin)\w*\b.{0,40}?"
    r"\b(meu|meus|minha|minhas)\s+(dados|cadastro|informacoes|registro|conta|historico)\b"
)


def erasure_request(text: str) -> bool:
    """Whether the customer asks to have their data (or registration) erased ("não apaguem
    meus dados" does not)."""
    said = normalise(text)
    found = _ERASURE.search(said)
    return found is not None and not said[: found.start()].rstrip().endswith(("nao", "nunca"))
