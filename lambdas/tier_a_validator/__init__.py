"""Tier A validator: checks that every new object is a client-side-encrypted ESDK message."""
