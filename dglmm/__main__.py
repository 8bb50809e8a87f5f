"""``python -m dglmm ...`` is the ``dglmm`` command (also under ``torchrun -m dglmm``)."""

import sys

from dglmm.cli import main

sys.exit(main())
