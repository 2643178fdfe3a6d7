"""Console texts: Slovenian first, English available (``?lang=en`` or the user's setting)."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "sl": {
        "title": "Klicni center: snemanje klicev",
        "login": "Prijava", "logout": "Odjava", "username": "Uporabniško ime",
        "password": "Geslo", "login_failed": "Napačno uporabniško ime ali geslo.",
        "callbacks": "Povratni klici", "caller": "Klicatelj", "line": "Linija",
        "due": "Rok", "left": "Preostalo", "overdue": "ZAMUJENO", "overload": "preobremenjenost",
        "decision": "Odločitev", "call_back": "Pokliči nazaj", "attempts": "Poskusi",
        "no_callbacks": "Ni odprtih povratnih klicev.",
        "revocation_phone": "Preklic soglasja (po telefonu)",
        "revocation_email": "Preklic soglasja (po e-pošti)",
        "number": "Številka", "received_at": "Prejeto", "note": "Opomba", "save": "Shrani",
        "revocations": "Preklici", "deadline": "Rok za izbris", "working_days_left":
        "delovnih dni", "fulfilled": "izpolnjeno", "certificates": "Potrdila o izbrisu",
        "expiries": "Bližnji izbrisi ob poteku hrambe", "audit": "Revizijska sled",
        "audit_ok": "veriga nedotaknjena", "audit_broken": "VERIGA PREKINJENA",
        "receipts": "Potrdila o soglasju", "search": "Išči", "export": "Izvoz podatkov",
        "recordings": "Prodajni posnetki (izobraževanje)", "play": "Predvajaj",
        "placed": "Klic je vzpostavljen", "forbidden": "Dostop zavrnjen.",
        "dpo": "Pooblaščena oseba", "agent": "Agent", "trainer": "Izobraževanje",
        "notice_at": "obvestilo podano ob {time}",
        "d_consent": "soglasje DA na vrnjenem klicu: ta klic BO posnet, obvestila ne ponavljajte",
        "d_sales": "prodajna linija (dokaz o poslu): ta klic BO posnet, obvestila ne ponavljajte",
        "d_not": "soglasje NE ({decision}): klic NE bo posnet, obvestila ne ponavljajte",
        "d_revoked": "soglasje preklicano: klic NE bo posnet",
        "d_notice": "klicatelj obvestila ni slišal: sistem ga najprej predvaja",
    },
    "en": {
        "title": "Call centre: call recording",
        "login": "Log in", "logout": "Log out", "username": "User name",
        "password": "Password", "login_failed": "Wrong user name or password.",
        "callbacks": "Callbacks", "caller": "Caller", "line": "Line",
        "due": "Due", "left": "Left", "overdue": "OVERDUE", "overload": "overload",
        "decision": "Decision", "call_back": "Call back", "attempts": "Attempts",
        "no_callbacks": "No open callbacks.",
        "revocation_phone": "Revocation of consent (by phone)",
        "revocation_email": "Revocation of consent (by e-mail)",
        "number": "Number", "received_at": "Received", "note": "Note", "save": "Save",
        "revocations": "Revocations", "deadline": "Deletion deadline", "working_days_left":
        "working days", "fulfilled": "fulfilled", "certificates": "Deletion certificates",
        "expiries": "Upcoming retention expiries", "audit": "Audit trail",
        "audit_ok": "chain intact", "audit_broken": "CHAIN BROKEN",
        "receipts": "Consent receipts", "search": "Search", "export": "Subject export",
        "recordings": "Sales recordings (training)", "play": "Play",
        "placed": "Call placed", "forbidden": "Access refused.",
        "dpo": "DPO", "agent": "Agent", "trainer": "Training",
        "notice_at": "notice given at {time}",
        "d_consent": "consent yes on the returned call: this call WILL be recorded, do not "
                     "repeat the notice",
        "d_sales": "sales line (evidence of a transaction): this call WILL be recorded, do "
                   "not repeat the notice",
        "d_not": "consent no ({decision}): NOT recorded, do not repeat the notice",
        "d_revoked": "consent revoked: NOT recorded",
        "d_notice": "the caller did not hear the notice: the system plays it first",
    },
}


def texts(language: str) -> dict[str, str]:
    return TEXTS.get(language, TEXTS["sl"])
