"""``python -m edgemodel_trainer``, the same as the ``edgemodel-trainer`` console script."""

import sys

from edgemodel_trainer.main import main

sys.exit(main())
