"""Tier B object validator: SSE-KMS with the stack's key and a bucket key, or quarantine."""
