"""A further node of the test PBX on the same machine: several Asterisk servers, each with
its own ``ivr serve``, sharing one PostgreSQL.

The first node keeps the defaults (SIP 5060/udp, ARI 8088, AMI 5038, FastAGI 4573, HTTP
reports 4574, console 8080, RTP 10000-20000, Asterisk's usual directories). A further node
reuses the same cached root; what differs is its name, its ports and the directories
Asterisk writes to inside the root (``/etc/asterisk-<name>``, ``/var/spool/asterisk-<name>``,
...), so that two Asterisks never share a configuration, a control socket, an astdb or a spool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The node setting's own pattern (ivr/settings.py): the name also names directories.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# asterisk.conf [directories] a node has for itself; the rest (modules, sounds, music on
# hold, keys) is read only and shared.
OWN_DIRECTORIES = ("astetcdir", "astcachedir", "astdbdir", "astspooldir", "astrundir",
                   "astlogdir")
FURTHER = range(2, 6)  # RTP ranges end below 30000, where SIPp's media ports start


@dataclass(frozen=True)
class Node:
    name: str
    sip_port: int
    http_port: int
    ami_port: int
    fastagi_port: int
    report_port: int  # the HTTP listener for the notice's decision
    web_port: int
    rtp_start: int
    rtp_end: int

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"node name {self.name!r}: letters, digits, '.', '_' or '-', "
                             "at most 63 characters")

    def inside(self, directory: str) -> str:
        """This node's own copy of one of Asterisk's directories, as Asterisk sees it:
        ``/var/spool/asterisk`` -> ``/var/spool/asterisk-<name>``."""
        return f"{directory.rstrip('/')}-{self.name}"

    def ports(self) -> list[tuple[int, str]]:
        return [(self.sip_port, "udp"), (self.http_port, "tcp"), (self.ami_port, "tcp"),
                (self.fastagi_port, "tcp"), (self.report_port, "tcp"), (self.web_port, "tcp")]


def further_node(index: int) -> Node:
    """Node ``index`` (2 to 5): ``node<index>``, on ports clear of the first node's and of
    the ports SIPp takes in the tests (5071-5080, 5090-5890, 6090-6490/udp; media from
    30000). Node 2: SIP 7060/udp, ARI 8188, AMI 5138, FastAGI 4673, HTTP reports 4674,
    console 8180, RTP 22000-23998; each further index adds 100 to the ports and 2000 to the
    RTP range."""
    if index not in FURTHER:
        raise ValueError(f"node index {index}: a further node is 2 to 5 (1 is the first node, "
                         "on the default ports)")
    step = index - 2
    return Node(name=f"node{index}", sip_port=7060 + 100 * step,
                http_port=8188 + 100 * step, ami_port=5138 + 100 * step,
                fastagi_port=4673 + 100 * step, report_port=4674 + 100 * step,
                web_port=8180 + 100 * step,
                rtp_start=22000 + 2000 * step, rtp_end=23998 + 2000 * step)
