"""``python -m nsclc_engine.synth``: write the synthetic demo cohort (:mod:`.generate`)."""

import sys

from nsclc_engine.synth.generate import main

if __name__ == "__main__":
    sys.exit(main())
