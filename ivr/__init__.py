"""ivr: enforces a call centre's call-recording policy on an Asterisk PBX."""

__version__ = "0.1.0"
