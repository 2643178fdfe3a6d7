# Asterisk 22 from Debian unstable, as the native test PBX builds it with debootstrap.
FROM debian:sid
RUN apt-get update \
 && apt-get install -y --no-install-recommends asterisk asterisk-moh-opsound-gsm \
 && rm -rf /var/lib/apt/lists/* /etc/asterisk/*
# /etc/asterisk is rendered by the service container into the shared volume.
CMD ["/usr/sbin/asterisk", "-f", "-n", "-q"]
