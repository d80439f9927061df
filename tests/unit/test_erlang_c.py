"""hotline.erlang_c against worked examples and an independent exact computation.

The reference is the textbook formula evaluated in exact rational arithmetic
(``fractions.Fraction`` and ``math.factorial``), so it shares no code, and no
floating-point behaviour, with the Erlang B recurrence under test.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import TypedDict

import pytest

from hotline.erlang_c import (
    DEFAULT_AHT_S,
    QueueHistory,
    WaitEstimate,
    average_speed_of_answer,
    erlang_c,
    estimate_wait,
    service_level,
    spoken_minutes,
)


def direct_erlang_c(agents: int, traffic: Fraction) -> Fraction:
    """C(N, A) = A^N/N! · N/(N-A) / (Σ_{k<N} A^k/k! + A^N/N! · N/(N-A)), exactly."""
    assert agents > traffic
    head = sum((traffic**k / math.factorial(k) for k in range(agents)), Fraction(0))
    tail = traffic**agents / math.factorial(agents) * Fraction(agents) / (agents - traffic)
    return tail / (head + tail)


# --- Worked example 1 ----------------------------------------------------------------------
# Call Centre Helper, "Erlang C Formula – Made Simple With an Easy Worked Example":
# 100 calls per 30 minutes, AHT 180 s, target 80 % answered in 20 s.
# λ = 100/1800 = 1/18 calls/s, A = λ·AHT = 10 Erlangs; the article starts at N = A + 1 = 11.
# Figures below are recomputed exactly with direct_erlang_c (rounded to 4 places):
#   N   P(wait)  ASA (s)  SL(20 s)
#   11  0.6821   122.78   0.3896
#   12  0.4494    40.44   0.6402
#   13  0.2853    17.12   0.7956
#   14  0.1741     7.84   0.8884   <- first N meeting 80/20
EX1_RATE = 100 / 1800
EX1_AHT = 180.0
EX1_TABLE = [
    (11, 0.6821, 122.78, 0.3896),
    (12, 0.4494, 40.44, 0.6402),
    (13, 0.2853, 17.12, 0.7956),
    (14, 0.1741, 7.84, 0.8884),
]

# --- Worked example 2 ----------------------------------------------------------------------
# The widely copied "The Erlang-C Formula" step-by-step page: 360 calls per half hour,
# average call duration 4 minutes (240 s), 55 agents, service-level target 15 s.
# λ = 0.2 calls/s, A = 48 Erlangs, occupancy 48/55 = 87.3 %.  Recomputed exactly:
#   P(wait) = 0.2387, ASA = 0.2387 · 240 / 7 = 8.18 s, SL(15 s) = 1 - C·e^(-7·15/240) = 0.8459.
EX2_RATE = 360 / 1800
EX2_AHT = 240.0


@pytest.mark.parametrize(("agents", "p_wait", "asa", "sl20"), EX1_TABLE)
def test_worked_example_call_centre_helper(
    agents: int, p_wait: float, asa: float, sl20: float
) -> None:
    traffic = EX1_RATE * EX1_AHT
    assert traffic == pytest.approx(10.0)
    assert erlang_c(agents, traffic) == pytest.approx(p_wait, abs=5e-5)
    assert average_speed_of_answer(agents, EX1_RATE, EX1_AHT) == pytest.approx(asa, abs=5e-3)
    assert service_level(agents, EX1_RATE, EX1_AHT, 20) == pytest.approx(sl20, abs=5e-5)


def test_worked_example_call_centre_helper_staffing() -> None:
    # The smallest N that answers 80 % within 20 s is 14.
    meets = [n for n in range(11, 30) if service_level(n, EX1_RATE, EX1_AHT, 20) >= 0.8]
    assert meets[0] == 14


def test_worked_example_360_calls_55_agents() -> None:
    traffic = EX2_RATE * EX2_AHT
    assert traffic == pytest.approx(48.0)
    c = erlang_c(55, traffic)
    assert c == pytest.approx(0.2387, abs=5e-5)
    assert c == pytest.approx(float(direct_erlang_c(55, Fraction(48))), rel=1e-12)
    assert average_speed_of_answer(55, EX2_RATE, EX2_AHT) == pytest.approx(8.18, abs=5e-3)
    assert service_level(55, EX2_RATE, EX2_AHT, 15) == pytest.approx(0.8459, abs=5e-5)
    # By hand from C: ASA = C·AHT/(N-A), SL = 1 - C·exp(-(N-A)·t/AHT).
    assert average_speed_of_answer(55, EX2_RATE, EX2_AHT) == pytest.approx(c * 240 / 7)
    assert service_level(55, EX2_RATE, EX2_AHT, 15) == pytest.approx(
        1 - c * math.exp(-7 * 15 / 240)
    )


@pytest.mark.parametrize(
    ("agents", "traffic"),
    [
        (1, Fraction(1, 2)),
        (2, Fraction(1)),
        (2, Fraction(3, 2)),
        (3, Fraction(5, 2)),
        (5, Fraction(2)),
        (11, Fraction(10)),
        (20, Fraction(39, 2)),
        (50, Fraction(40)),
        (100, Fraction(90)),
        (200, Fraction(180)),
        (200, Fraction(1999, 10)),
    ],
)
def test_erlang_c_matches_direct_formula(agents: int, traffic: Fraction) -> None:
    expected = float(direct_erlang_c(agents, traffic))
    assert erlang_c(agents, float(traffic)) == pytest.approx(expected, rel=1e-10)


def test_erlang_c_two_agents_by_hand() -> None:
    # N = 2, A = 1: head = 1 + 1 = 2, tail = 1/2 · 2/1 = 1, C = 1/3.
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)


@pytest.mark.parametrize("rho", [0.01, 0.25, 0.5, 0.8, 0.99])
def test_mm1_probability_of_waiting_is_rho(rho: float) -> None:
    assert erlang_c(1, rho) == pytest.approx(rho)
    # M/M/1: ASA = ρ/(μ - λ) = ρ·AHT/(1 - ρ).
    aht = 100.0
    assert average_speed_of_answer(1, rho / aht, aht) == pytest.approx(rho * aht / (1 - rho))


def test_erlang_c_large_agent_counts_do_not_overflow() -> None:
    # 200! and 180^200 overflow a float; the recurrence does not need them.
    with pytest.raises(OverflowError):
        float(180) ** 200  # why the direct formula is not used
    c = erlang_c(200, 180.0)
    assert 0.0 < c < 1.0
    assert math.isfinite(c)
    assert c == pytest.approx(float(direct_erlang_c(200, Fraction(180))), rel=1e-10)
    big = erlang_c(5000, 4900.0)
    assert 0.0 < big < 1.0


@pytest.mark.parametrize(("agents", "traffic"), [(0, 0.0), (0, 3.0), (1, 1.0), (5, 5.0), (5, 7.5)])
def test_erlang_c_unstable_is_one(agents: int, traffic: float) -> None:
    assert erlang_c(agents, traffic) == 1.0


def test_erlang_c_no_traffic_is_zero() -> None:
    assert erlang_c(1, 0.0) == 0.0
    assert erlang_c(30, 0.0) == 0.0


@pytest.mark.parametrize(("agents", "traffic"), [(-1, 1.0), (3, -0.1), (3, math.nan)])
def test_erlang_c_rejects_bad_input(agents: int, traffic: float) -> None:
    with pytest.raises(ValueError):
        erlang_c(agents, traffic)


def test_erlang_c_decreases_with_agents() -> None:
    values = [erlang_c(n, 10.0) for n in range(11, 40)]
    assert all(a > b for a, b in itertools.pairwise(values))


def test_asa_unstable_is_infinite() -> None:
    assert average_speed_of_answer(10, EX1_RATE, EX1_AHT) == math.inf  # N == A
    assert average_speed_of_answer(9, EX1_RATE, EX1_AHT) == math.inf
    assert average_speed_of_answer(0, EX1_RATE, EX1_AHT) == math.inf
    assert average_speed_of_answer(3, 0.0, EX1_AHT) == 0.0


def test_asa_rejects_bad_aht() -> None:
    with pytest.raises(ValueError):
        average_speed_of_answer(3, 0.01, 0.0)
    with pytest.raises(ValueError):
        service_level(3, 0.01, -1.0, 20)
    with pytest.raises(ValueError):
        service_level(3, 0.01, 100.0, -1.0)


def test_service_level_monotonic_in_agents() -> None:
    levels = [service_level(n, EX2_RATE, EX2_AHT, 20) for n in range(44, 80)]
    assert levels[:5] == [0.0] * 5  # N <= A = 48
    assert all(b >= a for a, b in itertools.pairwise(levels))
    assert all(b > a for a, b in itertools.pairwise(levels[5:]))
    assert levels[-1] == pytest.approx(1.0, abs=1e-5)
    assert all(0.0 <= x <= 1.0 for x in levels)


def test_service_level_edges() -> None:
    # Target 0 s: SL = 1 - C (only calls answered immediately).
    c = erlang_c(12, 10.0)
    assert service_level(12, EX1_RATE, EX1_AHT, 0) == pytest.approx(1 - c)
    assert service_level(3, 0.0, EX1_AHT, 20) == 1.0


# --- estimate_wait ---------------------------------------------------------------------------

WAITS = [30.0, 60.0, 90.0, 120.0, 150.0]


def test_estimate_no_agents() -> None:
    est = estimate_wait(
        position=0,
        agents_staffed=0,
        agents_available=0,
        arrival_rate_per_s=0.1,
        aht_s=240.0,
        observed_waits_s=WAITS,
    )
    assert est.seconds == math.inf
    assert est.method == "no_agents"


@pytest.mark.parametrize(("aht", "method"), [(240.0, "erlang_c"), (None, "position")])
def test_estimate_free_agent_is_zero(aht: float | None, method: str) -> None:
    est = estimate_wait(
        position=1,
        agents_staffed=4,
        agents_available=2,
        arrival_rate_per_s=0.01,
        aht_s=aht,
        observed_waits_s=WAITS,
    )
    assert est == WaitEstimate(0.0, method, est.detail)
    assert est.seconds == 0.0
    assert "2 free" in est.detail


def test_estimate_free_agents_not_enough_for_position() -> None:
    # 2 free agents, 2 ahead: the free two take the two ahead at once; this caller
    # waits for the first of the 4 busy agents to finish: AHT / 4.
    est = estimate_wait(
        position=2,
        agents_staffed=4,
        agents_available=2,
        arrival_rate_per_s=0.01,
        aht_s=240.0,
        observed_waits_s=[],
    )
    assert est.method == "erlang_c"
    assert est.seconds == pytest.approx(1 * 240 / 4)


def test_estimate_erlang_c_stable() -> None:
    # 3 ahead, 2 agents, AHT 240 s: the 4th completion at rate 2/240 → 4·240/2 = 480 s.
    est = estimate_wait(
        position=3,
        agents_staffed=2,
        agents_available=0,
        arrival_rate_per_s=1 / 300,  # A = 0.8 E < 2
        aht_s=240.0,
        observed_waits_s=WAITS,
    )
    assert est.method == "erlang_c"
    assert est.seconds == pytest.approx(480.0)
    assert est.detail.startswith("3 ahead, 2 agents, AHT 240 s")
    assert "P(wait)" in est.detail
    assert f"{erlang_c(2, 0.8):.2f}" in est.detail


def test_estimate_erlang_c_example_queue() -> None:
    # Worked example 2 staffing: 55 agents, 10 callers ahead → 11·240/55 = 48 s.
    est = estimate_wait(
        position=10,
        agents_staffed=55,
        agents_available=0,
        arrival_rate_per_s=EX2_RATE,
        aht_s=EX2_AHT,
        observed_waits_s=[],
    )
    assert est.method == "erlang_c"
    assert est.seconds == pytest.approx(48.0)
    assert "load 48.0 E" in est.detail


def test_estimate_erlang_c_unstable_says_so() -> None:
    est = estimate_wait(
        position=5,
        agents_staffed=2,
        agents_available=0,
        arrival_rate_per_s=0.01,  # A = 2.4 E >= 2 agents
        aht_s=240.0,
        observed_waits_s=WAITS,
    )
    assert est.method == "erlang_c"
    assert est.seconds == pytest.approx(6 * 240 / 2)
    assert "overloaded" in est.detail


def test_estimate_aht_known_rate_unknown() -> None:
    est = estimate_wait(
        position=1,
        agents_staffed=3,
        agents_available=0,
        arrival_rate_per_s=None,
        aht_s=300.0,
        observed_waits_s=WAITS,
    )
    assert est.method == "position"
    assert est.seconds == pytest.approx(2 * 300 / 3)
    assert "arrival rate unknown" in est.detail


def test_estimate_observed_mean() -> None:
    est = estimate_wait(
        position=7,
        agents_staffed=3,
        agents_available=0,
        arrival_rate_per_s=0.02,
        aht_s=None,
        observed_waits_s=WAITS,
    )
    assert est.method == "observed"
    assert est.seconds == pytest.approx(90.0)  # mean of 30..150, independent of position


def test_estimate_observed_uses_last_twenty() -> None:
    waits = [1000.0] * 10 + [float(i) for i in range(1, 21)]  # old outliers, then 1..20
    est = estimate_wait(
        position=0,
        agents_staffed=1,
        agents_available=0,
        arrival_rate_per_s=None,
        aht_s=None,
        observed_waits_s=waits,
    )
    assert est.method == "observed"
    assert est.seconds == pytest.approx(10.5)
    assert "20" in est.detail


class Situation(TypedDict):
    """What estimate_wait is told of a queue, but the waits it observed."""

    position: int
    agents_staffed: int
    agents_available: int
    arrival_rate_per_s: float | None
    aht_s: float | None


class EstimateKeywords(TypedDict, total=False):
    """estimate_wait's keywords, any of them: a test's arguments and their overrides."""

    position: int
    agents_staffed: int
    agents_available: int
    arrival_rate_per_s: float | None
    aht_s: float | None
    observed_waits_s: list[float]


def test_estimate_observed_needs_min_samples() -> None:
    kwargs: Situation = {
        "position": 2,
        "agents_staffed": 2,
        "agents_available": 0,
        "arrival_rate_per_s": None,
        "aht_s": None,
    }
    few = estimate_wait(observed_waits_s=WAITS[:4], **kwargs)
    assert few.method == "position"
    enough = estimate_wait(observed_waits_s=WAITS[:4], min_samples=4, **kwargs)
    assert enough.method == "observed"
    assert enough.seconds == pytest.approx(75.0)


def test_estimate_nothing_known_uses_default_aht() -> None:
    est = estimate_wait(
        position=2,
        agents_staffed=2,
        agents_available=0,
        arrival_rate_per_s=0.01,
        aht_s=None,
        observed_waits_s=[],
    )
    assert est.method == "position"
    assert est.seconds == pytest.approx(3 * DEFAULT_AHT_S / 2) == 270.0
    assert "default" in est.detail


@pytest.mark.parametrize(
    "kwargs",
    [
        {"position": -1},
        {"agents_staffed": -1},
        {"agents_available": -1},
        {"aht_s": 0.0},
        {"aht_s": math.inf},
        {"arrival_rate_per_s": -0.1},
    ],
)
def test_estimate_rejects_bad_input(kwargs: EstimateKeywords) -> None:
    args: EstimateKeywords = {
        "position": 0,
        "agents_staffed": 1,
        "agents_available": 0,
        "arrival_rate_per_s": 0.001,
        "aht_s": 100.0,
        "observed_waits_s": [],
    }
    args.update(kwargs)
    with pytest.raises(ValueError):
        estimate_wait(**args)


def test_wait_estimate_is_frozen_and_checked() -> None:
    est = WaitEstimate(12.0, "none", "queue not monitored")
    with pytest.raises(AttributeError):
        est.seconds = 1.0  # type: ignore[misc]  # on purpose: the frozen dataclass refuses it
    with pytest.raises(ValueError):
        WaitEstimate(1.0, "guess", "")


# --- spoken_minutes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "minutes"),
    [
        (0.0, 1),
        (1.0, 1),
        (59.9, 1),
        (60.0, 1),
        (60.001, 2),
        (119.0, 2),
        (120.0, 2),
        (121.0, 3),
        (180.00000000000003, 3),  # float noise does not add a minute
        (0.1 * 3 * 600, 3),
        (3600.0, 60),
    ],
)
def test_spoken_minutes(seconds: float, minutes: int) -> None:
    assert spoken_minutes(seconds) == minutes


@pytest.mark.parametrize("seconds", [math.inf, math.nan, -1.0])
def test_spoken_minutes_rejects(seconds: float) -> None:
    with pytest.raises(ValueError):
        spoken_minutes(seconds)


# --- QueueHistory ----------------------------------------------------------------------------


def test_history_aht_needs_min_samples_and_keeps_last_fifty() -> None:
    h = QueueHistory()
    assert h.aht_s() is None
    for i in range(4):
        h.record_completed(100.0, at=float(i))
    assert h.aht_s() is None
    assert h.aht_s(min_samples=4) == pytest.approx(100.0)
    h.record_completed(200.0, at=4.0)
    assert h.aht_s() == pytest.approx(120.0)
    for i in range(50):
        h.record_completed(300.0, at=10.0 + i)
    assert h.aht_s() == pytest.approx(300.0)  # the 100s and the 200 fell out


def test_history_aht_zero_mean_is_unknown() -> None:
    h = QueueHistory()
    for i in range(5):
        h.record_completed(0.0, at=float(i))
    assert h.aht_s() is None


def test_history_recent_waits_last_twenty() -> None:
    h = QueueHistory()
    assert h.recent_waits() == []
    for i in range(25):
        h.record_answered(float(i), at=float(i))
    assert h.recent_waits() == [float(i) for i in range(5, 25)]


def test_history_arrival_rate_window() -> None:
    h = QueueHistory()
    assert h.arrival_rate_per_s(now=1000.0) is None
    h.record_arrival(500.0)
    assert h.arrival_rate_per_s(now=1000.0) is None  # fewer than 2
    for t in range(510, 1000, 10):  # 49 more, every 10 s
        h.record_arrival(float(t))
    # 50 arrivals in (100, 1000] over a 900 s window.
    assert h.arrival_rate_per_s(now=1000.0) == pytest.approx(50 / 900)
    # A 100 s window (900, 1000]: 910..990 → 9 arrivals.
    assert h.arrival_rate_per_s(now=1000.0, window_s=100) == pytest.approx(9 / 100)
    # Later, the old arrivals age out: (1400, 2300] holds nothing.
    assert h.arrival_rate_per_s(now=2300.0) is None
    # Window start is exclusive, end inclusive; future stamps are ignored.
    assert h.arrival_rate_per_s(now=990.0, window_s=10) is None  # only 990
    assert h.arrival_rate_per_s(now=990.0, window_s=10.5) == pytest.approx(2 / 10.5)
    assert h.arrival_rate_per_s(now=505.0, window_s=900) is None  # 510.. are in the future


def test_history_arrivals_bounded() -> None:
    h = QueueHistory(max_arrivals=100)
    for i in range(1000):
        h.record_arrival(float(i))
    assert h.arrival_rate_per_s(now=999.0, window_s=900) == pytest.approx(100 / 900)


def test_history_rejects_bad_values() -> None:
    h = QueueHistory()
    with pytest.raises(ValueError):
        h.record_completed(-1.0, at=0.0)
    with pytest.raises(ValueError):
        h.record_answered(math.nan, at=0.0)
    with pytest.raises(ValueError):
        h.arrival_rate_per_s(now=0.0, window_s=0)
    with pytest.raises(ValueError):
        QueueHistory(max_arrivals=1)


def test_history_feeds_estimate() -> None:
    h = QueueHistory()
    for i in range(20):
        h.record_arrival(float(i * 30))  # one call every 30 s
        h.record_completed(120.0, at=float(i * 30 + 5))
        h.record_answered(45.0, at=float(i * 30 + 1))
    est = estimate_wait(
        position=1,
        agents_staffed=6,
        agents_available=0,
        arrival_rate_per_s=h.arrival_rate_per_s(now=600.0),
        aht_s=h.aht_s(),
        observed_waits_s=h.recent_waits(),
    )
    assert est.method == "erlang_c"
    assert est.seconds == pytest.approx(2 * 120 / 6)
    assert spoken_minutes(est.seconds) == 1


def test_history_counts_arrivals_recorded_out_of_order() -> None:
    h = QueueHistory(max_arrivals=4)
    for at in (10.0, 30.0, 20.0, 25.0):  # events can be folded in a different order
        h.record_arrival(at)
    assert h.arrival_rate_per_s(now=30.0, window_s=15) == pytest.approx(3 / 15)  # 20, 25, 30
    h.record_arrival(5.0)  # full: the oldest goes, the late one is kept in order
    assert h.arrival_rate_per_s(now=30.0, window_s=30) == pytest.approx(4 / 30)
