"""lsfa taggers inside other tools: a spaCy pipeline component (``lsfa_ner``)."""
