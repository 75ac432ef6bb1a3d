"""Hyperparameter search over the training config with Optuna (``python -m nsclc_engine.tune``):
every trial an ordinary run, the objective a validation metric, the best trial's test part
scored once at the end."""
