"""Which numbers a callback may dial (the rule the callback store books by)."""

from __future__ import annotations

import pytest

from hotline.deflection.callbacks import InvalidNumber, dialable


def test_only_plain_numbers_are_dialable() -> None:
    assert dialable("+15551234") == "15551234"
    assert dialable("5550999") == "5550999"
    for bad in ("", "anonymous", "12", "5551234&Local/x", "555 1234", "1" * 16, "*98"):
        with pytest.raises(InvalidNumber):
            dialable(bad)
    # A site pattern narrows the rule; it cannot widen it.
    with pytest.raises(InvalidNumber):
        dialable("4155550100", r"555[0-9]{4}")
    with pytest.raises(InvalidNumber):
        dialable("5551234,1", r".*")
