"""``python -m edgemodel_simulator``, the same as the ``edgemodel-simulator`` console script."""

import sys

from edgemodel_simulator.sensors import main

sys.exit(main())
