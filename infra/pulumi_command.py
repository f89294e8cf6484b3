"""Run one Pulumi command on one stack, the same way for people and for the infra workflow.

    STACK=prod COMMAND=preview python infra/pulumi_command.py      (what `make infra-run` does)
    python infra/pulumi_command.py --stack prod --command up

Every command runs non-interactively from infra/; preview and up also run the policy pack,
so a rule broken by a change stops it before anything is created.

The serving-image workflow deploys a new serving image by digest (SERVING_IMAGE) without
changing the stack's config, which it cannot commit. So that a later `up` from the config
does not roll the service back to an older image, `up` compares the config's
mlops:servingImage with the image the stack last deployed (its `servingImage` output) and
stops when they differ, naming both: set the config to the deployed digest (what the
workflow prints), or pass SERVING_IMAGE to deploy another image on purpose.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

INFRA = Path(__file__).resolve().parent
POLICY_PACK = INFRA / "policy"
COMMANDS = ("preview", "up", "refresh", "destroy")
STACK_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,2}$")
DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")


class UsageError(Exception):
    """A bad stack name or command; the message is one line."""


def pulumi_argv(*, command: str, stack: str, serving_image: str | None = None) -> list[str]:
    """The exact `pulumi` invocation for a command on a stack; `serving_image` (a digest,
    what the serving-image workflow pushed) overrides mlops:servingImage for an up."""
    if command not in COMMANDS:
        raise UsageError(f"command must be one of {', '.join(COMMANDS)}, got {command!r}")
    if not STACK_PATTERN.match(stack):
        raise UsageError(f"invalid stack name {stack!r}")
    argv = ["pulumi", command, "--stack", stack, "--cwd", str(INFRA), "--non-interactive"]
    if serving_image:
        if command not in {"preview", "up"} or not DIGEST_PATTERN.match(serving_image):
            raise UsageError(f"SERVING_IMAGE must be a digest sha256:<64 hex> for preview or "
                             f"up, got {serving_image!r}")
        argv += ["--config", f"mlops:servingImage={serving_image}"]
    if command in {"preview", "up"}:
        argv += ["--policy-pack", str(POLICY_PACK), "--diff"]
    if command in {"up", "refresh", "destroy"}:
        argv.append("--yes")
    return argv


def rollback_guard(*, configured: str | None, deployed: str | None) -> str | None:
    """Why an `up` from the config would change the serving image the stack last deployed,
    or None when it would not (the same image, or nothing deployed yet)."""
    if not deployed or configured == deployed:
        return None
    return (f"the stack serves {deployed} (deployed by the serving-image workflow) but "
            f"mlops:servingImage is {configured}: an up would roll the service back. Run "
            f"`pulumi config set mlops:servingImage {deployed}` (--cwd infra --stack STACK), "
            "or set SERVING_IMAGE to the digest you mean to deploy")


def _pulumi_value(argv: list[str]) -> str | None:
    """One value printed by the pulumi CLI, or None when it has none (a first up)."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    value = done.stdout.strip()
    return value if done.returncode == 0 and value else None


def deployed_and_configured(stack: str) -> tuple[str | None, str | None]:
    where = ["--stack", stack, "--cwd", str(INFRA)]
    return (_pulumi_value(["pulumi", "stack", "output", "servingImage", *where]),
            _pulumi_value(["pulumi", "config", "get", "mlops:servingImage", *where]))


def parse(argv: Sequence[str], env: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default=env.get("STACK"), help="stack name (env STACK)")
    parser.add_argument(
        "--command", default=env.get("COMMAND"), choices=COMMANDS, help="env COMMAND"
    )
    args = parser.parse_args(argv)
    if not args.stack or not args.command:
        parser.error("set --stack and --command (or STACK and COMMAND)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv, os.environ)
    try:
        command = pulumi_argv(command=args.command, stack=args.stack,
                              serving_image=os.environ.get("SERVING_IMAGE") or None)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if shutil.which("pulumi") is None:
        print("error: the pulumi CLI is not on PATH (see docs/infra.md)", file=sys.stderr)
        raise SystemExit(2)
    if args.command == "up" and not os.environ.get("SERVING_IMAGE"):
        deployed, configured = deployed_and_configured(args.stack)
        reason = rollback_guard(configured=configured, deployed=deployed)
        if reason:
            print(f"error: {reason}", file=sys.stderr)
            raise SystemExit(2)
    print("running:", " ".join(command), flush=True)
    os.execvp(command[0], command)  # noqa: S606 - a fixed argv, no shell


if __name__ == "__main__":
    main()
