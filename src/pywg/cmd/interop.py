"""`pywg interop`: run the conformance suite against implementations, print a verdict.

    pywg interop --impl wireguard-go --impl pywgd [--scenario NAME ...] [--json]
                 [--jobs N] [--hostile-only] [--list]

Exit status 0 when every scenario passed or was skipped, 1 when one failed
or errored, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import signal
import sys

from pywg.interop import report
from pywg.interop.runner import Result, load, run_suite
from pywg.lab import LabError, close_all_labs, require_root
from pywg.lab.wireguard import Impl

IMPL_HELP = (
    "an implementation to test (repeatable): pywgd, wireguard-go, kernel, or any "
    "command with wireguard-go's command line (it gets the interface name last), "
    "e.g. 'boringtun-cli --disable-drop-privileges'"
)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--impl", action="append", default=[], metavar="COMMAND", help=IMPL_HELP)
    parser.add_argument(
        "--scenario", action="append", default=[], metavar="NAME", help="run only these"
    )
    parser.add_argument("--json", action="store_true", help="results as JSON on stdout")
    parser.add_argument("--jobs", type=int, default=3, help="scenarios run at once (default 3)")
    parser.add_argument(
        "--hostile-only", action="store_true", help="only the adversarial scenarios"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")


def run(args: argparse.Namespace) -> int:
    scenarios = load()
    if args.list:
        for sc in scenarios.values():
            print(f"{sc.name:<26} {sc.kind:<8} {sc.title}")
        return 0
    if not args.impl:
        print("pywg interop: give at least one --impl", file=sys.stderr)
        return 2
    try:
        impls = [Impl.parse(spec) for spec in args.impl]
    except ValueError as exc:
        print(f"pywg interop: {exc}", file=sys.stderr)
        return 2
    unknown = [n for n in args.scenario if n not in scenarios]
    if unknown:
        print(f"pywg interop: unknown scenario {', '.join(unknown)} (see --list)", file=sys.stderr)
        return 2
    try:
        require_root()
    except LabError as exc:
        print(f"pywg interop: {exc}", file=sys.stderr)
        return 1

    def progress(result: Result) -> None:
        if not args.json:
            print(
                f"  {report.MARK[result.status]:<5} {result.scenario:<26} [{result.column}] "
                f"{result.seconds:.0f} s {result.reason}",
                file=sys.stderr,
                flush=True,
            )

    # SIGTERM (a CI timeout, `kill`) ends the run like Ctrl-C: every lab is
    # closed, so no namespace or daemon is left behind
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        results = run_suite(
            impls,
            scenarios=args.scenario or None,
            jobs=args.jobs,
            with_pairs=not args.hostile_only,
            progress=progress,
        )
    except LabError as exc:
        print(f"pywg interop: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        close_all_labs()
        print("pywg interop: interrupted; every lab was removed", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(report.as_json(results) if args.json else report.text(results))
    return 0 if all(r.status in ("pass", "skip") for r in results) else 1
