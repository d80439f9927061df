"""``hotline mqtt users``: broker users, passwords and ACL for the agents' screen pops."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from hotline.cli._common import command, fail, group
from hotline.config import Config

if TYPE_CHECKING:
    from hotline.cli._common import Subparsers

DEFAULT_AGENTS = ["1001", "1002", "1003"]


def register(sub: Subparsers) -> None:
    mqtt = group(sub, "mqtt", "MQTT broker set-up", dest="m")
    s = command(
        mqtt, "users", cmd_mqtt_users, "write broker users, passwords and ACL for the agents"
    )
    s.add_argument("--out", default=".run/mosquitto", help="folder for the broker files")
    s.add_argument("--agent", action="append", help="agent number (repeat; default 1001-1003)")
    s.add_argument("--port", type=int, default=1883)


def cmd_mqtt_users(cfg: Config, args: argparse.Namespace) -> int:
    from cti.broker import BrokerConfigError, write_broker_files

    out = Path(args.out)
    try:
        users = write_broker_files(
            out, args.agent or list(DEFAULT_AGENTS), args.port, cfg.mqtt.prefix
        )
    except BrokerConfigError as e:
        return fail(f"error: {e}")
    print(f"wrote {out / 'mosquitto.conf'}, {out / 'passwd'}, {out / 'acl'}")
    print(f"passwords for {', '.join(users)} are in {out / 'credentials.json'} (mode 600)")
    print(f"start the broker: mosquitto -c {out / 'mosquitto.conf'}")
    print('and give Hotline: [mqtt] username = "hotline-server", password_file = ...')
    return 0
