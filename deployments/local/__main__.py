"""One command to a local Prefect with every edulake deployment scheduled.

    python -m deployments.local up      # server + process worker on 127.0.0.1:4200, deploy all
    python -m deployments.local down    # stop exactly what `up` started

State (database, logs, pid files) lives in .prefect/local/ in the checkout (git-ignored).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from deployments.local.stack import (
    FANOUT_LIMIT,
    FANOUT_SLOTS,
    LOCAL_POOL,
    LocalStack,
    StackError,
)
from deployments.project import REPO_ROOT

DEFAULT_HOME = REPO_ROOT / ".prefect" / "local"


def _stack(args: argparse.Namespace) -> LocalStack:
    """The stack the command line describes."""
    extra_env = (
        {"EDULAKE_LAKE__ROOT": str(Path(args.lake_root).resolve())} if args.lake_root else {}
    )
    return LocalStack(home=args.home, port=args.port, pool=args.pool, extra_env=extra_env)


def up(stack: LocalStack) -> None:
    """Start server and worker, create the pool, deploy everything, say where to look."""
    print(f"starting prefect server on {stack.ui_url} (state in {stack.home})")
    stack.start_server()
    try:
        stack.create_pool()
        stack.create_lake_limit()
        stack.create_lake_limit(FANOUT_LIMIT, FANOUT_SLOTS)  # fan-out children in flight
        if not os.environ.get("EDULAKE_LIBINSIGHT_BASE_URL"):
            demo = stack.start_libinsight_demo()
            stack.extra_env.update({k: v for k, v in demo.items() if k not in os.environ})
            print(
                f"LibInsight deployments point at the bundled demo server {demo['EDULAKE_LIBINSIGHT_BASE_URL']}"
            )
        # A fresh local install gets its own random pseudonymization key (kept across ups).
        print(stack.create_blocks("--generate-hmac-key").rstrip())
        print(f"deploying prefect.yaml to process pool {stack.pool!r} (no image build)")
        stack.deploy_all()
        stack.start_worker()
    except BaseException:
        stack.stop()
        raise
    print(stack.prefect("deployment", "ls"))
    print(
        f"UI: {stack.ui_url}/deployments   (schedules are active; logs in {stack.home})\n"
        f"Try a run on the bundled test data:\n"
        f"  PREFECT_API_URL={stack.api_url} prefect deployment run "
        f"clever-participation/clever-backfill --param source=testdata --param demo=true --watch\n"
        f"Stop: python -m deployments.local down"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run `up` or `down`."""
    parser = argparse.ArgumentParser(
        prog="python -m deployments.local",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="state folder")
    parser.add_argument("--pool", default=LOCAL_POOL, help="process work pool name")
    parser.add_argument(
        "--lake-root",
        default=str(REPO_ROOT / "lake"),
        help="lake root for flow runs that do not pass one (EDULAKE_LAKE__ROOT)",
    )
    args = parser.parse_args(argv)
    stack = _stack(args)
    try:
        if args.command == "up":
            up(stack)
        else:
            stopped = stack.stop()
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
