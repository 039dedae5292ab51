"""Subcommands of the `tf-metaloss` command line (one module each)."""
