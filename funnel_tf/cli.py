"""What every entry point shares: a user error is one line on stderr and exit status 2. The flags
themselves are generated from the run dataclasses (funnel_tf/flags_from_args.py)."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Dict, List, Optional

from funnel_tf.errors import UserError, one_line, storage_problem

USAGE_ERROR = 2

# Default program name (as the scripts spell it) -> the name the user invoked (a console script
# such as funnel-finetune); set by funnel_tf.entry_points before the script runs.
_INVOKED_AS: Dict[str, str] = {}


def set_program_name(default: str, invoked: str) -> None:
    """Messages that would say `default` (e.g. `finetune.py`, `python -m funnel_tf.convert`) say
    `invoked` instead (e.g. `funnel-finetune`): errors name the program the user ran."""
    _INVOKED_AS[default] = invoked


def program_name(prog: str) -> str:
    """`prog` as invoked: a name starting with a registered default (an argparse sub-command's
    `python -m funnel_tf.text build-vocab` too) gets the invoked name in its place."""
    for default, invoked in _INVOKED_AS.items():
        if prog == default or prog.startswith(default + " "):
            return invoked + prog[len(default):]
    return prog


def _shown(arg: str) -> str:
    """An argument that is not valid UTF-8, printable: its undecodable bytes as \\xNN."""
    return arg.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def not_utf8_arguments(args: List[str]) -> Optional[str]:
    """The message for the first command-line argument that is not valid UTF-8 (a path given
    as raw bytes: Python keeps them as lone surrogates, which no file API, log or JSON writer
    accepts), or None. Checked before anything runs, so nothing is written."""
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            name = arg.split("=", 1)[0] if arg.startswith("-") and "=" in arg else None
            what = f"the value of {name}" if name else "argument"
            return (f"{what} '{_shown(arg.split('=', 1)[1] if name else arg)}' is not valid "
                    f"UTF-8; give names and paths as UTF-8 text (rename the file or folder)")
    return None


def main_with_user_errors(prog: str):
    """Decorator for an absl `main(argv)`: a `UserError`, or the file system refusing a write
    (disk full, quota, read-only, permissions: `errors.storage_problem`), ends as
    `prog: error: <one line>` on stderr and exit status 2, with no traceback."""
    def wrap(main):
        @functools.wraps(main)
        def wrapped(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except UserError as e:
                print(f"{program_name(prog)}: error: {one_line(e)}", file=sys.stderr)
                return USAGE_ERROR
            except Exception as e:  # noqa: BLE001 - only storage refusals are handled here
                problem = storage_problem(e)
                if problem is None:
                    raise
                print(f"{program_name(prog)}: error: {problem}", file=sys.stderr)
                return USAGE_ERROR
        return wrapped
    return wrap


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line too (`prog: error: <message> (see --help)`,
    exit status 2) instead of the usage block followed by the message; `prog` is the name the
    program was invoked as (`program_name`), and arguments that are not UTF-8 are such an error."""

    def __init__(self, *args, prog: Optional[str] = None, **kwargs):
        super().__init__(*args, prog=None if prog is None else program_name(prog), **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        problem = not_utf8_arguments(sys.argv[1:] if args is None else list(args))
        if problem:
            self.error(problem)
        return super().parse_known_args(args, namespace)

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


_ABSL_HELP = ("--help", "--helpshort", "--helpfull", "--helpxml", "-?", "-help", "-helpfull",
              "-helpshort", "-helpxml")


def _flagfile_problem(argv: List[str]) -> Optional[str]:
    """The message for a --flagfile named on the command line that is not valid UTF-8 (absl
    would stop with a UnicodeDecodeError traceback), or None. Unreadable files are left to absl."""
    for i, arg in enumerate(argv):
        path = None
        if arg.startswith(("--flagfile=", "-flagfile=")):
            path = arg.split("=", 1)[1]
        elif arg in ("--flagfile", "-flagfile") and i + 1 < len(argv):
            path = argv[i + 1]
        if not path:
            continue
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data[:e.start].count(b"\n") + 1
            return f"--flagfile {path} is not valid UTF-8 (byte {data[e.start]:#04x} on line {line})"
    return None


def absl_flags_parser(prog: str, doc: Optional[str] = None):
    """A `flags_parser` for absl's `app.run`: a flag error (unknown flag, bad value, a stray
    positional argument, an argument or --flagfile that is not UTF-8) is
    `prog: error: <one line> (see --helpfull)` and exit status 2, not absl's usage block or a
    traceback with status 1; `--help` / `-h` / `--helpfull` print the help to stdout and exit 0
    (absl exits 1). `doc` is the script's docstring, shown by --help also under a console
    script (whose own `__main__` has none)."""
    def fail(message: str):
        print(f"{program_name(prog)}: error: {message} (see --helpfull)", file=sys.stderr)
        sys.exit(USAGE_ERROR)

    def parse(argv):
        from absl import flags

        argv = ["--help" if a == "-h" else a for a in argv]
        problem = not_utf8_arguments(argv[1:]) or _flagfile_problem(argv[1:])
        if problem:
            fail(problem)
        main = sys.modules.get("__main__")
        if doc and main is not None and not getattr(main, "__doc__", None):
            main.__doc__ = doc
        try:
            rest = flags.FLAGS(argv)
        except flags.Error as e:
            fail(one_line(e))
        except UnicodeDecodeError as e:  # a --flagfile named inside another one
            fail(f"a --flagfile is not valid UTF-8 ({e})")
        except SystemExit as e:  # absl's help flags print the help and exit 1
            if e.code == 1 and any(a.split("=", 1)[0] in _ABSL_HELP for a in argv[1:]):
                sys.stdout.flush()
                sys.exit(0)
            raise
        if len(rest) > 1:
            fail(f"unexpected arguments {rest[1:]}: flags are --name=value")
        return rest
    return parse
