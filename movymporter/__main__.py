import sys

from movymporter.cli import main

sys.exit(main())
