"""``python -m lnstab`` (and ``torchrun ... -m lnstab train ...``): the command line of lnstab.cli."""
import sys

from .cli import main

sys.exit(main())
