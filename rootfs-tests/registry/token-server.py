#!/usr/bin/env python3
"""A small Bearer token endpoint for the test registry (Debian's docker-registry with `auth.silly`,
which challenges with this realm and accepts any bearer token). It checks Basic credentials when
they are sent (refusing wrong ones with 401), and logs one line per request: the scope, and who
asked (`anonymous` or the user name), never the password.

    token-server.py PORT CERT KEY HTPASSWD_PLAIN LOG
"""
import base64
import http.server
import json
import ssl
import sys
import urllib.parse

port, cert, key, users_file, log_file = sys.argv[1:6]
USERS = dict(line.strip().split(":", 1) for line in open(users_file) if ":" in line)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        who = "anonymous"
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, password = base64.b64decode(auth[6:]).decode().split(":", 1)
            except Exception:
                user, password = "", None
            if USERS.get(user) != password:
                self.reply(401, {"details": "bad credentials"})
                self.log(f"refused {user}")
                return
            who = user
        self.log(f"{who} scope={query.get('scope', [''])[0]} service={query.get('service', [''])[0]}")
        self.reply(200, {"token": f"token-for-{who}", "expires_in": 300})

    def reply(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log(self, line):
        with open(log_file, "a") as f:
            f.write(line + "\n")

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
