"""What a call's flow can use besides the call itself: prompts, records, speech, deflection."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hotline.config import SpeechMode
from hotline.deflection.callbacks import DEFAULT_NUMBER_PATTERN, CallbackStore
from hotline.deflection.limits import DeflectionLimits
from hotline.deflection.notify import Notifier
from hotline.erlang_c import WaitEstimate
from hotline.records.customers import CustomerDirectory
from hotline.records.interactions import InteractionStore
from ivr.audiosocket import AudioSocketServer, StreamingListener
from ivr.flow.flow import Flow
from ivr.prompts import PromptCache
from ivr.speech import SpeechRecognizer


@dataclass
class Services:
    prompts: PromptCache
    directory: CustomerDirectory
    interactions: InteractionStore
    flows: dict[str, Flow]
    fallback_queue: str = "support"
    speech: SpeechRecognizer | None = None
    # Where caller utterances are recorded: as Hotline and as Asterisk see it.
    asr_host: Path = Path("recordings/asr")
    asr_asterisk: str = "/srv/hotline/recordings/asr"
    min_confidence: float = 0.5
    # "record": RECORD FILE then recognise; "stream": AudioSocket, recognised live.
    speech_mode: SpeechMode = "record"
    audiosocket: AudioSocketServer | None = None
    # Streaming: quiet that ends an utterance naming an option whole / otherwise.
    complete_timeout_s: float = StreamingListener.EARLY_S
    incomplete_timeout_s: float = StreamingListener.HANGOVER_S
    # Deflection (docs/deflection.md).  All optional: without an estimate the
    # flow queues the caller as if the wait were short.
    wait_estimate: Callable[[str], WaitEstimate | None] | None = None
    callbacks: CallbackStore | None = None
    notifier: Notifier | None = None
    notify_timeout_s: float = 8.0
    # Numbers a link may be sent to ([deflection] number_pattern; bookings are
    # checked by the callback store against the same pattern).
    number_pattern: str = DEFAULT_NUMBER_PATTERN
    # Links and callbacks per number and window ([deflection] max_*_per_number, window_s).
    limits: DeflectionLimits = field(default_factory=DeflectionLimits)
    # (queue, what): "offered", "declined", "link_sent", "link_failed", "callback_booked".
    on_deflection: Callable[[str, str], None] | None = None
    on_callback_booked: Callable[[], None] | None = None
