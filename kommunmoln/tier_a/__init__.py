"""Tier A: client-side encryption with keys only the municipality holds (the `kommunmoln` client)."""
