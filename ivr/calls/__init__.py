"""Calls in the application: one task per call, fed the call's events in order."""
