import sys

from hftd.cli import main

sys.exit(main())
