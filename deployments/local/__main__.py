"""One command to a local Prefect with every edulake deployment scheduled.

    python -m deployments.local up      # server + process worker on 127.0.0.1:4200, deploy all
    python -m deployments.local down    # stop exactly what `up` started

State (database, logs, pid files) lives in .prefect/local/ in the checkout (git-ignored).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from deployments.local.stack import (
    FANOUT_LIMIT,
    FANOUT_SLOTS,
    LOCAL_POOL,
    LocalStack,
    StackError,
    prefect_executable,
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
    lake_root = Path(stack.extra_env.get("EDULAKE_LAKE__ROOT") or REPO_ROOT / "lake")
    print(
        f"UI: {stack.ui_url}/deployments   (schedules are active; logs in {stack.home})\n"
        f"Try a run on the bundled test data ({key_note(lake_root)}):\n"
        f"  {suggested_run(stack, lake_root)}\n"
        f"and a LibInsight run:\n"
        f"  {suggested_run(stack, lake_root, 'libinsight')}\n"
        f"Stop: {shown(Path(sys.executable))} -m deployments.local down"
    )


def shown(path: Path) -> str:
    """A path as a user in the checkout types it: relative inside it, absolute outside."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def is_demo_lake(lake_root: Path, source: str = "clever") -> bool:
    """Whether the lake's data of ``source`` was made with the public demo key (`make demo`,
    `make demo-libinsight`)."""
    from edulake.core.lake import Lake
    from edulake.privacy.keys import demo_history

    if not lake_root.is_dir():
        return False
    return demo_history(Lake(str(lake_root)), source)


def key_note(lake_root: Path) -> str:
    """Which key the suggested runs use, and why."""
    if is_demo_lake(lake_root):
        return f"{lake_root} was made by `make demo`: the run uses the demo key, like the demo"
    return f"into {lake_root}, pseudonymized with the key in the edulake-hmac-key block"


# The runs `up` suggests: deployment, its source's name in the lake, extra parameters.
SUGGESTED = {
    "clever": ("clever-participation/clever-backfill", ["source=testdata"]),
    "libinsight": ("libinsight-dataset/libinsight-weekly", []),
}


def suggested_run(stack: LocalStack, lake_root: Path, source: str = "clever") -> str:
    """A command `up` prints, ready to paste: the full path to prefect, the API URL, the
    lake, and the same key handling as ``make demo`` on a lake it made.

    A lake made by `make demo` holds the public demo key, and a lake that held it refuses
    any other key; so on it the run names no key block (``hmac_key_block=null``) and allows
    the demo key, exactly as the demo does. On any other lake the run uses the key block
    `up` created, so the lake takes the scheduled runs' key."""
    deployment, extra = SUGGESTED[source]
    argv = [
        f"PREFECT_API_URL={stack.api_url}",
        shown(Path(prefect_executable())),
        "deployment",
        "run",
        deployment,
    ]
    for param in [*extra, f"lake_root={lake_root}"]:
        argv += ["--param", param]
    if is_demo_lake(lake_root, source):
        argv += ["--param", "demo=true", "--param", "hmac_key_block=null"]
    return shlex.join([*argv, "--watch"])


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run `up` or `down`."""
    parser = argparse.ArgumentParser(
        prog="python -m deployments.local",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["up", "down"], help="start (up) or stop (down)")
    parser.add_argument(
        "--port", type=int, default=4200, help="port of the server and UI on 127.0.0.1 (4200)"
    )
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
