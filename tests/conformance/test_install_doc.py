"""docs/INSTALL.md documents only flags that exist: every command on the page parses."""

from __future__ import annotations

from install_doc import ROOT, commands

from lipforcing.cli.main import build_parser


def test_every_documented_command_parses():
    parser = build_parser()
    found = commands()
    assert {n for n, _ in found} >= {"encode-prompt", "sync", "serve", "convert", "eval",
                                     "preprocess", "analyze", "preprocess-train", "latents",
                                     "stage1", "stage2", "convert-trained"}  # fmt: skip
    found += commands(ROOT / "README.md")
    for _, argv in found:
        parser.parse_args(argv)  # SystemExit (argparse error) on any flag that does not exist
