"""Stand-in for nixpkgs.prometheus, made to run the nix-aurora examples
offline: it takes the flags the prometheus example passes, checks that its
config file was rendered, and serves Prometheus's management API
(GET /-/healthy and /-/ready, POST or PUT /-/quit with
--web.enable-lifecycle) on --web.listen-address. It scrapes nothing and
stores nothing. SIGTERM stops it with status 0, as it stops Prometheus."""

import os
import signal
import sys
import threading

try:
    from http.server import BaseHTTPRequestHandler, HTTPServer
except ImportError:  # Python 2
    from BaseHTTPServer import BaseHTTPRequestHandler, HTTPServer

NAME = "prometheus (stand-in)"


def fail(message):
    sys.stderr.write("%s: %s\n" % (NAME, message))
    sys.exit(1)


def parse(argv):
    flags = {"config.file": "prometheus.yml", "web.listen-address": "0.0.0.0:9090",
             "storage.tsdb.path": "data/", "web.enable-lifecycle": False}
    for arg in argv:
        if not arg.startswith("--"):
            fail("unexpected argument %r" % arg)
        key, eq, value = arg[2:].partition("=")
        if key == "web.enable-lifecycle" and not eq:
            flags[key] = True
        elif key in flags and eq and key != "web.enable-lifecycle":
            flags[key] = value
        else:
            sys.stderr.write("%s: ignoring %s\n" % (NAME, arg))
    return flags


def main():
    flags = parse(sys.argv[1:])
    try:
        with open(flags["config.file"]) as f:
            config = f.read()
    except (IOError, OSError) as e:
        fail("cannot read the config file %s: %s" % (flags["config.file"], e))
    if "{{" in config:
        fail("the config file %s has unbound Thermos bindings: %r" % (flags["config.file"], config))
    storage = flags["storage.tsdb.path"]
    if not os.path.isdir(storage):
        os.makedirs(storage)
    host, _, port = flags["web.listen-address"].rpartition(":")
    if not port.isdigit():
        fail("--web.listen-address=%s: no port" % flags["web.listen-address"])
    lifecycle = flags["web.enable-lifecycle"]

    class Handler(BaseHTTPRequestHandler):
        def reply(self, code, body, quit=False):
            data = body.encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            if quit:
                sys.stderr.write("%s: %s %s: shutting down\n" % (NAME, self.command, self.path))
                threading.Thread(target=server.shutdown).start()

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/-/healthy":
                self.reply(200, "Prometheus Server is Healthy.\n")
            elif path == "/-/ready":
                self.reply(200, "Prometheus Server is Ready.\n")
            elif path == "/":
                self.reply(200, "%s, config %s\n" % (NAME, flags["config.file"]))
            elif path == "/-/quit":
                self.reply(405, "Only POST or PUT requests allowed\n")
            else:
                self.reply(404, "404 page not found\n")

        do_HEAD = do_GET

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if self.path.split("?", 1)[0] != "/-/quit":
                self.reply(404, "404 page not found\n")
            elif not lifecycle:
                self.reply(403, "Lifecycle API is not enabled.\n")
            else:
                self.reply(200, "Requesting termination... Goodbye!", quit=True)

        do_PUT = do_POST

        def log_message(self, format, *args):
            sys.stderr.write("%s: %s\n" % (NAME, format % args))

    try:
        server = HTTPServer((host, int(port)), Handler)
    except (IOError, OSError) as e:
        fail("cannot listen on %s: %s" % (flags["web.listen-address"], e))
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    sys.stderr.write("%s: listening on %s, config %s, lifecycle API %s\n" % (
        NAME, flags["web.listen-address"], flags["config.file"],
        "enabled" if lifecycle else "disabled"))
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
