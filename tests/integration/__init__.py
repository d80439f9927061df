"""The integration tier: see tests/README.md."""
