"""The Streamlit pages (``app.py`` lists them with ``st.navigation``) and the helpers they
share in :mod:`ui.common`. The only code that imports Streamlit."""
