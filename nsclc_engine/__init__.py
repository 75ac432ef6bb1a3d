"""NSCLC engine: Lung1 ingestion, preprocessing, training and evaluation of CT survival models.

The engine is pure computation with a thin file layer; it never imports streamlit.
"""

__version__ = "0.1.0"
