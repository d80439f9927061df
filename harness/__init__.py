"""Test and demo harness: sipp callers and agents, throwaway databases, the demo script.

Not part of the server: nothing under hotline/, ivr/ or cti/ imports it.
"""
