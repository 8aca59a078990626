"""What every entry point shares: a user error is one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import functools
import sys

from funnel_tf.errors import UserError, one_line

USAGE_ERROR = 2


def main_with_user_errors(prog: str):
    """Decorator for an absl `main(argv)`: a `UserError` ends as `prog: error: <one line>` on
    stderr and exit status 2, with no traceback."""
    def wrap(main):
        @functools.wraps(main)
        def wrapped(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except UserError as e:
                print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
                return USAGE_ERROR
        return wrapped
    return wrap


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line too (`prog: error: <message> (see --help)`,
    exit status 2) instead of the usage block followed by the message."""

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def absl_flags_parser(prog: str):
    """A `flags_parser` for absl's `app.run`: a flag error (unknown flag, bad value) is
    `prog: error: <one line> (see --helpfull)` and exit status 2, not absl's two lines and 1."""
    def parse(argv):
        from absl import flags

        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            print(f"{prog}: error: {one_line(e)} (see --helpfull)", file=sys.stderr)
            sys.exit(USAGE_ERROR)
    return parse
