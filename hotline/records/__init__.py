"""Shared records every feature reads: customers, interactions, users and the audit log."""
