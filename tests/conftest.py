"""What every tier needs: the tier markers, the repository, the demo configuration.

The tiers are folders (tests/README.md): each test is marked ``unit``,
``integration`` or ``live`` by the folder it is in, and live tests are also
marked ``asterisk``.  Database, broker and Asterisk fixtures are in the
conftest.py of the tier that uses them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Helpers in tests/support assert too: let pytest explain their failures.
pytest.register_assert_rewrite("tests.support")

from hotline.config import Config, load_config  # noqa: E402
from tests.support.paths import REPO  # noqa: E402

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "live")


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not item.path.resolve().is_relative_to(TESTS):
            continue
        parts = item.path.resolve().relative_to(TESTS).parts
        tier = parts[0] if len(parts) > 1 else None
        if tier not in TIERS:
            raise pytest.UsageError(
                f"{item.nodeid}: a test belongs in tests/unit, tests/integration or tests/live"
            )
        item.add_marker(tier)
        if tier == "live":
            item.add_marker("asterisk")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo_config() -> Config:
    return load_config(REPO / "hotline.toml", environ={})
