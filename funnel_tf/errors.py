"""`UserError`: the one base class of every error a user causes (flags, files, configs, data,
checkpoints that do not fit). Entry points catch it and print one line on stderr, exit status 2
(`funnel_tf.cli.main_with_user_errors`); anything else is a bug and keeps its traceback."""


class UserError(Exception):
    """An error in what the user asked for or gave us; its message says what and where."""


def one_line(error: BaseException) -> str:
    """The error's message on one line (multi-line messages joined with '; ')."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return "; ".join(lines) or type(error).__name__
