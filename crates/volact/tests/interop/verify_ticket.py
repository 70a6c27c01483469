#!/usr/bin/env python3
"""Verify a volact activation ticket with an independent PASETO implementation.

Uses only pyseto (pip install pyseto) and the Python standard library; no volact code.

    python3 verify_ticket.py INPUT.json

INPUT.json holds:
    root_public_key   the vendor root public key, PASERK "k4.public...." (from the
                      vendor bundle's root_public_key)
    host_certificate  the host certificate token (v4.public, signed by the vendor root)
    ticket            the activation ticket token (v4.public, signed by the host)
    client_id         the client id the ticket must name (sub)
    product           the product the ticket must name
    nonce             optional: the request nonce the ticket must echo

The chain is checked as a client checks it: the certificate verifies with the root key,
the ticket verifies with the host public key the certificate binds, and the ticket's
claims name this client, product and nonce. It also checks that a tampered ticket and a
ticket checked against the wrong key are rejected. Prints a JSON summary on stdout;
exits 0 only when every check passes.
"""

import json
import sys

import pyseto
from pyseto import Key


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def decode(key, token):
    """Verifies `token` with `key` (signature and exp) and returns the JSON claims."""
    decoded = pyseto.decode(key, token, deserializer=json)
    check(decoded.version == "v4", f"version is {decoded.version}, not v4")
    check(decoded.purpose == "public", f"purpose is {decoded.purpose}, not public")
    check(not decoded.footer, "a footer is present")
    check(isinstance(decoded.payload, dict), "the payload is not a JSON object")
    return decoded.payload


def rejected(key, token):
    """True when `token` does not verify with `key`."""
    try:
        pyseto.decode(key, token, deserializer=json)
    except Exception:  # any pyseto or decoding error is a rejection
        return True
    return False


def tamper(token):
    """Changes one character in the middle of the token's payload part."""
    prefix = "v4.public."
    body = token[len(prefix):]
    i = len(body) // 2
    replacement = "A" if body[i] != "A" else "B"
    return prefix + body[:i] + replacement + body[i + 1:]


def verify(inputs):
    root = Key.from_paserk(inputs["root_public_key"])

    cert = decode(root, inputs["host_certificate"])
    check(cert.get("typ") == "volact.host-certificate",
          f"certificate typ is {cert.get('typ')!r}")
    for field in ("sub", "host_public_key", "key_id", "products", "iat", "exp"):
        check(field in cert, f"certificate lacks {field}")

    host_key = Key.from_paserk(cert["host_public_key"])
    ticket = decode(host_key, inputs["ticket"])
    check(ticket.get("typ") == "volact.ticket", f"ticket typ is {ticket.get('typ')!r}")
    check(ticket.get("sub") == inputs["client_id"],
          f"ticket sub {ticket.get('sub')!r} is not client {inputs['client_id']!r}")
    check(ticket.get("product") == inputs["product"],
          f"ticket product {ticket.get('product')!r} is not {inputs['product']!r}")
    if inputs.get("nonce") is not None:
        check(ticket.get("nonce") == inputs["nonce"],
              f"ticket nonce {ticket.get('nonce')!r} is not {inputs['nonce']!r}")
    check(ticket.get("iss") == cert["sub"],
          f"ticket issuer {ticket.get('iss')!r} is not the certified host {cert['sub']!r}")
    check(ticket["product"] in cert["products"],
          "the certificate does not cover the ticket's product")
    check(isinstance(ticket.get("count"), int) and isinstance(ticket.get("minimum"), int),
          "count or minimum missing")
    check(ticket["count"] >= ticket["minimum"],
          f"count {ticket['count']} is below minimum {ticket['minimum']}")

    # Negative checks: the same verifier must refuse forgeries.
    check(rejected(host_key, tamper(inputs["ticket"])), "a tampered ticket verified")
    check(rejected(root, tamper(inputs["host_certificate"])),
          "a tampered certificate verified")
    check(rejected(root, inputs["ticket"]),
          "the ticket verified with the root key, but the host signs tickets")

    return {
        "ok": True,
        "host_id": cert["sub"],
        "host_key_id": cert["key_id"],
        "customer": cert.get("customer"),
        "certificate_expires": cert["exp"],
        "ticket_id": ticket.get("jti"),
        "client_id": ticket["sub"],
        "product": ticket["product"],
        "application": ticket.get("application"),
        "count": ticket["count"],
        "minimum": ticket["minimum"],
        "nonce": ticket.get("nonce"),
        "valid_until": ticket.get("exp"),
        "pyseto": getattr(pyseto, "__version__", "unknown"),
    }


def main(argv):
    if len(argv) != 2:
        print(json.dumps({"ok": False, "error": "usage: verify_ticket.py INPUT.json"}))
        return 2
    try:
        with open(argv[1], encoding="utf-8") as f:
            inputs = json.load(f)
        summary = verify(inputs)
    except Exception as err:  # report every failure as JSON and a non-zero exit
        print(json.dumps({"ok": False, "error": f"{type(err).__name__}: {err}"}))
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
