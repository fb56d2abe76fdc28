"""Build the image with podman and run a deployment's flow run inside it, as a worker would."""
