"""What every launcher (``launch/*.py``) shares: a user's mistake ends the command with one
line ``error: …`` on stderr and exit status 2, without a traceback (set the environment
variable ``FASTVGS_VERBOSE=1`` to print it too, before the error line). Every launcher keeps
freed host memory mapped (``fastvgs_jax.host_memory``; ``FASTVGS_HOST_MEMORY=system`` opts out).

    from fastvgs_jax import cli
    if __name__ == "__main__":
        cli.run(main)

User mistakes are flag errors (an unknown or invalid flag, a mistyped ``--config.FIELD``, a
config argument its ``get_config`` rejects), ``absl.app.UsageError``, a ``ValueError`` raised
by the project's own validation, the project's ``SnapshotError``, ``CorpusError``,
``EvaluationError``, ``ImageTowerError`` and ``ConversionError``, and ``FileNotFoundError``.
Anything else is a bug: its traceback stays.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import sysconfig
import traceback
from collections.abc import Callable, Sequence

from absl import app, flags

from fastvgs_jax import host_memory

EXIT_USAGE = 2
VERBOSE_ENV = "FASTVGS_VERBOSE"
HOST_MEMORY_ENV = "FASTVGS_HOST_MEMORY"

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_LIBRARIES = tuple(
    {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
)
_CONFIG_FILE_ERROR = "Error whilst parsing config file"  # config_flags' wrapper of get_config's


class CommandLineError(Exception):
    """A mistake in the flags, with the message to show."""


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def _user_errors() -> tuple[type[BaseException], ...]:
    # Imported only when something failed: light launchers (build_corpus) stay light.
    from fastvgs_jax import workdir  # noqa: PLC0415
    from fastvgs_jax.convert.mapping import ConversionError  # noqa: PLC0415
    from fastvgs_jax.data.sources import CorpusError  # noqa: PLC0415
    from fastvgs_jax.eval import evaluate  # noqa: PLC0415
    from fastvgs_jax.train.image_tower import ImageTowerError  # noqa: PLC0415

    return (
        CommandLineError,
        app.UsageError,
        flags.Error,
        workdir.SnapshotError,
        CorpusError,
        evaluate.EvaluationError,
        ImageTowerError,
        ConversionError,
        FileNotFoundError,
    )


def _raised_by_us(error: BaseException) -> bool:
    """Whether ``error`` was raised in this project's code, configs or launchers (its
    validation), not inside a library, where a ValueError usually means a bug."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return False
    path = os.path.abspath(frames[-1].filename)
    return path.startswith(_PACKAGE + os.sep) or not path.startswith(_LIBRARIES)


def is_user_error(error: BaseException) -> bool:
    if isinstance(error, _user_errors()):
        return True
    return isinstance(error, ValueError) and _raised_by_us(error)


def fail(message: object) -> None:
    """End the command: ``error: MESSAGE`` (on one line) on stderr, exit status 2."""
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    sys.stdout.flush()
    sys.stderr.write(f"error: {text}\n")
    sys.stderr.flush()
    sys.exit(EXIT_USAGE)


def run(main: Callable, argv: Sequence[str] | None = None) -> None:
    """``absl.app.run(main)``, with user mistakes (in the flags or raised by ``main``) ended
    by one ``error: …`` line and exit status 2."""
    try:
        app.run(_guarded(main), argv=list(sys.argv if argv is None else argv), flags_parser=parse)
    except CommandLineError as error:  # raised while parsing, outside main
        fail(error)


def _guarded(main: Callable) -> Callable:
    def guarded_main(argv):
        try:
            # Before JAX starts its threads; FASTVGS_HOST_MEMORY=system keeps glibc's defaults.
            host_memory.keep_freed_memory(os.environ.get(HOST_MEMORY_ENV, "keep"))
            return main(argv)
        except Exception as error:
            if not is_user_error(error):
                raise
            if verbose():
                traceback.print_exc()
            fail(error)

    return guarded_main


def parse(argv: Sequence[str]) -> list[str]:
    """absl's flag parsing (``app.run``'s ``flags_parser``), a mistake raised as
    CommandLineError with one clear message."""
    argv = list(argv)
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as error:
        _print_traceback()
        raise CommandLineError(_flag_error_message(error)) from error
    except (AttributeError, KeyError, IndexError, ValueError, TypeError) as error:
        # config_flags lets these escape for a --config.FIELD the config lacks.
        message = _missing_override(argv)
        if message is None:
            raise  # not a mistyped field: a bug (e.g. in a config file)
        _print_traceback()
        raise CommandLineError(message) from error
    for flag in _config_flags():
        if type(flag.value).__name__ == "_ErrorConfig":  # config_flags defers a load failure
            raise CommandLineError(f"--{flag.name}={_given(flag, argv)}: no such config file")
    return rest


def _print_traceback() -> None:
    if verbose():
        traceback.print_exc()


def _flag_error_message(error: flags.Error) -> str:
    message = str(error)
    if _CONFIG_FILE_ERROR not in message:
        return message
    # "flag --config=FILE:ARG: Error whilst parsing config file: <traceback>": show the
    # config flag as typed and what get_config raised.
    head = message.split(f": {_CONFIG_FILE_ERROR}")[0].removeprefix("flag ")
    cause: BaseException | None = error
    while cause is not None and (
        isinstance(cause, flags.Error) or _CONFIG_FILE_ERROR in str(cause)
    ):
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    return f"{head}: {cause}" if cause is not None else message


def _config_flags():
    from ml_collections.config_flags import config_flags  # noqa: PLC0415

    for name in list(flags.FLAGS):
        flag = flags.FLAGS[name]
        if name == flag.name and isinstance(flag, config_flags._ConfigFlag):  # noqa: SLF001
            yield flag


def _given(flag, argv: Sequence[str]) -> str | None:
    """The value of ``--NAME=VALUE`` (or ``--NAME VALUE``) in argv, else the flag's default."""
    for i, arg in enumerate(argv):
        for dashes in ("--", "-"):
            if arg.startswith(f"{dashes}{flag.name}="):
                return arg.split("=", 1)[1]
            if arg == f"{dashes}{flag.name}" and i + 1 < len(argv):
                return argv[i + 1]
    return flag.default if isinstance(flag.default, str) else None


def _missing_override(argv: Sequence[str]) -> str | None:
    """``--config.FIELD: the config has no field …`` for the first override in argv whose
    field the (re-loaded) config lacks; None when there is none."""
    for flag in _config_flags():
        path = _given(flag, argv)
        if path is None:
            continue
        try:
            config = flag.parser.parse(path)
        except Exception:  # noqa: BLE001 - then the original error stands
            continue
        for arg in argv:
            field = re.match(rf"-{{1,2}}{re.escape(flag.name)}\.([^=]+)", arg)
            if field:
                missing = _missing_field(config, field.group(1))
                if missing:
                    return f"--{flag.name}.{field.group(1)}: {missing}"
    return None


def _missing_field(config, path: str) -> str | None:
    """The first part of ``path`` (``optimizer.lr``, ``phases[1].steps``) that ``config``
    lacks, with the closest existing name; None when every part exists."""
    node, done = config, []
    for part in path.split("."):
        match = re.fullmatch(r"([^\[\]]+)((?:\[\d+\])*)", part)
        if match is None:
            return None
        name = match.group(1)
        keys = [str(k) for k in node] if hasattr(node, "keys") else []
        if name not in keys:
            typed = ".".join([*done, name])
            close = difflib.get_close_matches(name, keys, n=1)
            hint = f" (did you mean {'.'.join([*done, close[0]])!r}?)" if close else ""
            return f"the config has no field {typed!r}{hint}"
        node = node[name]
        for index in re.findall(r"\[(\d+)\]", match.group(2)):
            try:
                node = node[int(index)]
            except (IndexError, KeyError, TypeError):
                have = f" (it has {len(node)})" if hasattr(node, "__len__") else ""
                return f"the config has no {'.'.join([*done, name])}[{index}]{have}"
        done.append(part)
    return None
