"""Hotline's kernel and entry points, and the features that belong to neither side.

Kernel: :mod:`hotline.config`, :mod:`hotline.logs`, :mod:`hotline.storage`,
:mod:`hotline.records`, :mod:`hotline.web`, :mod:`hotline.events`,
:mod:`hotline.contracts`.  Features: :mod:`hotline.recordings`,
:mod:`hotline.deflection`.  Entry points: :mod:`hotline.cli`, :mod:`hotline.app`
(the composition root).  The caller side lives in :mod:`ivr`, the agent side
in :mod:`cti`; docs/architecture.md draws the layers.
"""

__version__ = "0.1.0"
