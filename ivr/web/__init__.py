"""The web console: agents (callbacks), the DPO (revocations, deletions, audit, receipts)
and trainers (sales recordings), each seeing only their pages."""
