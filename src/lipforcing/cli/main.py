"""The ``lipforcing`` command: one thin module per subcommand, looked up in a fixed table.

Each subcommand module exposes ``add_arguments(parser)``, ``run(args) -> int`` and
``DESCRIPTION`` (the plain-text description ``--help`` shows users; module docstrings are for
developers); heavy imports happen inside ``run`` so ``lipforcing --help`` stays fast. ``--help``
shows every option's default. Errors become one line and a non-zero exit (see
:mod:`lipforcing.errors`); a missing optional package names the extra that installs it
(:mod:`lipforcing.extras`).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from lipforcing import __version__
from lipforcing.errors import UserError
from lipforcing.extras import MissingExtra, extra_for

DESCRIPTION = """Real-time streaming lip sync (Lip Forcing): make a face in a video or photo say
new speech, offline or live, and train, evaluate and benchmark the models that do it.
Run 'lipforcing COMMAND --help' for a command's options."""

COMMANDS = {
    "info": ("lipforcing.cli.info", "print a preset's configuration and parameter counts"),
    "stream-smoke": ("lipforcing.cli.stream_smoke", "stream random chunks through a student"),
    "synthtalk": ("lipforcing.cli.synthtalk", "render the procedural SynthTalk dataset"),
    "preprocess": ("lipforcing.cli.preprocess", "turn videos into training/eval shards"),
    "contact-sheet": ("lipforcing.cli.contact_sheet", "face-tracking contact sheet PNG"),
    "train": ("lipforcing.cli.train", "train codec, teacher, SyncNet, students, or a recipe"),
    "analyze": ("lipforcing.cli.analyze", "trajectory analysis of a teacher"),
    "eval": ("lipforcing.cli.eval", "evaluate generated videos against ground truth"),
    "sync": ("lipforcing.cli.sync", "lip-sync a video to an audio file (offline)"),
    "serve": ("lipforcing.cli.serve", "HTTP + WebSocket streaming server with a browser page"),
    "demo": ("lipforcing.cli.demo", "lip-sync a built-in or given sample on the CPU"),
    "bench": ("lipforcing.cli.bench", "throughput / TTFF benchmark"),
    "convert": ("lipforcing.cli.convert", "any accepted weights -> one safetensors checkpoint"),
    "encode-prompt": ("lipforcing.cli.encode_prompt", "UMT5 prompt embeddings -> --context file"),
    "avatar": ("lipforcing.cli.avatar", "personal avatars: create from footage, report, list"),
}


def _shows_default(action: argparse.Action) -> bool:
    default = action.default
    hidden = default is None or default is False or default == argparse.SUPPRESS or default == []
    return bool(action.option_strings) and not hidden


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (paragraphs, example commands); each option's default shown
    unless its help already says it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not _shows_default(action) or "default" in text.lower():
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help uses :class:`HelpFormatter` (its subparsers too)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.help is None and _shows_default(action):  # argparse skips help-less options
            action.help = "(default: %(default)s)"
        return action


def add_subcommands(parser: argparse.ArgumentParser, table: dict[str, tuple[str, str]]) -> None:
    """Attach the subcommands of ``table`` whose modules exist (name -> (module, help))."""
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in table.items():
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        description = getattr(module, "DESCRIPTION", help_text)
        p = sub.add_parser(name, help=help_text, description=description)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="lipforcing", description=DESCRIPTION)
    parser.add_argument(
        "--version", action="version", version=f"lipforcing {__version__}", help="print the version"
    )
    add_subcommands(parser, COMMANDS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line unless debugging
        if isinstance(e, ModuleNotFoundError) and extra_for(e.name):  # an optional package
            print(f"error: {MissingExtra(extra_for(e.name), e.name)}", file=sys.stderr)
            return 2
        if os.environ.get("LIPFORCING_DEBUG"):
            raise
        print(
            f"error: {type(e).__name__}: {e} (set LIPFORCING_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
