"""Tier C custom resource handlers: the KMS external key store (XKS), its endpoint service DNS and its key."""
