"""Hotline's shared package: configuration, database, logging and the CLI.

The caller side lives in :mod:`ivr`, the agent side in :mod:`cti`.
"""

__version__ = "0.1.0"
