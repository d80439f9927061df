"""Names shared with Asterisk's own configuration: one place for each.

The IVR hands a caller to the dialplan in channel variables, the AMI client
reads some of them back (manager.conf's ``channelvars``), and the callback
dialplan reports in a ``UserEvent``.  Python, ``extensions.conf`` and
``manager.conf`` must spell these alike; ``tests/unit/test_contracts.py`` reads
the shipped configs and fails when they drift apart.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ChannelVar(StrEnum):
    """Channel variables between the IVR, the dialplan and the AMI client."""

    # Set by the IVR at hand-off; the dialplan queues the caller with them.
    QUEUE = "HOTLINE_QUEUE"
    PRIORITY = "HOTLINE_PRIORITY"
    # Set by the IVR at hand-off; AMI events carry them (manager.conf channelvars)
    # so the screen pop finds the caller's story.
    INTERACTION = "HOTLINE_INTERACTION"
    INTENT = "HOTLINE_INTENT"
    LANGUAGE = "HOTLINE_LANGUAGE"
    CUSTOMER = "HOTLINE_CUSTOMER"
    # Set by the callback dispatcher on the Originate it sends.
    CALLBACK_ID = "HOTLINE_CALLBACK_ID"
    CALLBACK_NUMBER = "HOTLINE_CALLBACK_NUMBER"


# What the AMI client must see on every channel event (manager.conf channelvars).
AMI_CHANNEL_VARS: Final = (
    ChannelVar.INTERACTION,
    ChannelVar.INTENT,
    ChannelVar.LANGUAGE,
    ChannelVar.CUSTOMER,
)


class UserEvent(StrEnum):
    """``UserEvent(NAME, ...)`` names the dialplan raises for Hotline."""

    CALLBACK = "HotlineCallback"


# A number Hotline may dial or text: optional +, 7 to 15 digits (E.164's limit).
# The callback dialplan checks the same rule with REGEX before it dials.
NUMBER_PATTERN: Final = r"\+?[0-9]{7,15}"
