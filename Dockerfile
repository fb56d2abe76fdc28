# edulake flow-run image: the flows, their pinned dependencies, nothing else.
# Build:  docker build -t edulake:dev .      (or podman build, see docs/deployments.md)
# Workers (ECS, Docker) start containers from this image and run one flow run each;
# the deployment's pull step sets the working directory to /opt/edulake.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1 \
    PREFECT_LOGGING_EXTRA_LOGGERS=edulake

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

WORKDIR /opt/edulake

# Dependencies first, from the project metadata and the exact pins, so that code
# changes reuse this (slow) layer. Only the runtime dependencies: no dev extras.
COPY pyproject.toml constraints.txt ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && python -m pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# A fixed, unprivileged user; flow runs never need root.
RUN groupadd --system --gid 10001 edulake \
    && useradd --system --uid 10001 --gid edulake --create-home --home-dir /home/edulake edulake

# The code only (see .dockerignore: no tests, test data, lake, venv or env files).
COPY edulake/ edulake/
COPY tasks/ tasks/
COPY flows/ flows/
COPY deployments/ deployments/
COPY prefect.yaml ./

# The code is run from its folder (deployment entrypoints are paths relative to it).
ENV PYTHONPATH=/opt/edulake \
    HOME=/home/edulake \
    PREFECT_HOME=/home/edulake/.prefect

USER 10001:10001

# Build-time smoke check: every flow module and every prefect.yaml entrypoint imports.
RUN python -m deployments.smoke

CMD ["python", "-m", "deployments.smoke"]
