"""The demo configuration passes check-config once the sandbox wrote its AMI secret."""

from __future__ import annotations

import subprocess
from pathlib import Path


def test_demo_config_is_valid(repo: Path, asterisk: None) -> None:
    # The sandbox writes the AMI secret the demo config points at.
    r = subprocess.run(
        [str(repo / ".venv/bin/hotline"), "check-config"], cwd=repo, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    from ivr.flow.loader import load_flows

    nodes = len(load_flows(repo / "dialplans")["hotline"].nodes)
    assert f"flow hotline: {nodes} nodes, languages en, ko" in r.stdout
