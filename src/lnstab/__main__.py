"""``python -m lnstab``: the command line of lnstab.cli (also each rank that lnstab.launch starts)."""
import sys

from .cli import main

sys.exit(main())
