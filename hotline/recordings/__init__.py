"""Compliance recordings: the store (ingest, integrity, retention), its HTTP API and ingest."""
