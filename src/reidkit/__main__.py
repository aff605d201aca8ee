from reidkit.cli import main
import sys

sys.exit(main())
