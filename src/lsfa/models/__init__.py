"""lsfa.models."""
