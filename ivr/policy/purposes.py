"""Rule 7: purpose limitation. What a recording may be used for depends on its basis."""

from __future__ import annotations

PURPOSES = ("evidence", "training", "service_quality")
ALLOWED: dict[str, frozenset[str]] = {
    # sales: evidence of the transaction, and internal training within retention
    "legal_basis": frozenset({"evidence", "training"}),
    # consent: service quality (information, accuracy, caller satisfaction)
    "consent": frozenset({"service_quality"}),
}


def allowed(basis: str, purpose: str) -> bool:
    """Whether a recording made on ``basis`` may be used for ``purpose``.

    >>> allowed("legal_basis", "training"), allowed("consent", "training")
    (True, False)
    """
    return purpose in ALLOWED.get(basis, frozenset())
