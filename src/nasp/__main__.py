import sys

from nasp.cli import main

sys.exit(main())
