import sys

from pilotpy.cli.main import main

sys.exit(main())
