"""Card numbers and expiry dates: checked on entry, masked in records."""

from __future__ import annotations

from datetime import date


def luhn_ok(digits: str) -> bool:
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def expiry_ok(digits: str, today: date | None = None) -> bool:
    """MMYY, this month or later."""
    if len(digits) != 4 or not digits.isdigit():
        return False
    month, year = int(digits[:2]), 2000 + int(digits[2:])
    today = today or date.today()
    return 1 <= month <= 12 and (year, month) >= (today.year, today.month)


def mask(digits: str) -> str:
    """What a sensitive input looks like in records: at most the last four digits."""
    if len(digits) >= 12:
        return "*" * (len(digits) - 4) + digits[-4:]
    return "*" * len(digits)
