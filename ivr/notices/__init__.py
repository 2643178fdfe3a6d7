"""The notices callers hear: their texts, versions and the audio that was played."""
