"""Reads HTTP/1 requests with h11, as a server would, for the differential test
(tests/differential.rs).

One process reads every case of a run: each line of its input is a JSON object
{"max_head": N, "data": base64}, the bytes a client sends on one connection before
closing its side, and h11's reading of it is one line of output:
{"requests": [{"method", "target", "headers": [[name, value], ...], "body",
"trailers", "end"}], "error": text or null}. Byte strings are base64; `end` is the
offset in the case's bytes where that request ended. Every request h11 reads in full is
answered (200, no body), and the next one is read from the bytes that follow, until h11
says the connection must close, refuses the bytes, or they run out.
"""

import base64
import json
import sys

import h11


def b64(data):
    return base64.b64encode(bytes(data)).decode()


def parse(data, max_head):
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
    conn.receive_data(data)
    conn.receive_data(b"")
    requests = []
    current = None
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as e:
            return requests, "refused: %s" % e
        if isinstance(event, h11.Request):
            method = bytes(event.method)
            current = {
                "method": b64(event.method),
                "target": b64(event.target),
                # raw_items keeps the names as sent; the values are h11's (OWS trimmed,
                # obs-fold joined).
                "headers": [[b64(n), b64(v)] for n, v in event.headers.raw_items()],
                "body": b"",
            }
        elif isinstance(event, h11.Data):
            current["body"] += event.data
        elif isinstance(event, h11.EndOfMessage):
            current["body"] = b64(current["body"])
            current["trailers"] = [[b64(n), b64(v)] for n, v in event.headers.raw_items()]
            current["end"] = len(data) - len(conn.trailing_data[0])
            requests.append(current)
            current = None
            # CONNECT is refused (as the gateway does): a 2xx would switch protocols.
            status = 405 if method == b"CONNECT" else 200
            try:
                conn.send(h11.Response(status_code=status, headers=[("content-length", "0")]))
                conn.send(h11.EndOfMessage())
            except h11.LocalProtocolError as e:
                return requests, "could not answer: %s" % e
            if conn.our_state is h11.MUST_CLOSE:
                return requests, None
            conn.start_next_cycle()
        elif event is h11.NEED_DATA:
            # Only after the end of the bytes: an unfinished message.
            return requests, "incomplete" if current or conn.trailing_data[0] else None
        elif isinstance(event, h11.ConnectionClosed):
            return requests, None
        else:
            return requests, "unexpected event %r" % (event,)


def main():
    for line in sys.stdin:
        case = json.loads(line)
        requests, error = parse(base64.b64decode(case["data"]), case["max_head"])
        sys.stdout.write(json.dumps({"requests": requests, "error": error}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
