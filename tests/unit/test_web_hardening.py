"""What a client without a session can cost the server, and password hashing off the loop.

Sessions are swept and capped, failed logins are counted in bounded memory,
and Argon2 runs in threads of its own: a login never waits behind the prompt
renderer's executor (or the other way round).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hotline.records.users import Actor, Users
from hotline.storage.db import Database
from hotline.web import LoginLimits, LoginThrottle, Sessions

CAROL = Actor("carol", frozenset({"compliance"}))
DAVE = Actor("dave", frozenset({"compliance"}))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_expired_sessions_are_swept_when_new_ones_open() -> None:
    clock = Clock()
    sessions = Sessions(60, clock=clock)
    old = [sessions.open(CAROL)[0] for _ in range(10)]
    assert len(sessions) == 10
    clock.now += 61  # all ten expired; nobody looks them up again
    fresh, _ = sessions.open(DAVE)
    assert len(sessions) == 1, "expired sessions must not stay in memory until looked up"
    assert sessions.lookup(fresh) == (DAVE, False)
    # Their owners are still told why, not "no valid session".
    assert sessions.lookup(old[0]) == (None, True)


def test_sessions_are_capped_per_user_and_in_all() -> None:
    sessions = Sessions(3600, max_per_user=3, max_total=5, clock=Clock())
    carol = [sessions.open(CAROL)[0] for _ in range(4)]
    # Carol's fourth login ends her oldest session, not anyone else's.
    assert sessions.lookup(carol[0]) == (None, False)
    assert all(sessions.lookup(t)[0] == CAROL for t in carol[1:])
    dave = [sessions.open(DAVE)[0] for _ in range(3)]
    assert len(sessions) == 5  # the server's cap: the oldest session overall went
    assert sessions.lookup(carol[1]) == (None, False)
    assert all(sessions.lookup(t)[0] == DAVE for t in dave)


def test_failed_logins_lock_a_name_then_the_window_lets_it_go() -> None:
    clock = Clock()
    throttle = LoginThrottle(LoginLimits(per_name=5, per_address=20, window_s=300), clock)
    for i in range(5):
        assert throttle.begin("carol", f"10.0.0.{i}")[0] == 0  # five guesses from five hosts
        clock.now += 1
    wait, _ = throttle.begin("carol", "10.0.0.99")
    assert 290 < wait <= 296  # until the first failure leaves the five-minute window
    assert throttle.begin("dave", "10.0.0.99")[0] == 0  # other names are not locked
    clock.now += 300
    assert throttle.begin("carol", "10.0.0.99")[0] == 0


def test_a_success_clears_the_name_and_does_not_count_against_the_address() -> None:
    throttle = LoginThrottle(LoginLimits(per_name=3, per_address=4), Clock())
    for _ in range(2):
        throttle.begin("carol", "10.0.0.1")
    _, started = throttle.begin("carol", "10.0.0.1")
    throttle.succeeded("carol", "10.0.0.1", started)  # the third try was right
    for _ in range(2):
        assert throttle.begin("carol", "10.0.0.1")[0] == 0
    # Four attempts from the address failed (the success was taken back): it is locked.
    assert throttle.begin("erin", "10.0.0.1")[0] > 0


def test_the_throttle_remembers_a_bounded_number_of_names_and_addresses() -> None:
    clock = Clock()
    throttle = LoginThrottle(LoginLimits(max_tracked=1000), clock)
    for i in range(50_000):  # a spray of names from many addresses
        throttle.begin(f"user{i}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert throttle.tracked() == (1000, 1000)


def test_logins_do_not_wait_for_the_default_executor(tmp_path: Path) -> None:
    """The IVR renders prompts in the loop's default executor; a login must not queue there."""

    async def scenario() -> tuple[float, set[str]]:
        loop = asyncio.get_running_loop()
        default = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prompts")
        loop.set_default_executor(default)
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}")
        await db.migrate()
        users = Users(db)
        await users.add("carol", "compliance", "carol-password-1")
        busy = threading.Event()
        release = threading.Event()

        def render() -> None:  # a prompt render that holds the only default thread
            busy.set()
            release.wait(30)

        held = loop.run_in_executor(None, render)
        while not busy.is_set():
            await asyncio.sleep(0.01)
        try:
            t0 = loop.time()
            results = await asyncio.wait_for(
                asyncio.gather(
                    users.authenticate("carol", "carol-password-1"),
                    users.authenticate("carol", "wrong-password"),
                    users.authenticate("nobody", "whatever-password"),
                ),
                10,
            )
            took = loop.time() - t0
        finally:
            release.set()
            await held
            await db.close()
        assert list(results) == [Actor("carol", frozenset({"compliance"})), None, None]
        return took, {t.name.split("_")[0] for t in threading.enumerate()}

    took, threads = asyncio.run(scenario())
    assert took < 5
    assert "argon2" in threads
