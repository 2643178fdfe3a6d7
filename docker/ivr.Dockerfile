# The ivr package on Debian 12 as the native harness runs it (an editable install, so the
# code finds asterisk-conf/, prompts/ and sipp/ beside it: docker-compose.yml mounts them
# from the repository, read-only). Two targets:
#   service  ivr serve, and the pbx-config one-shot that renders the PBX's configuration
#            and prompts (docker/render_pbx.py)
#   sipp     SIPp with the native harness's scenario runner (docker/sipp_flows.py)
# The Debian packages of each target are the host's (testpbx/packages/host.txt, the targets
# in its third column), the ones scripts/install-system-deps.sh installs natively.
FROM debian:bookworm AS python
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ivr
COPY pyproject.toml README.md alembic.ini ./
COPY ivr ivr
COPY testpbx testpbx
COPY bench bench
COPY migrations migrations
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -e .
ENV PATH=/opt/venv/bin:$PATH
COPY docker/image-packages.sh docker/

FROM python AS service
ARG DEBIAN_FRONTEND=noninteractive
RUN packages=$(sh docker/image-packages.sh testpbx/packages/host.txt service) \
 && apt-get update \
 && apt-get install -y --no-install-recommends $packages \
 && rm -rf /var/lib/apt/lists/*
COPY docker/render_pbx.py docker/
# As deploy/ivr.service: migrations first, recordings and exports never readable by others.
CMD ["sh", "-c", "umask 027 && ivr db upgrade && exec ivr serve"]

FROM python AS sipp
ARG DEBIAN_FRONTEND=noninteractive
RUN packages=$(sh docker/image-packages.sh testpbx/packages/host.txt sipp) \
 && apt-get update \
 && apt-get install -y --no-install-recommends $packages \
 && rm -rf /var/lib/apt/lists/*
COPY docker/sipp_flows.py docker/
ENTRYPOINT ["python", "/opt/ivr/docker/sipp_flows.py"]
CMD ["--help"]
