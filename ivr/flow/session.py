"""What a node (or a site action) may use of the call it runs in.

A node's ``run`` gets a :class:`Session`: the call as nodes see it, and no
more.  :class:`ivr.flow.engine.CallSession` is the one implementation (it
satisfies these protocols structurally; the engine checks that statically).
Nodes and actions import this module, never the engine, so the engine can
run them without the nodes depending on it.

The flow and the services are seen through narrow protocols too:
:class:`ivr.flow.flow.Flow` holds nodes and :class:`ivr.flow.services.Services`
holds every flow, so naming them here would bring the nodes back into their
own interface.  A node that needs more of the call adds it here (and mypy
says whether ``CallSession`` has it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from hotline.config import SpeechMode
    from hotline.deflection.callbacks import CallbackStore
    from hotline.deflection.limits import DeflectionLimits
    from hotline.deflection.notify import Notifier
    from hotline.erlang_c import WaitEstimate
    from hotline.records.customers import Customer, CustomerDirectory
    from hotline.records.interactions import Interaction, InteractionStore
    from ivr.agi import AgiChannel
    from ivr.audiosocket import AudioSocketServer
    from ivr.flow.condition import Condition
    from ivr.flow.placeholders import Scope
    from ivr.flow.prompt import Prompt
    from ivr.prompts import PromptCache
    from ivr.speech import Recognition, SpeechRecognizer


class SessionFlow(Protocol):
    """What a node reads of the flow the call is in (:class:`ivr.flow.flow.Flow`)."""

    @property
    def languages(self) -> tuple[str, ...]: ...

    @property
    def default_language(self) -> str: ...


class SessionServices(Protocol):
    """What a node may use of :class:`ivr.flow.services.Services`.

    Everything but the flows themselves (a node runs another flow through
    :meth:`Session.enter_subflow`) and the engine's own settings (the
    fallback queue, where recordings go).
    """

    @property
    def prompts(self) -> PromptCache: ...

    @property
    def directory(self) -> CustomerDirectory: ...

    @property
    def interactions(self) -> InteractionStore: ...

    @property
    def speech(self) -> SpeechRecognizer | None: ...

    @property
    def min_confidence(self) -> float: ...

    @property
    def speech_mode(self) -> SpeechMode: ...

    @property
    def audiosocket(self) -> AudioSocketServer | None: ...

    @property
    def complete_timeout_s(self) -> float: ...

    @property
    def incomplete_timeout_s(self) -> float: ...

    @property
    def wait_estimate(self) -> Callable[[str], WaitEstimate | None] | None: ...

    @property
    def callbacks(self) -> CallbackStore | None: ...

    @property
    def notifier(self) -> Notifier | None: ...

    @property
    def notify_timeout_s(self) -> float: ...

    @property
    def number_pattern(self) -> str: ...

    @property
    def limits(self) -> DeflectionLimits: ...

    @property
    def on_deflection(self) -> Callable[[str, str], None] | None: ...

    @property
    def on_callback_booked(self) -> Callable[[], None] | None: ...


class Session(Protocol):
    """The call, as a node's ``run`` (and a site action) may use it."""

    # What nodes set.
    customer: Customer | None  # who is calling, once a lookup found them
    pending_digit: str | None  # a key pressed during a greeting, for the next menu
    queue_info: dict[str, int]  # {queue.wait_minutes} for prompts
    # The customer id the caller proved to be (a ``verify`` step); ``verified``
    # in conditions holds only while ``customer`` is that customer.
    verified_as: int | None

    # What nodes read (and may change inside, never replace).
    @property
    def channel(self) -> AgiChannel: ...

    @property
    def flow(self) -> SessionFlow: ...

    @property
    def services(self) -> SessionServices: ...

    @property
    def interaction(self) -> Interaction: ...

    @property
    def language(self) -> str:
        """The caller's language (changed through :meth:`set_language`)."""

    @property
    def vars(self) -> dict[str, str]: ...

    @property
    def secrets(self) -> dict[str, str]:
        """Sensitive inputs: memory only, never stored."""

    @property
    def verify_tries(self) -> dict[str, int]:
        """Wrong or empty entries so far this call, per verification method."""

    # Placeholders and conditions.
    def scope(self) -> Scope: ...

    def open_now(self) -> bool: ...

    def holds(self, cond: Condition) -> bool: ...

    # Prompts.
    async def paths(self, prompt: Prompt) -> list[str]: ...

    async def play(self, prompt: Prompt, escape: str) -> str | None: ...

    async def play_interruptible(self, prompt: Prompt) -> None: ...

    async def say_builtin(self, name: str, escape: str = "") -> str | None: ...

    async def host_paths(self, prompt: Prompt) -> list[Path]: ...

    # What the call learned.
    def agent_queue(self, node_queue: str | None) -> str: ...

    def record_input(self, name: str, value: str, sensitive: bool = False) -> None: ...

    def set_language(self, language: str) -> None: ...

    async def caller_customer(self) -> Customer | None: ...

    # Speech capture.
    def can_listen(self, wanted: bool) -> bool: ...

    async def record_and_recognise(
        self,
        keys: str,
        timeout_s: float,
        *,
        silence_s: int,
        phrases: list[str] | None,
        key_is_choice: bool,
    ) -> tuple[str | None, Recognition | None]: ...

    # Sub-flows.
    def enter_subflow(self, name: str, then: str) -> str: ...

    def leave_subflow(self) -> str: ...
