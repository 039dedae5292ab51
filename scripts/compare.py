"""`python scripts/compare.py ARGS` == `tf-metaloss compare ARGS` (same parser).

Lets the result scripts run whether or not `tf_metaloss/cli.py` lists the
`compare` subcommand yet.
"""

import argparse
import sys

from tf_metaloss.commands import compare


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tf-metaloss")
    subparsers = parser.add_subparsers(dest="command")
    compare.register(subparsers)
    args = parser.parse_args(["compare"] + list(sys.argv[1:] if argv is None else argv))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
