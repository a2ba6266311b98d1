"""Custom resource provider for tier B: HSMs, the KMS custom key store and the key in it."""
