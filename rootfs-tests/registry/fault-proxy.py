#!/usr/bin/env python3
"""A fault-injecting proxy in front of the plain-HTTP test registry, for rootfs-tests/registry.rs.

Requests for /v2/fault/MODE/... are forwarded to BACKEND as /v2/test/oci/..., with MODE's fault:

  cut       a GET of a layer blob (over 64 KiB) without a Range header sends half its bytes,
            then closes the connection (a ranged GET is served)
  r429      every other GET of a manifest is answered 429 with Retry-After: 1
  r503      every other GET of each blob is answered 503
  flip      layer blobs (over 64 KiB) arrive with one byte changed
  big       manifests are answered with 5 MiB of JSON
  redirect  asks for Basic credentials, then redirects blobs to http://localhost:PORT/direct/...

/direct/PATH forwards PATH to BACKEND. One log line per request: mode, method, path, the Range
header, whether an Authorization header came (never its value), status and body bytes sent.

    fault-proxy.py PORT BACKEND_PORT LOG
"""
import http.client
import http.server
import sys
import threading

port, backend_port, log_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
counts = {}
lock = threading.Lock()


def first(key):
    """True for the 1st, 3rd, 5th... request with this key: every pull meets the fault once."""
    with lock:
        counts[key] = counts.get(key, 0) + 1
        return counts[key] % 2 == 1


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_HEAD(self):
        self.handle_any(head=True)

    def do_GET(self):
        self.handle_any(head=False)

    def handle_any(self, head):
        path = self.path
        if path.startswith("/direct/"):
            return self.forward("direct", path[len("/direct"):], head)
        if path == "/v2/" or path == "/v2":
            return self.forward("ping", "/v2/", head)
        parts = path.split("/")
        if len(parts) < 5 or parts[1] != "v2" or parts[2] != "fault":
            return self.reply("?", 404, b"")
        mode, rest = parts[3], "/".join(parts[4:])
        backend = "/v2/test/oci/" + rest
        kind = "blob" if rest.startswith("blobs/") else "manifest"
        if mode == "redirect" and "Authorization" not in self.headers:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="fault"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return self.log(mode, 401, 0)
        if mode == "r429" and kind == "manifest" and not head and first(("429", path)):
            return self.reply(mode, 429, b"", {"Retry-After": "1"})
        if mode == "r503" and kind == "blob" and first(("503", path)):
            return self.reply(mode, 503, b"")
        if mode == "big" and kind == "manifest":
            body = b'{"schemaVersion":2,"x":"' + b"a" * (5 << 20) + b'"}'
            return self.reply(mode, 200, body, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        if mode == "redirect" and kind == "blob":
            location = f"http://localhost:{port}/direct{backend}"
            return self.reply(mode, 307, b"", {"Location": location})
        return self.forward(mode, backend, head, kind)

    def forward(self, mode, backend, head, kind="other"):
        conn = http.client.HTTPConnection("127.0.0.1", backend_port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "range")}
        conn.request("HEAD" if head else "GET", backend, headers=headers)
        resp = conn.getresponse()
        body = b"" if head else resp.read()
        extra = {k: v for k, v in resp.getheaders()
                 if k.lower() in ("content-type", "docker-content-digest", "content-range")}
        if mode == "flip" and kind == "blob" and len(body) > 65536:
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1:]
        big_blob = kind == "blob" and len(body) > 65536
        if mode == "cut" and big_blob and not head and resp.status == 200 and "Range" not in self.headers:
            self.send_response(200)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            half = body[: len(body) // 2]
            self.wfile.write(half)
            self.wfile.flush()
            self.log(mode, "200-cut", len(half))
            self.close_connection = True
            return
        length = resp.getheader("Content-Length") if head else str(len(body))
        self.reply(mode, resp.status, body, extra, length)

    def reply(self, mode, status, body, headers=None, length=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", length or str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.log(mode, status, len(body))

    def log(self, mode, status, sent):
        line = (f"{mode} {self.command} {self.path} range={self.headers.get('Range', '-')} "
                f"auth={'yes' if 'Authorization' in self.headers else 'no'} status={status} bytes={sent}")
        with open(log_file, "a") as f:
            f.write(line + "\n")

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
