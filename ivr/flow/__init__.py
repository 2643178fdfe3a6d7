"""The call flow as a pure state machine: ``step(call, event) -> (call, commands)``.

No I/O here: the shell (``ivr/calls/``) turns ARI/AMI/database results into events and
carries out the commands. Every (phase, event) pair is in one table; anything else raises.
"""
