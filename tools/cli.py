"""The frame of every tool: one error type and one `main` wrapper.

    import cli   # first: sets TF's log level from --verbosity before TensorFlow loads
    ...
    def main(argv):
        if bad:
            raise cli.CliError("--x: no such file: ...")    # -> `error: ...`, exit 2
    if __name__ == "__main__":
        cli.run(main)

`run` turns a `CliError` (and the library's `ValueError`s: config, file format and checkpoint
errors) into one `error: ...` line on stderr and exit status 2; a `CliError(..., status=1)`
keeps a tool's documented other status. Ctrl-C prints `interrupted[: why]` and exits 130 (the
trainer first saves the step it finished, `action_tx.interrupt`). A `--flagfile` that does not
exist is reported the same way, before absl prints its usage dump. `one_line_warnings` prints a
library's warnings of one kind (e.g. the AVA evaluator's doubtful input) as `warning: ...`
lines.

TensorFlow's C++ log is quiet by default (`action_tx/__init__.py`); absl's `--verbosity=N`
(or `-v N`) brings it back: 0 (INFO) shows all, -1 warnings and errors, -2 errors.
"""

import os
import sys
import warnings


class CliError(Exception):
    """Bad flags or files: reported as one `error: ...` line, exit `status` (default 2)."""

    def __init__(self, message, status: int = 2):
        super().__init__(" ".join(str(message).split()))
        self.status = status


def _verbosity(argv):
    """absl's --verbosity / -v value in `argv`, or None."""
    for i, arg in enumerate(argv):
        for name in ("--verbosity", "-v"):
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
    return None


def _set_tf_log_level(argv) -> None:
    """TF_CPP_MIN_LOG_LEVEL from --verbosity (absl 0 INFO, -1 WARNING, -2 ERROR), unless the
    variable is set already. TensorFlow reads it once, when it loads: hence at import."""
    value = _verbosity(argv)
    if value is None or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    try:
        level = int(value)
    except ValueError:
        return  # absl reports the bad value itself
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = str(min(3, max(0, -level)))


_set_tf_log_level(sys.argv)
import action_tx  # noqa: E402,F401  (TF start-up options, before anything loads TensorFlow)


def exit_on_missing_flagfile(argv) -> None:
    """Exits with status 2 and one line when a `--flagfile=F` of `argv` does not exist (absl's
    own message for it is a multi-line usage dump)."""
    for arg in argv[1:]:
        if arg.startswith("--flagfile=") and not os.path.isfile(arg.split("=", 1)[1]):
            print(f"error: --flagfile: no such file: {arg.split('=', 1)[1]}", file=sys.stderr)
            sys.exit(2)


def flagfile_given(argv=None) -> bool:
    """Whether the command line names a --flagfile (its flags then describe the model)."""
    return any(a == "--flagfile" or a.startswith("--flagfile=") for a in (argv or sys.argv))


def run(main, known_only: bool = False) -> None:
    """`absl.app.run(main)` with the tools' error convention (module docstring). `main(argv)`
    returns None or an exit status; extra positional arguments are refused, unless
    `known_only`: then flags this program does not define are left in argv for `main` too
    (e.g. Beam pipeline options)."""
    from absl import app, flags

    def wrapped(argv):
        try:
            if len(argv) > 1 and not known_only:
                raise CliError(f"unexpected arguments: {' '.join(argv[1:])}")
            status = main(argv)
        except CliError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(e.status)
        except (ValueError, OSError) as e:  # ConfigError, AvaFormatError, restore errors
            print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt as e:  # Ctrl-C: one line (the trainer's names its checkpoint)
            print(f"interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
            sys.exit(130)
        sys.exit(status or 0)

    exit_on_missing_flagfile(sys.argv)
    if known_only:
        app.run(wrapped, flags_parser=lambda argv: flags.FLAGS(argv, known_only=True))
    else:
        app.run(wrapped)


def one_line_warnings(category) -> None:
    """Prints each warning of `category` (a Warning subclass) as one `warning: ...` line on
    stderr, every time it occurs (Python's default shows a warning once per place, with a
    source line); other warnings are shown as before."""
    show = warnings.showwarning

    def one_line(message, cat, filename, lineno, file=None, line=None):
        if issubclass(cat, category):
            print(f"warning: {message}", file=sys.stderr, flush=True)
        else:
            show(message, cat, filename, lineno, file, line)

    warnings.showwarning = one_line
    warnings.simplefilter("always", category)
