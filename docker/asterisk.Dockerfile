# Asterisk 22 from Debian unstable: the packages the native test PBX debootstraps into its
# root (testpbx/packages/asterisk-root.txt, read by testpbx/root.py too), installed without
# recommends as debootstrap does. Its configuration is not in the image: the pbx-config
# one-shot (docker/render_pbx.py) renders asterisk-conf/ into the pbx-etc volume, and
# /etc/asterisk points there.
FROM debian:sid
ARG DEBIAN_FRONTEND=noninteractive
COPY testpbx/packages/asterisk-root.txt /tmp/asterisk-root.txt
RUN apt-get update \
 && sed 's/#.*//' /tmp/asterisk-root.txt | xargs -r apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/asterisk-root.txt \
 && /usr/sbin/asterisk -V | grep -q '^Asterisk 22' \
 && rm -rf /etc/asterisk \
 && ln -s /srv/pbx/root/etc/asterisk /etc/asterisk \
 && install -d /var/cache/asterisk /var/lib/asterisk /var/log/asterisk /var/run/asterisk \
      /var/spool/asterisk \
 && install -d -m 0750 /var/spool/asterisk/ivr-recordings /var/spool/asterisk/ivr-unattended
# The directories Asterisk writes to exist before it starts, as testpbx/asterisk.py makes
# them in the native root (no systemd here to create /var/run/asterisk). It runs as natively:
# in the foreground, as the owner of its directories (no runuser), the files it writes
# (recordings) not readable by others.
CMD ["sh", "-c", "umask 027 && exec /usr/sbin/asterisk -f -n -q"]
