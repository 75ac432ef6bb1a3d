"""External validation of a frozen run on a new cohort (:mod:`nsclc_engine.validate.external`)."""
