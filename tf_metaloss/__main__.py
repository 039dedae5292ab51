"""`python -m tf_metaloss`: the `tf-metaloss` command line."""

import sys

from tf_metaloss.cli import main

if __name__ == "__main__":
    sys.exit(main())
