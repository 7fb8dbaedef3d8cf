"""lsfa.bench."""
