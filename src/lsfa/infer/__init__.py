"""lsfa.infer."""
