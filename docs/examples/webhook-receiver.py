"""A webhook receiver for trying Keyward out: prints each delivery and answers 204.

    python3 docs/examples/webhook-receiver.py            # listens on 127.0.0.1:9000

With WEBHOOK_SECRET set to the endpoint's whsec_ secret it also checks each signature,
as docs/webhooks.md describes (the standard library only; in production, prefer the
Standard Webhooks library of your language: `pip install standardwebhooks`).
"""

import base64
import hashlib
import hmac
import http.server
import json
import os
import time

SECRET = os.environ.get("WEBHOOK_SECRET")


def signed(headers, body):
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed_content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed_content, hashlib.sha256).digest()).decode()
    fresh = abs(time.time() - int(headers["webhook-timestamp"])) < 300
    offered = [s.split(",", 1)[1] for s in headers["webhook-signature"].split(" ")]
    return fresh and any(hmac.compare_digest(expected, s) for s in offered)


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        event = json.loads(body)
        check = "" if SECRET is None else (" signature ok" if signed(self.headers, body) else " BAD SIGNATURE")
        print(f"{self.headers['webhook-id']} {event['type']} {event['data']['id']}{check}", flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", 9000), Receiver).serve_forever()
