"""After `zapvet contact forget`, the same number writing again is a new contact (through
the real webhook route): nothing of the forgotten person is found or linked."""

from __future__ import annotations

from tests.bridge.test_blocked import MARINA, Bridge, bridge

__all__ = ["bridge"]  # the fixture, shared with the blocking tests


def test_a_forgotten_number_writing_again_is_a_new_contact(bridge: Bridge) -> None:
    bridge.say(MARINA, "oi, meu nome é Marina")
    ((first,),) = bridge.rows("SELECT id FROM contacts WHERE phone = :p", p=MARINA)
    out = bridge.contact("forget", MARINA, "--org", "petfeliz")
    assert out.startswith(f"forgot +{MARINA}")
    bridge.say(MARINA, "oi de novo")
    ((second,),) = bridge.rows("SELECT id FROM contacts WHERE phone = :p", p=MARINA)
    assert second != first
    contents = bridge.rows(
        "SELECT m.content FROM messages m JOIN conversations c ON c.id = m.conversation_id"
        " WHERE c.contact_id = :c ORDER BY m.id",
        c=second,
    )
    assert contents == [("oi de novo",)]
    erased = bridge.rows("SELECT content FROM messages WHERE content LIKE '%Marina%'")
    assert erased == []
