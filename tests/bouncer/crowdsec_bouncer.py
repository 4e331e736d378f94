#!/usr/bin/env python3
"""A minimal CrowdSec bouncer, written against CrowdSec's published Local
API for bouncers (docs.crowdsec.net, "For bouncers"; the LAPI swagger's
GET /v1/decisions/stream), the way the firewall and nginx bouncers consume
it in stream mode:

- authenticate with the `X-Api-Key` header; a wrong key is answered 403;
- the first pull asks `startup=true` and gets every active decision;
- later pulls get what changed: `new` decisions to enforce, `deleted` ones
  to lift (either may be null);
- decisions carry id, origin, type, scope, value, duration, scenario.

It keeps the set of banned values and prints it after every pull, as one
JSON line; it pulls again each time a line arrives on stdin (so a test can
drive it step by step) and stops at end of input.
"""
import argparse
import json
import sys

import requests

REQUIRED = {"id": int, "origin": str, "type": str, "scope": str, "value": str, "duration": str, "scenario": str}


def check(decision):
    for field, kind in REQUIRED.items():
        if not isinstance(decision.get(field), kind):
            raise SystemExit(f"decision without a valid {field!r}: {decision}")
    if decision["type"] != "ban":
        raise SystemExit(f"unexpected decision type: {decision}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--scopes", default="ip,range")
    args = ap.parse_args()

    session = requests.Session()
    session.headers["User-Agent"] = "crowdsec-test-bouncer/1.0"
    # verify= on every call: REQUESTS_CA_BUNDLE would override a session's setting.
    wrong = session.get(f"{args.url}/v1/decisions/stream", params={"startup": "true"},
                        headers={"X-Api-Key": "not-a-key"}, timeout=10, verify=args.ca)
    print(json.dumps({"wrong_key_status": wrong.status_code}), flush=True)

    session.headers["X-Api-Key"] = args.key
    banned = {}
    startup = True
    pull = 0
    while True:
        r = session.get(f"{args.url}/v1/decisions/stream",
                        params={"startup": "true" if startup else "false", "scopes": args.scopes},
                        timeout=10, verify=args.ca)
        r.raise_for_status()
        body = r.json()
        if set(body) != {"new", "deleted"}:
            raise SystemExit(f"unexpected stream answer: {body}")
        new = body["new"] or []
        deleted = body["deleted"] or []
        for d in deleted:
            check(d)
            banned.pop(d["value"], None)
        for d in new:
            check(d)
            banned[d["value"]] = d
        print(json.dumps({
            "pull": pull,
            "new": sorted(d["value"] for d in new),
            "deleted": sorted(d["value"] for d in deleted),
            "scopes": sorted({d["scope"] for d in new}),
            "banned": sorted(banned),
        }), flush=True)
        startup = False
        pull += 1
        if not sys.stdin.readline():
            return


if __name__ == "__main__":
    main()
