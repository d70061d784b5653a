#!/usr/bin/env python3
"""A tiny plain-HTTP app for trying moat: it answers every request with the
request line and the headers it received, so you can see what moat forwards
(X-Forwarded-For, X-Forwarded-Proto, ...).  Loopback only."""
import http.server
import socketserver
import sys


class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        lines = [f"{self.command} {self.path} {self.request_version}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        text = ("hello from the demo app behind moat\n\n" + "\n".join(lines) + "\n").encode()
        if body:
            text += b"\n(request body: %d bytes)\n" % len(body)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(text)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, fmt, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    with Server(("127.0.0.1", port), Echo) as srv:
        srv.serve_forever()
