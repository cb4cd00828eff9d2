# A hostile neighbour squatting claim names: it binds every abstract unix
# socket address given ("@" for the leading NUL) and serves them in one
# way, printing "ready" once they are all bound, and on SIGTERM the number
# of connections it accepted.
#
# usage: python3 squatter.py MODE ADDRESS...
#   accept-close  accept every connection and close it at once
#   never-accept  listen with the smallest backlog, never accept
#   wrong-data    accept every connection, send a byte, keep it open
#   bind-only     bind without listening (connections are refused)
import os
import selectors
import signal
import socket
import sys

mode, names = sys.argv[1], sys.argv[2:]
accepted = 0
sel = selectors.DefaultSelector()
keep = []
for name in names:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(b"\0" + name[1:].encode())
    if mode != "bind-only":
        s.listen(0 if mode == "never-accept" else 128)
    if mode in ("accept-close", "wrong-data"):
        sel.register(s, selectors.EVENT_READ)
    keep.append(s)


def done(*_):
    # Not print: the signal may come while "ready" is being written.
    os.write(1, b"%d\n" % accepted)
    os._exit(0)


signal.signal(signal.SIGTERM, done)
os.write(1, b"ready\n")
while True:
    if mode not in ("accept-close", "wrong-data"):
        signal.pause()
        continue
    for key, _ in sel.select():
        c, _ = key.fileobj.accept()
        accepted += 1
        if mode == "wrong-data":
            try:
                c.send(b"x")
            except OSError:  # the waiter is gone already
                pass
            keep.append(c)
        else:
            c.close()
