"""The recording policy as pure functions: lines, numbers, notices, consent, deadlines."""
