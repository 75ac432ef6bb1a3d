"""Team review: notes on a run's patients, exclusions fed to the next cohort build, data
roots and the audit log, in one SQL database (:mod:`nsclc_engine.review.store`)."""
