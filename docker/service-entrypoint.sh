#!/bin/sh
# Render the PBX configuration and prompts into the shared volumes, migrate, then serve.
set -e
ivr asterisk-conf render --out /etc/asterisk-rendered --site "${IVR_SITE:-/opt/ivr/asterisk-conf/testpbx}" \
  --set agent1_port=5071 --set agent2_port=5072 --set customer_port=5080 \
  --set "agent_password=${IVR_AGENT_PASSWORD}"
ivr prompts build
ivr db upgrade
exec ivr serve
