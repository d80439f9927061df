"""The live tier: see tests/README.md."""
