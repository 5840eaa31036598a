#!/usr/bin/env python3
"""tiny_server.py PORT DIR: a misbehaving symbol server on 127.0.0.1 for test_symstore.
  /drop/<path>      announces the file's full length, sends half of it, then closes
  /html/<path>      answers 200 with an HTML page (a proxy or dead server)
  /redirect/<path>  answers 302 to /file/<path>
  /file/<path>      serves DIR/<path>, or 404
  /slow/<path>      serves DIR/<path> in 20 pieces over about 1 s"""
import http.server
import os
import sys
import time

port, root = int(sys.argv[1]), sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def body_of(self, rel):
        p = os.path.join(root, rel)
        if not os.path.isfile(p):
            return None
        with open(p, "rb") as f:
            return f.read()

    def do_GET(self):
        kind, _, rel = self.path.lstrip("/").partition("/")
        if kind == "redirect":
            self.send_response(302)
            self.send_header("Location", "/file/" + rel)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if kind == "html":
            page = b"<html><body>Service moved</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        data = self.body_of(rel)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if kind == "drop":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if kind == "slow":
            step = (len(data) + 19) // 20
            for i in range(0, len(data), step):
                self.wfile.write(data[i : i + step])
                self.wfile.flush()
                time.sleep(0.05)
            return
        self.wfile.write(data)


http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
