"""Queue wait estimates (callers ahead × AHT / agents) and the Erlang C formulas.

The wait a new caller is told (:func:`estimate_wait`) is a position estimate:
``(position − free + 1) · AHT / N``, the callers ahead of them (less the free
agents, plus themselves) times the average handle time over the staffed
agents.  It is *not* computed with Erlang C and does not use the arrival
rate; Erlang C (:func:`erlang_c`) gives only the probability of waiting,
which the estimate's ``detail`` reports beside it, and :func:`average_speed_of_answer`
and :func:`service_level`, which no estimate uses.  The method name
``"erlang_c"`` (an MQTT contract value, ``est_wait_method``) means "position ×
AHT / N, with the arrival rate known", not that the figure is Erlang C's.

Used for the queue statistics (``est_wait_s``) and by the IVR "deflect" step,
which offers an SMS link or a callback when the wait is long.  Pure functions
and one small rolling-statistics class; no I/O, no clock, no dependencies.

The model (M/M/N, "Erlang C")
-----------------------------
Notation: ``N`` staffed agents, arrival rate ``λ`` (calls/s), average handle
time ``AHT`` (s), offered traffic ``A = λ·AHT`` (Erlangs).

- Probability an arriving call waits::

      C(N, A) = (A^N/N! · N/(N-A)) / (Σ_{k<N} A^k/k! + A^N/N! · N/(N-A))

  computed without factorials: the Erlang B recurrence
  ``B(0) = 1, B(k) = A·B(k-1) / (k + A·B(k-1))`` then
  ``C = B / (1 - (A/N)(1 - B))``.  ``C = 1`` when ``N <= A`` (the queue grows
  without bound) and ``C = 0`` when ``A = 0``.
- Average speed of answer: ``ASA = C · AHT / (N - A)`` (``inf`` when ``N <= A``).
- Service level (share answered within ``t`` s):
  ``SL = 1 - C · exp(-(N - A) · t / AHT)`` (``0`` when ``N <= A``).

Assumptions, all of them optimistic or simplifying: Poisson arrivals,
exponentially distributed handle times, no abandonment (nobody hangs up),
first-in-first-out, and every staffed agent serves this queue only.

The estimate a new caller hears (:func:`estimate_wait`)
-------------------------------------------------------
``position`` is the number of callers already waiting ahead of the new one.
The rules, first match wins:

1. ``agents_staffed == 0``: ``inf``, method ``"no_agents"`` (the flow says "no
   agent is available" rather than a number).
2. ``agents_available > position``: ``0`` s, an agent is free for this caller;
   method ``"erlang_c"`` if the AHT is known, else ``"position"``.
3. AHT known (the caller passes ``None`` unless it comes from at least
   ``min_samples`` completed calls) and arrival rate known:
   ``(position − free + 1) · AHT / N`` (the position estimate; the method is
   labelled ``"erlang_c"`` only because the arrival rate, hence the load and
   ``C(N, A)`` in the detail, is known).  With all ``N`` agents busy,
   completions occur at rate ``N/AHT`` (exponential handle times are
   memoryless); the ``free`` agents take the first callers ahead at once and
   the caller is answered at the ``(position − free + 1)``-th completion, so
   this is the conditional expected wait under M/M/N.  The detail reports
   the load and ``C(N, A)``; if the queue is unstable
   (``A >= N``) the same figure is used and the detail says "overloaded" (the
   line keeps growing, so it is a lower bound).
4. AHT known, arrival rate unknown: the same ``(position − free + 1) · AHT / N``,
   method ``"position"``.
5. AHT unknown, at least ``min_samples`` observed answered waits: the mean of
   the last 20 of them, method ``"observed"`` (deliberately not scaled by
   position: the recent mean already reflects a typical queue).
6. Nothing known: ``(position − free + 1) · 180 / N`` with a default AHT of 180 s,
   method ``"position"``; the detail says the AHT is a default.

Method ``"none"`` is reserved for callers that have no estimate at all (say, a
queue that is not monitored); :func:`estimate_wait` never returns it.  Nothing
is rounded here; :func:`spoken_minutes` does the rounding for prompts.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_AHT_S",
    "METHODS",
    "RECENT_WAITS",
    "TALK_SAMPLES",
    "QueueHistory",
    "WaitEstimate",
    "average_speed_of_answer",
    "erlang_c",
    "estimate_wait",
    "service_level",
    "spoken_minutes",
]

DEFAULT_AHT_S = 180.0
"""AHT assumed when nothing has been measured yet (3 minutes)."""

RECENT_WAITS = 20
"""How many recent answered waits the "observed" estimate averages."""

TALK_SAMPLES = 50
"""How many recent talk times the AHT averages."""

METHODS = frozenset({"no_agents", "erlang_c", "observed", "position", "none"})


def _check_count(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def _check_aht(aht_s: float) -> None:
    if not (aht_s > 0 and math.isfinite(aht_s)):
        raise ValueError(f"aht_s must be a positive finite number, got {aht_s}")


def _check_rate(arrival_rate_per_s: float) -> None:
    if not arrival_rate_per_s >= 0:  # also rejects NaN
        raise ValueError(f"arrival_rate_per_s must be >= 0, got {arrival_rate_per_s}")


def erlang_c(agents: int, traffic_erlangs: float) -> float:
    """Probability that an arriving call has to wait (Erlang C).

    1.0 when ``agents <= traffic_erlangs`` (including no agents at all), 0.0
    when there is no traffic.  Stable for any number of agents: no factorials
    or powers, only the Erlang B recurrence, whose terms stay in [0, 1].
    """
    _check_count("agents", agents)
    if not traffic_erlangs >= 0:
        raise ValueError(f"traffic_erlangs must be >= 0, got {traffic_erlangs}")
    if agents <= traffic_erlangs:
        return 1.0
    if traffic_erlangs == 0:
        return 0.0
    a = traffic_erlangs
    b = 1.0
    for k in range(1, agents + 1):
        b = a * b / (k + a * b)
    return b / (1.0 - (a / agents) * (1.0 - b))


def average_speed_of_answer(agents: int, arrival_rate_per_s: float, aht_s: float) -> float:
    """Mean wait over all calls (answered at once or not): ``C · AHT / (N - A)``.

    ``math.inf`` when ``N <= A``.
    """
    _check_count("agents", agents)
    _check_rate(arrival_rate_per_s)
    _check_aht(aht_s)
    traffic = arrival_rate_per_s * aht_s
    if agents <= traffic:
        return math.inf
    return erlang_c(agents, traffic) * aht_s / (agents - traffic)


def service_level(agents: int, arrival_rate_per_s: float, aht_s: float, target_s: float) -> float:
    """Share of calls answered within ``target_s``: ``1 - C · exp(-(N - A) · t / AHT)``.

    0.0 when ``N <= A`` (in the long run almost nobody is answered in time).
    """
    _check_count("agents", agents)
    _check_rate(arrival_rate_per_s)
    _check_aht(aht_s)
    if not target_s >= 0:
        raise ValueError(f"target_s must be >= 0, got {target_s}")
    traffic = arrival_rate_per_s * aht_s
    if agents <= traffic:
        return 0.0
    c = erlang_c(agents, traffic)
    return 1.0 - c * math.exp(-(agents - traffic) * target_s / aht_s)


@dataclass(frozen=True, slots=True)
class WaitEstimate:
    """What a caller is told.

    ``seconds`` is ``math.inf`` when no agent can answer; ``method`` is one of
    :data:`METHODS`; ``detail`` is a short explanation for logs and dashboards.
    """

    seconds: float
    method: str
    detail: str

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {sorted(METHODS)}")


def _agents(n: int) -> str:
    return f"{n} agent" if n == 1 else f"{n} agents"


def estimate_wait(
    *,
    position: int,
    agents_staffed: int,
    agents_available: int,
    arrival_rate_per_s: float | None,
    aht_s: float | None,
    observed_waits_s: Sequence[float],
    min_samples: int = 5,
) -> WaitEstimate:
    """Expected wait for a caller joining behind ``position`` waiting callers.

    ``(position − free + 1) · AHT / N`` whenever an AHT is known, whatever the
    method label; Erlang C only enters the ``detail`` (P(wait)).  See the
    module docstring for the rules and their assumptions.
    ``aht_s`` must be ``None`` unless it was measured over at least
    ``min_samples`` completed calls (:meth:`QueueHistory.aht_s` does that).
    """
    _check_count("position", position)
    _check_count("agents_staffed", agents_staffed)
    _check_count("agents_available", agents_available)
    if aht_s is not None:
        _check_aht(aht_s)
    if arrival_rate_per_s is not None:
        _check_rate(arrival_rate_per_s)

    if agents_staffed == 0:
        return WaitEstimate(math.inf, "no_agents", "no agents staffed")

    n = agents_staffed
    if agents_available > position:
        return WaitEstimate(
            0.0,
            "erlang_c" if aht_s is not None else "position",
            f"{position} ahead, {agents_available} free of {_agents(n)}",
        )

    # Free agents take the first callers ahead at once; the caller then waits
    # for the rest ahead of them, plus one, to finish at N/AHT completions a second.
    served_after = position - agents_available + 1
    if aht_s is not None:
        seconds = served_after * aht_s / n
        base = f"{position} ahead, {_agents(n)}, AHT {aht_s:.0f} s"
        if arrival_rate_per_s is None:
            return WaitEstimate(seconds, "position", f"{base}, arrival rate unknown")
        traffic = arrival_rate_per_s * aht_s
        if traffic >= n:
            return WaitEstimate(
                seconds, "erlang_c", f"{base}, overloaded: load {traffic:.1f} E >= {n}"
            )
        c = erlang_c(n, traffic)
        return WaitEstimate(seconds, "erlang_c", f"{base}, load {traffic:.1f} E, P(wait) {c:.2f}")

    if len(observed_waits_s) >= min_samples:
        recent = list(observed_waits_s)[-RECENT_WAITS:]
        mean = math.fsum(recent) / len(recent)
        return WaitEstimate(mean, "observed", f"mean of last {len(recent)} answered waits")

    return WaitEstimate(
        served_after * DEFAULT_AHT_S / n,
        "position",
        f"{position} ahead, {_agents(n)}, default AHT {DEFAULT_AHT_S:.0f} s",
    )


def spoken_minutes(seconds: float) -> int:
    """Whole minutes to announce: rounded up, at least 1.

    Floating-point noise (``180.00000000000003`` s) does not add a minute.
    Raises :class:`ValueError` for ``inf`` (the flow says "no agent is
    available" instead), NaN and negative values.
    """
    if math.isinf(seconds) or math.isnan(seconds):
        raise ValueError(f"no finite wait to announce: {seconds}")
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    return max(1, math.ceil(round(seconds / 60.0, 9)))


class QueueHistory:
    """Rolling queue statistics fed by the CTI; bounded memory.

    Timestamps ``at`` are seconds on one clock (``time.monotonic()`` or epoch);
    only differences matter.  Keeps the last :data:`RECENT_WAITS` answered
    waits, the last :data:`TALK_SAMPLES` talk times and the last
    ``max_arrivals`` arrival times.  The arrival rate saturates at
    ``max_arrivals / window_s`` (10 000 per 15 min is about 11 calls/s).
    """

    __slots__ = ("_arrivals", "_talks", "_waits")

    def __init__(self, *, max_arrivals: int = 10_000) -> None:
        if max_arrivals < 2:
            raise ValueError(f"max_arrivals must be >= 2, got {max_arrivals}")
        self._waits: deque[tuple[float, float]] = deque(maxlen=RECENT_WAITS)
        self._talks: deque[tuple[float, float]] = deque(maxlen=TALK_SAMPLES)
        self._arrivals: deque[float] = deque(maxlen=max_arrivals)

    @staticmethod
    def _check_duration(name: str, value: float) -> None:
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")

    def record_answered(self, wait_s: float, at: float) -> None:
        """A queued call was answered after waiting ``wait_s``."""
        self._check_duration("wait_s", wait_s)
        self._waits.append((at, wait_s))

    def record_completed(self, talk_s: float, at: float) -> None:
        """A call ended after ``talk_s`` of handling (talk, hold and wrap-up)."""
        self._check_duration("talk_s", talk_s)
        self._talks.append((at, talk_s))

    def record_arrival(self, at: float) -> None:
        """A call joined the queue.

        Kept in time order, so the rate is two binary searches: it is read for
        every queue-stats message, i.e. on the CTI's per-event path.
        """
        arrivals = self._arrivals
        if not arrivals or at >= arrivals[-1]:
            arrivals.append(at)  # the usual case; maxlen drops the oldest
            return
        if len(arrivals) == arrivals.maxlen:
            arrivals.popleft()
        bisect.insort(arrivals, at)

    def aht_s(self, min_samples: int = 5) -> float | None:
        """Mean of the last 50 talk times; ``None`` with fewer than ``min_samples``.

        Also ``None`` if that mean is 0 (no usable handle time).
        """
        if len(self._talks) < max(1, min_samples):
            return None
        mean = math.fsum(talk for _, talk in self._talks) / len(self._talks)
        return mean if mean > 0 else None

    def arrival_rate_per_s(self, now: float, window_s: float = 900.0) -> float | None:
        """Arrivals in ``(now - window_s, now]`` divided by ``window_s``.

        ``None`` with fewer than 2 arrivals in the window.  Arrivals stamped
        after ``now`` are not counted.
        """
        if not (window_s > 0 and math.isfinite(window_s)):
            raise ValueError(f"window_s must be a positive finite number, got {window_s}")
        start = now - window_s
        count = bisect.bisect_right(self._arrivals, now) - bisect.bisect_right(
            self._arrivals, start
        )
        if count < 2:
            return None
        return count / window_s

    def recent_waits(self) -> list[float]:
        """The last 20 answered waits, oldest first."""
        return [wait for _, wait in self._waits]
