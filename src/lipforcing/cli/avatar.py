"""Personal avatars: train the whole chain on one person's footage, on the CPU.

``lipforcing avatar create VIDEO [VIDEO...] --out NAME.avatar`` scans the footage (report
first: usable face, head pose, mouth in frame, sharpness, speech; unusable footage is refused
with what to record instead), fine-tunes the codec and SyncNet on the person, trains the
teacher, Stage 1 and Stage 2 with the reward, and writes the avatar folder with a held-out
report on the last 15% of the footage (never trained on). A video whose speech is in a .wav
beside it (``clip.mp4`` + ``clip.wav``) counts as one input. Rerun the same command to resume.

``lipforcing avatar report NAME.avatar --video V --other-audio A --out DIR`` scores the avatar
on new footage of the same person; ``info`` prints an avatar's card, ``list`` the avatars in
a folder. Use one with ``lipforcing sync|serve|demo --avatar NAME.avatar``.
"""

from __future__ import annotations

import argparse

DEFAULT_MINUTES = 60.0  # issue 20's create target: the whole create within an hour

DESCRIPTION = """\
Personal avatars: train the whole lip-sync chain on one person's footage, on the CPU, and
stream that person with 'lipforcing sync|serve|demo --avatar NAME.avatar'. Actions: create,
report, info, list; run 'lipforcing avatar ACTION --help' for an action's options."""

CREATE = """\
Create NAME.avatar from 1-3 minutes of one person talking to the camera (a video whose speech
is in a .wav of the same name beside it counts as one input). Prints a footage report first
and refuses unusable footage with what to record instead; then prints a time estimate and
trains the codec, SyncNet, teacher, Stage 1 and Stage 2 on the person, each stage with a
progress bar. The whole create is sized to --minutes (default 60): an estimate from a timed step
of every stage first, then each trained stage times its own first steps when it starts and
fixes its step count to its share of the time left (the card records the steps, why, and
the planned vs actual times). The last 15% of the footage is never trained on: the held-out report
(NAME.avatar/report/report.md) scores the avatar on it. Rerun the same command to resume
(a resumed create keeps the steps its first run chose)."""

REPORT = """\
Score an avatar on new footage of its person (footage it was never trained on), driven by its
own audio and by --other-audio: mouth PSNR / SSIM / LPIPS, the person's SyncNet, the
lip-opening / speech-envelope correlation. Writes report.md, report.json and two figures."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="avatar_command", metavar="ACTION")
    sub.required = True
    c = sub.add_parser("create", help="train an avatar on a person's footage", description=CREATE)
    c.add_argument("videos", nargs="+", metavar="VIDEO", help="footage of one person speaking")
    c.add_argument("--out", required=True, help="the avatar folder to write (NAME.avatar)")
    c.add_argument(
        "--init",
        choices=["builtin", "scratch"],
        default="builtin",
        help="start from the built-in SynthTalk networks or from scratch (default: builtin)",
    )
    c.add_argument("--other-audio", help="speech for the report's other-utterance test")
    steps = c.add_mutually_exclusive_group()
    steps.add_argument(
        "--minutes",
        type=float,
        help=f"wall-time budget of the whole create, every stage included (default "
        f"{DEFAULT_MINUTES:g}): each trained stage times its own first steps and takes its "
        "share of the time left, never more steps than the fixed config's",
    )
    steps.add_argument(
        "--steps-from-config",
        action="store_true",
        help="run the fixed config's steps (docs/avatar/README.md lists them) whatever the "
        "time they take",
    )
    c.add_argument(
        "--quick",
        action="store_true",
        help="a smoke-sized config (a few steps per stage), its steps fixed unless --minutes "
        "is given (then they are its caps)",
    )
    c.add_argument("--keep-work", action="store_true", help="keep NAME.avatar.partial/")
    c.add_argument("--seed", type=int, default=0, help="seed of every stage")
    c.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    c.set_defaults(_action=create)
    r = sub.add_parser(
        "report", help="score an avatar on new footage of the person", description=REPORT
    )
    r.add_argument("avatar", help="NAME.avatar folder")
    r.add_argument("--video", required=True, help="footage of the person never trained on")
    r.add_argument("--other-audio", required=True, help="other speech to drive the footage with")
    r.add_argument("--out", required=True, help="report folder")
    r.add_argument("--seconds", type=float, default=20.0, help="seconds of footage to score")
    r.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    r.set_defaults(_action=report)
    i = sub.add_parser(
        "info", help="print an avatar's card", description="Print an avatar's card (JSON)."
    )
    i.add_argument("avatar", help="NAME.avatar folder")
    i.set_defaults(_action=info)
    ls = sub.add_parser(
        "list",
        help="list the avatars in a folder",
        description="List the avatars (NAME.avatar folders) in a folder.",
    )
    ls.add_argument("folder", nargs="?", default=".", help="folder holding NAME.avatar folders")
    ls.set_defaults(_action=list_)


def run(args: argparse.Namespace) -> int:
    return args._action(args)


def create(args: argparse.Namespace) -> int:
    import torch

    from lipforcing.avatar.budget import TimeBudget
    from lipforcing.avatar.config import avatar_config
    from lipforcing.avatar.create import create_avatar
    from lipforcing.errors import UserError

    torch.set_num_threads(args.threads)
    cfg = avatar_config(args.init, quick=args.quick, seed=args.seed)
    budget = None
    fixed = args.steps_from_config or (args.quick and args.minutes is None)
    if not fixed:
        minutes = DEFAULT_MINUTES if args.minutes is None else args.minutes
        if minutes <= 0:
            raise UserError(f"--minutes must be positive, got {minutes:g}")
        budget = TimeBudget(minutes=minutes)
    create_avatar(
        args.videos,
        args.out,
        cfg,
        budget=budget,
        other_audio=args.other_audio,
        keep_work=args.keep_work,
    )
    return 0


def report(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from lipforcing.avatar.newfootage import report_on_footage

    torch.set_num_threads(args.threads)
    rep = report_on_footage(
        Path(args.avatar), Path(args.video), Path(args.other_audio), Path(args.out), args.seconds
    )
    met = sum(v["met"] for v in rep["targets"].values())
    print(f"wrote {args.out}/report.md ({met} of {len(rep['targets'])} targets met)")
    return 0


def info(args: argparse.Namespace) -> int:
    import json

    from lipforcing.avatar.bundle import Avatar

    card = Avatar.load(args.avatar).card
    keep = ("name", "tool_version", "created", "init", "trained_on", "heldout", "timings_s")
    print(json.dumps({k: card[k] for k in keep if k in card}, indent=2))
    return 0


def list_(args: argparse.Namespace) -> int:
    from lipforcing.avatar.bundle import list_avatars

    found = list_avatars(args.folder)
    for a in found:
        s = a.summary()
        print(
            f"{s['name']}\t{s['path']}\tcreated {s['created']}\tinit {s['init']}\t"
            f"trained on {s['train_seconds']} s\ttargets met {s['targets_met']}/{s['targets']}"
        )
    if not found:
        print(f"no avatars in {args.folder}")
    return 0
