"""``python -m nsclc_engine.preprocess``: tumour-centred volumes into the cache."""

import sys

from nsclc_engine.preprocess.volumes import main

if __name__ == "__main__":
    sys.exit(main())
