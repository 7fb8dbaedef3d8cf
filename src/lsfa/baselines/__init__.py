"""Baselines beside the LS taggers: the generative IFT model and the spaCy peer."""
