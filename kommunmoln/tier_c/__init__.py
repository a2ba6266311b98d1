"""Tier C: an External Key Store (XKS) proxy that keeps the keys in the municipality's own HSM.

AWS KMS sends every use of a key in an external key store to this proxy (XKS Proxy API v1,
aws/aws-kms-xksproxy-api-spec). The proxy authenticates KMS with SigV4 (service `kms-xks-proxy`),
checks its own per-key rules and kill switch, and does AES-256-GCM inside the HSM over PKCS#11.
"""
