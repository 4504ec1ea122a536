"""Signed, retried run callbacks: which addresses may be called, and how they are sent."""
