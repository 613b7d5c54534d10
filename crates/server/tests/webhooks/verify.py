"""Checks Keyward's webhook deliveries with the Standard Webhooks reference library
(standardwebhooks on PyPI), an implementation that is not Keyward's own.

Reads {"secret": "whsec_...", "deliveries": [{"headers": {...}, "body": "..."}]} on
standard input; prints the verified payloads' types as a JSON list; exits 1 at the first
delivery that does not verify, and checks that a tampered body and a wrong secret fail.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

request = json.load(sys.stdin)
hook = Webhook(request["secret"])
types = []
for delivery in request["deliveries"]:
    payload = hook.verify(delivery["body"].encode(), delivery["headers"])
    types.append(payload["type"])
    for forged, headers in [
        (delivery["body"] + " ", delivery["headers"]),
        (delivery["body"], {**delivery["headers"], "webhook-id": "msg_forged"}),
    ]:
        try:
            hook.verify(forged.encode(), headers)
        except WebhookVerificationError:
            pass
        else:
            sys.exit("a tampered delivery verified")
try:
    Webhook("whsec_" + "A" * 32).verify(request["deliveries"][0]["body"].encode(), request["deliveries"][0]["headers"])
except WebhookVerificationError:
    pass
else:
    sys.exit("a delivery verified with another secret")
print(json.dumps(types))
