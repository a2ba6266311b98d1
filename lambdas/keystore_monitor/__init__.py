"""Scheduled health check of the tier B key store, cluster and key."""
