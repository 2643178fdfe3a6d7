"""Shells around Asterisk: ARI (REST + events), AMI, and the configuration it runs."""
