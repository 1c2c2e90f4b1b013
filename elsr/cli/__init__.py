"""The ``elsr`` command line: one module per subcommand, the only place argparse lives.

Each module turns its options into the library's dataclass config and calls the library.
"""
