"""`python -m vitstudy.cli` (how DDP ranks and the tests re-run the command)."""

import sys

from vitstudy.cli import main

sys.exit(main())
