"""NSCLC engine: Lung1 ingestion, preprocessing, training and evaluation of CT survival models.

Packages in data-flow order (ARCHITECTURE.md): ``cohort`` and ``synth`` (data in),
``preprocess``, ``train``, ``evaluate`` (over ``stats``), ``explain`` and ``dashboard``; the run
folder is ``runs``. Pure computation with a thin file layer; it never imports streamlit.
"""

__version__ = "0.1.0"
