import sys

from kerasport.cli import main

sys.exit(main())
