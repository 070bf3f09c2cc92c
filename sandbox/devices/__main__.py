"""`python -m sandbox.devices`: write the sandbox lab's testbed for a scenario."""

import sys

from . import main

sys.exit(main())
