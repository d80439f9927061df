"""The card checks of the pay-bill steps (pure functions of the engine)."""

from __future__ import annotations

from ivr.flow.engine import expiry_ok, luhn_ok, mask

CARD = "4111111111111111"


def test_luhn_and_expiry_and_mask() -> None:
    assert luhn_ok(CARD) and not luhn_ok("4111111111111112") and not luhn_ok("12345")
    from datetime import date

    assert expiry_ok("1230", date(2026, 11, 1)) and not expiry_ok("1025", date(2026, 11, 1))
    assert not expiry_ok("1330", date(2026, 11, 1))
    assert mask(CARD) == "************1111" and mask("1234") == "****"
