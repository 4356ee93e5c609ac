"""What every command-line script shares: one-line errors, `--help` that shows the defaults,
`--config FILE.yaml`, and flags generated from a config dataclass's fields.

    def main(argv=None):
        p = ConfigParser(description=__doc__)
        p.add_fields(TrainConfig)               # --steps, --batch-size, ... from the fields
        config = TrainConfig(**p.given(p.parse_args(argv), TrainConfig))

    if __name__ == "__main__":
        run(main)       # bad input: `error: <message>`, status 2; --debug: the traceback
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import os
import sys
import types
import typing
from typing import Callable, NoReturn

# "The input or the environment is wrong" (ImportError: a missing extra), not a bug in pomlab
USER_ERRORS = (ValueError, OSError, ImportError, RuntimeError)
DEBUG_FLAG = "--debug"
DEBUG_ENV = "POMLAB_DEBUG"
EXIT_USAGE = 2                # argparse's status for bad arguments
EXIT_INTERRUPTED = 130        # 128 + SIGINT, the shell convention


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout; appends "(default: X)" where the help does not say it."""

    def _format_action(self, action):
        value, text = action.default, action.help or ""
        if (action.option_strings and value is not argparse.SUPPRESS and value is not None
                and value is not False and value != [] and "default" not in text.lower()):
            action.help = f"{text} (default: %(default)s)" if text else "default: %(default)s"
        return super()._format_action(action)


def debug_requested(argv: list[str] | None = None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(error: BaseException) -> str:
    """The message of an error on one line (multi-line messages joined with '; ')."""
    text = str(error.args[0] if isinstance(error, KeyError) and len(error.args) == 1 else error)
    parts = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(parts) or type(error).__name__


def run(main: Callable[[], object]) -> NoReturn:
    """Run main() and exit with the int it returns (None: 0). A user error prints `error: <one
    line>` and exits with 2 (argparse's status), Ctrl-C with 130 (--debug anywhere or
    POMLAB_DEBUG=1: their traceback); other exceptions are bugs and keep their traceback."""
    debug = debug_requested()
    sys.argv = [sys.argv[0]] + [a for a in sys.argv[1:] if a != DEBUG_FLAG]
    try:
        status = main()
    except (KeyboardInterrupt, *USER_ERRORS) as error:
        if debug:
            raise
        interrupted = isinstance(error, KeyboardInterrupt)
        print("interrupted (rerun the same command to resume where a script supports it)"
              if interrupted else f"error: {one_line(error)}  (--debug or {DEBUG_ENV}=1 shows the "
              "traceback)", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED if interrupted else EXIT_USAGE)
    sys.exit(status if isinstance(status, int) and not isinstance(status, bool) else 0)


def key_value(text: str) -> tuple[str, object]:
    """"KEY=VALUE" -> (KEY, the Python literal VALUE, or the string when it is none)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


class KeyValues(argparse.Action):
    """Repeatable KEY=VALUE flag filling a dict (on top of a config file's dict)."""

    def __call__(self, parser, namespace, text, option_string=None):
        key, value = key_value(text)
        setattr(namespace, self.dest, {**(getattr(namespace, self.dest, None) or {}), key: value})


def _converter(hint):
    """str -> value for a field's type: int, float, str, unions of them with None ("none"),
    tuple[...] (comma-separated)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = typing.get_args(hint) if union else (hint,)
    items = [typing.get_args(t)[0] for t in options if typing.get_origin(t) is tuple]
    item = _converter(items[0]) if items else None

    def convert(text: str):
        if type(None) in options and text.lower() in ("none", "null"):
            return None
        if item is not None:
            return tuple(item(v.strip()) for v in text.split(","))
        for kind in (k for k in (int, float) if k in options):
            with contextlib.suppress(ValueError):
                return kind(text)
        if str in options:
            return text
        raise argparse.ArgumentTypeError(f"expected {' or '.join(t.__name__ for t in options)}, "
                                         f"got {text!r}")
    return convert


class ConfigParser(argparse.ArgumentParser):
    """An ArgumentParser with `--config FILE.yaml` (its keys, the flags' names with _ or -, set
    the defaults; flags given too override them; unknown keys are an error) and add_fields."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.nested: set[str] = set()     # config-file sections whose keys are flags too
        self.add_argument("--config", metavar="FILE.yaml", help="YAML file of settings (keys: "
                          "the flags' names); flags given as well override it")

    def add_fields(self, cls, *, skip=(), defaults: dict | None = None) -> None:
        """One flag per field of dataclass `cls` (--batch-size for batch_size; bools --x/--no-x,
        dicts repeatable KEY=VALUE, tuples comma-separated), help from the field's metadata;
        unset flags stay out of the namespace (see `given`); `defaults`: the defaults shown."""
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            if f.name in skip or dataclasses.is_dataclass(hint):
                continue
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            shown = (defaults or {}).get(f.name, default)
            shown = ",".join(map(str, shown)) if isinstance(shown, tuple) else shown
            text = f.metadata.get("help", "") + (f" (default: {shown})" if shown not in (None, {}) else "")
            kwargs = dict(dest=f.name, default=argparse.SUPPRESS, help=text.replace("%", "%%"))
            if hint is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif hint is dict:
                kwargs.update(action=KeyValues, metavar="KEY=VALUE")
            else:
                kwargs["type"] = _converter(hint)
                if "choices" in f.metadata:
                    kwargs["choices"] = (*f.metadata["choices"], *((None,) if default is None else ()))
            self.add_argument("--" + f.name.replace("_", "-"), **kwargs)

    @staticmethod
    def given(namespace: argparse.Namespace, cls) -> dict:
        """The fields of `cls` set by a flag or the config file."""
        return {f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls)
                if hasattr(namespace, f.name)}

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        files = [a.split("=", 1)[1] if "=" in a else (args[i + 1] if i + 1 < len(args) else "")
                 for i, a in enumerate(args) if a == "--config" or a.startswith("--config=")]
        if files:
            self._file_defaults(files[-1])
        return super().parse_known_args(args, namespace)

    def _file_defaults(self, path: str) -> None:
        import yaml
        try:
            with open(path) as handle:
                values = yaml.safe_load(handle) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"--config {path}: not valid YAML ({one_line(err)})") from None
        if not isinstance(values, dict):
            raise ValueError(f"--config {path} must hold a mapping of settings, got "
                             f"{type(values).__name__}")
        flat = {}
        for key, value in values.items():
            flat.update(value if key in self.nested and isinstance(value, dict) else {key: value})
        actions = {a.dest: a for a in self._actions if a.dest not in ("help", "config")}
        for key, value in flat.items():
            action = actions.get(str(key).replace("-", "_"))
            if action is None:
                raise ValueError(f"--config {path}: unknown key {key!r} (not a setting of "
                                 f"{self.prog}; see --help)")
            action.default, action.required = value, False
            for group in self._mutually_exclusive_groups:
                group.required = group.required and action not in group._group_actions
