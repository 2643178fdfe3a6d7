"""Jobs that enforce deadlines: retention deletion (rule 6), revocation deletion (rule 8)."""
