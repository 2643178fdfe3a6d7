"""The native test PBX: Asterisk 22 from Debian unstable in a debootstrapped root, run under
chroot on 127.0.0.1, with SIPp as callers and agents. Used by ``make test``, ``make up``
and ``make demo``; never by the service itself."""
