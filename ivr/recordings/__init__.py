"""Recording files after MixMonitor: where they live (a node's spool, then the recording
store), moving them with their hash verified, reading and deleting them wherever they are."""
