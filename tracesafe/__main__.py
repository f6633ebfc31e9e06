import sys

from tracesafe.entry import main

if __name__ == "__main__":
    sys.exit(main())
