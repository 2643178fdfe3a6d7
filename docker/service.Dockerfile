# The ivr service: the same package, prompts and migrations as the native harness.
FROM debian:bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv espeak-ng sox \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ivr
COPY pyproject.toml README.md alembic.ini ./
COPY ivr ivr
COPY testpbx testpbx
COPY migrations migrations
COPY prompts prompts
COPY asterisk-conf asterisk-conf
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -e .
ENV PATH=/opt/venv/bin:$PATH
COPY docker/service-entrypoint.sh /usr/local/bin/
ENTRYPOINT ["service-entrypoint.sh"]
