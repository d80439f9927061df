"""Site actions: the self-service tasks an ``action`` node runs (``do: NAME``).

One function per action, registered by name.  To add one, write the
function here (or in a module imported here) under ``@register("name")``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ivr.flow.cards import expiry_ok, luhn_ok, mask
from ivr.flow.node import Step
from ivr.flow.placeholders import spoken_amount

if TYPE_CHECKING:
    from ivr.flow.prompt import Prompt
    from ivr.flow.session import Session


class ActionNode(Protocol):
    """What an action sees of its ``action`` node (:class:`ivr.flow.nodes.action.Action`).

    A protocol, not the class: the node module imports this registry, so
    this module does not import it back.
    """

    @property
    def args(self) -> Mapping[str, str]: ...

    @property
    def next(self) -> str: ...

    @property
    def prompt(self) -> Prompt: ...

    def failed(self, session: Session) -> str:
        """Where a failed action goes: ``on_error``, else an agent (raises ``Handoff``)."""


# Does the work; returns the next node id (the node's ``next`` or ``on_error``).
ActionRun = Callable[["Session", ActionNode, Step], Awaitable[str | None]]
# Checks the node's ``args`` (as written) against the flow's languages when the
# flow is loaded; returns what is wrong, or None.
ArgsCheck = Callable[[Mapping[object, object], tuple[str, ...]], str | None]


@dataclass(frozen=True, slots=True)
class SiteAction:
    name: str
    run: ActionRun
    # Without a customer (no lookup found one) the node goes to ``on_error``.
    needs_customer: bool = True
    check: ArgsCheck | None = None


ACTIONS: dict[str, SiteAction] = {}


def register(
    name: str, *, needs_customer: bool = True, check: ArgsCheck | None = None
) -> Callable[[ActionRun], ActionRun]:
    def add(run: ActionRun) -> ActionRun:
        ACTIONS[name] = SiteAction(name, run, needs_customer, check)
        return run

    return add


def _language_is_the_flows(args: Mapping[object, object], languages: tuple[str, ...]) -> str | None:
    language = args.get("language")
    if language not in languages:
        return f"args.language: {language!r} is not one of the flow's languages"
    return None


@register("set_language", needs_customer=False, check=_language_is_the_flows)
async def set_language(session: Session, node: ActionNode, step: Step) -> str | None:
    lang = node.args.get("language", "")
    if lang not in session.flow.languages:
        raise ValueError(f"set_language: {lang!r} is not a language of this flow")
    session.set_language(lang)
    await session.play(node.prompt, "")
    return node.next


@register("say_balance")
async def say_balance(session: Session, node: ActionNode, step: Step) -> str | None:
    await session.play(node.prompt, "")
    session.interaction.self_service.append({"task": "balance", "outcome": "done"})
    step["result"] = "done"
    return node.next


@register("pay_bill")
async def pay_bill(session: Session, node: ActionNode, step: Step) -> str | None:
    """The demo's payment back end books the balance as paid."""
    customer = session.customer
    assert customer is not None  # needs_customer
    card = session.secrets.get(node.args.get("card", "card"), "")
    expiry_var = node.args.get("expiry", "expiry")
    expiry = session.secrets.get(expiry_var, "") or session.vars.get(expiry_var, "")
    if not luhn_ok(card) or not expiry_ok(expiry):
        step["result"] = "declined"
        session.interaction.self_service.append({"task": "pay_bill", "outcome": "declined"})
        return node.failed(session)
    amount = customer.balance_cents
    session.customer = await session.services.directory.pay_balance(customer.id, amount)
    session.secrets.clear()  # card data lives no longer than it must
    session.vars["paid_amount"] = spoken_amount(amount)
    session.interaction.self_service.append(
        {"task": "pay_bill", "outcome": "paid", "amount": amount / 100, "card": mask(card)}
    )
    step["result"] = "paid"
    await session.play(node.prompt, "")
    return node.next
