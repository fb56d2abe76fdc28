#!/usr/bin/env bash
# A local Python 3.11 base image for podman/buildah where no registry can be pulled from:
# Debian bookworm (python3 3.11) via debootstrap, made to look like python:3.11-slim
# (`python` on PATH, pip allowed), imported as localhost/edulake-base:bookworm.
# Needs root, debootstrap and podman (apt-get install debootstrap podman buildah runc).
set -euo pipefail
IMAGE="${1:-localhost/edulake-base:bookworm}"
ROOTFS="$(mktemp -d)/rootfs"
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
  bookworm "$ROOTFS"
ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"
rm -f "$ROOTFS"/usr/lib/python3.*/EXTERNALLY-MANAGED
# The host's CA bundle, so pip works behind a TLS-inspecting proxy as it does on the host.
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
tar -C "$ROOTFS" -c . | podman import --change 'CMD ["python3"]' - "$IMAGE"
rm -rf "$(dirname "$ROOTFS")"
echo "base image: $IMAGE"
