"""What the dashboard pages show, computed here without Streamlit: one module per page
(``runs``, ``dataset``, ``train``, ``threshold``, ``calibration``, ``survival``, ``patient``)
over :mod:`~nsclc_engine.dashboard.run_view`, one run as the pages see it. The pages in
``ui/`` only lay these out."""
