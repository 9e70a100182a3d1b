#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Binds the abstract control channel @procimage/NAME, prints "ready", and answers every
# connection with REPLY (one JSON line) without reading it: a process squatting a host's name.
# Usage: squatter.py NAME REPLY
import socket
import sys

name, reply = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\0procimage/" + name)
s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    try:
        c.sendall(reply.encode() + b"\n")
    except OSError:
        pass
    c.close()
