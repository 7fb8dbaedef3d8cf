"""lsfa.train."""
