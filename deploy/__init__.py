"""Deployment tools: `make preflight` (read-only checks) and `make verify-live` (sandbox acceptance run)."""
