"""What the notifier tests send: a link message to a Korean number, and the secrets
that must never show."""

from __future__ import annotations

from hotline.deflection.notify import LinkMessage

NUMBER = "+821012345678"
KOREAN = "안녕하세요! 요금 납부 링크입니다: https://pay.example/b/42 ✓"
TOKEN = "tok-s3cret-XYZ"
PASSWORD = "pw-hunter2-ABC"


def message(text: str = "Pay here: https://pay.example/b/42", to: str = NUMBER) -> LinkMessage:
    return LinkMessage(to=to, text=text, call_id="call-1", language="ko", kind="pay_bill")
