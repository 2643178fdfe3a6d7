"""The capacity benchmark (make bench): the service against a dialplan-only baseline."""
