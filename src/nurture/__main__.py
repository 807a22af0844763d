"""Allows `python -m nurture ...`, used by `nurture run` to start its child services."""

import sys

from nurture.cli.main import main

sys.exit(main())
