"""``python -m nsclc_engine.cohort``: build an auditable cohort (:mod:`.build`)."""

import sys

from nsclc_engine.cohort.build import main

if __name__ == "__main__":
    sys.exit(main())
