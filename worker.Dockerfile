# The rslp worker image for Beaker fleets (`rslp launch --image ...`).
#
#   docker build -f worker.Dockerfile -t rslp-worker .
#   beaker image create --name rslp-worker rslp-worker
#
# CUDA: the pinned torch wheel from PyPI ships its own CUDA runtime libraries, and
# Beaker's NVIDIA container runtime supplies the driver, so a slim Python base runs
# on GPUs without carrying a second CUDA toolkit or a second torch. Python 3.11 is
# what pyproject.toml requires.
#
# No credentials live in the image: Beaker mounts the GCP key from a secret and sets
# GOOGLE_APPLICATION_CREDENTIALS per launch (see rslp/launch/config.py).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WANDB_MODE=disabled

RUN groupadd --gid 1000 rslp && useradd --create-home --uid 1000 --gid 1000 --shell /usr/sbin/nologin rslp

WORKDIR /opt/rslp
COPY pyproject.toml README.md ./
COPY rslp ./rslp
RUN pip install --no-cache-dir . && rm -rf build ./*.egg-info

# Workers run as the unprivileged rslp user (uid 1000) and write scratch and
# rslearn's working files under its home.
USER 1000:1000
WORKDIR /home/rslp

# Beaker specs pass the full command (`rslp worker --queue ...`); the entrypoint makes
# `docker run rslp-worker --queue pubsub://PROJECT --subscription S` work the same way.
ENTRYPOINT ["rslp", "worker"]
