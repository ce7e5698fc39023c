"""Lets the test import the adapter module that sits beside it, as a stranger's project would."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
