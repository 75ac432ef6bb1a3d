"""Frozen-feature models: a pretrained encoder's features (FMCIB, MedicalNet) and a penalised
linear model on them, as a run (``python -m nsclc_engine.features``)."""
