import sys

from qualitybridge.cli import main

sys.exit(main())
