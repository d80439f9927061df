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
TEMPLATE = Path(__file__).resolve().parents[2] / "broker-config" / "mosquitto.conf.in"


def register(sub: Subparsers) -> None:
    mqtt = group(sub, "mqtt", "MQTT broker set-up", dest="m")
    s = command(
        mqtt, "users", cmd_mqtt_users, "write broker users, passwords and ACL for the agents"
    )
    s.add_argument(
        "--out", help="folder for the broker files (default .run/mosquitto; --project: .run/broker)"
    )
    s.add_argument(
        "--agent", action="append", help="agent number (repeat; default 1001-1003, or [broker])"
    )
    s.add_argument("--port", type=int, default=1883)
    p = s.add_argument_group("the project broker (Mosquitto 2.1, docs/mqtt.md)")
    p.add_argument(
        "--project",
        action="store_true",
        help="write the project broker's files: its mosquitto.conf from the template, with "
        "[broker]'s ports and origins, and the dynamic security admin's password",
    )
    p.add_argument("--template", type=Path, default=TEMPLATE, help="the config template")
    p.add_argument(
        "--broker-dir", help="the output folder as the broker sees it (default: the folder)"
    )
    p.add_argument(
        "--plugin-dir",
        default="/usr/lib/x86_64-linux-gnu/mosquitto",
        help="where the broker's plugins are",
    )
    p.add_argument("--run-as", default="mosquitto", help="the user the broker runs as")
    p.add_argument(
        "--keep", action="store_true", help="users already in credentials.json keep their passwords"
    )


def cmd_mqtt_users(cfg: Config, args: argparse.Namespace) -> int:
    from cti.broker import BrokerConfigError, write_broker_files

    if args.project:
        return _project(cfg, args)
    out = Path(args.out or ".run/mosquitto")
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


def _project(cfg: Config, args: argparse.Namespace) -> int:
    from cti.broker import BrokerConfigError, ProjectBroker, write_project_broker

    b = cfg.broker
    out = Path(args.out) if args.out else cfg.path(b.server_password_file).parent
    broker = ProjectBroker(
        tcp_port=b.port,
        websocket_port=b.websocket_port,
        bind=b.host,
        websocket_origins=tuple(b.websocket_origins),
        broker_dir=args.broker_dir,
        plugin_dir=args.plugin_dir,
        run_as=args.run_as,
    )
    try:
        users = write_project_broker(
            out,
            args.template,
            args.agent or list(b.agents),
            broker,
            cfg.mqtt.prefix,
            b.server_username,
            keep=args.keep,
        )
    except BrokerConfigError as e:
        return fail(f"error: {e}")
    print(f"wrote {out / 'mosquitto.conf'} (TCP {b.host}:{b.port}, WebSockets :{b.websocket_port})")
    print(f"logins for {', '.join(users)}: {out / 'credentials.json'} (mode 600)")
    return 0
