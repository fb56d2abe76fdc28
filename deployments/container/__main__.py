"""Build the edulake image with podman and run a real flow run inside it, as a worker would.

    python -m deployments.container [--base localhost/edulake-base:bookworm] [--skip-build]

1. `podman build` the Dockerfile (base image given with --base, see base-image.sh);
2. start a local Prefect server, deploy prefect.yaml with its production pull step
   (/opt/edulake, in the image) and create a Clever run on the bundled test data;
3. start the image exactly as the Docker and ECS workers do (PREFECT_API_URL,
   PREFECT__FLOW_RUN_ID, `python -m prefect.engine`) and report the run's final state.
Not part of CI (it needs podman and root); see docs/deployments.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import yaml

from deployments.local.stack import LocalStack, free_port
from deployments.project import REPO_ROOT, deployments, load_project

IMAGE = "localhost/edulake:dev"


def build(base: str, image: str) -> None:
    """podman build the Dockerfile on a local base image (host network for pip)."""
    subprocess.run(
        [
            "podman",
            "build",
            "--format",
            "docker",
            "--network=host",
            "--build-arg",
            f"PYTHON_IMAGE={base}",
            "-t",
            image,
            str(REPO_ROOT),
        ],
        check=True,
    )


def image_prefect_file(dest: Path) -> Path:
    """prefect.yaml without build/push (the image exists), with its production pull step."""
    project = load_project()
    project["build"] = None
    project["push"] = None
    for entry in deployments(project):
        entry["work_pool"]["job_variables"] = {}
    dest.write_text(yaml.safe_dump(project, sort_keys=False), encoding="utf-8")
    return dest


def run_in_image(image: str, home: Path) -> str:
    """Deploy, create a Clever test-data run, execute it in the image; its final state."""
    stack = LocalStack(home=home, port=free_port(), ui=False)
    stack.start_server()
    try:
        stack.create_pool()
        # prefect.yaml's LibInsight variables must exist at deploy time: the demo server's.
        stack.extra_env.update(stack.start_libinsight_demo())
        stack.create_blocks()
        stack.prefect("deploy", "--all", "--prefect-file", str(image_prefect_file(home / "p.yaml")))
        out = stack.prefect(
            "deployment",
            "run",
            "clever-participation/clever-backfill",
            "--param",
            "source=testdata",
            "--param",
            "demo=true",
            "--param",
            "lake_root=/tmp/lake",
            "--param",
            'testdata={"days": 1, "students": 50}',
        )
        run_id = next(line.split()[-1] for line in out.splitlines() if "UUID" in line)
        print(f"flow run {run_id}: starting {image} as a worker would")
        subprocess.run(
            [
                "podman",
                "run",
                "--rm",
                "--network=host",
                "-e",
                f"PREFECT_API_URL={stack.api_url}",
                "-e",
                f"PREFECT__FLOW_RUN_ID={run_id}",
                image,
                "python",
                "-m",
                "prefect.engine",
            ],
            check=False,
        )
        state = httpx.get(f"{stack.api_url}/flow_runs/{run_id}", timeout=10).json()["state"]
        return str(state["type"])
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    """Build (unless --skip-build), run, and exit 0 only if the run completed."""
    parser = argparse.ArgumentParser(prog="python -m deployments.container", description=__doc__)
    parser.add_argument("--base", default="localhost/edulake-base:bookworm")
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--skip-build", action="store_true")
    args = parser.parse_args(argv)
    if not args.skip_build:
        build(args.base, args.image)
    with tempfile.TemporaryDirectory(prefix="edulake-container-") as home:
        state = run_in_image(args.image, Path(home))
    print(f"flow run finished: {state}")
    return 0 if state == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
