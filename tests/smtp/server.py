"""A real SMTP server for the e-mail tests (aiosmtpd).

Listens on 127.0.0.1 at the given port (0: any free port), prints `READY <port>` once
listening, and appends every accepted message to --out as one JSON line
(`{"mail_from", "rcpt_tos", "data"}`).

  --mode plain|starttls|tls   plain SMTP, STARTTLS required, or implicit TLS (SMTPS)
  --cert/--key PEM files      the server certificate for starttls and tls
  --auth USER:PASSWORD        require AUTH (PLAIN/LOGIN) with these credentials
  --delay SECONDS             answer each accepted message this late (it is recorded
                              first), like a slow relay: a sender that dies meanwhile
                              never learns that its message went out
"""

import argparse
import asyncio
import json
import logging
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Recorder:
    def __init__(self, out, delay):
        self.out = out
        self.delay = delay

    async def handle_DATA(self, server, session, envelope):
        line = json.dumps(
            {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "data": envelope.content.decode("utf-8", "replace"),
            }
        )
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        return "250 Message accepted for delivery"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        # handled=False: aiosmtpd answers 535 itself on failure.
        return AuthResult(success=ok, handled=False)

    return check


def quiet():
    """Keeps the test output for real failures: aiosmtpd's advice about AUTH without
    TLS (chosen on purpose here), its deprecation notes, and the tracebacks of TLS
    handshakes that the negative TLS tests break on purpose."""
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def ignore_broken_handshakes(loop, context):
    error = context.get("exception")
    if isinstance(error, (ssl.SSLError, ConnectionError)):
        return
    loop.default_exception_handler(context)


async def main():
    quiet()
    asyncio.get_running_loop().set_exception_handler(ignore_broken_handshakes)
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=["plain", "starttls", "tls"], default="plain")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--auth")
    parser.add_argument("--out", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()

    context = None
    if args.mode != "plain":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    options = {}
    if args.auth:
        user, password = args.auth.split(":", 1)
        options["authenticator"] = authenticator(user, password)
        options["auth_required"] = True
        # aiosmtpd counts only STARTTLS as TLS; on plain and SMTPS listeners AUTH must
        # be offered without it.
        options["auth_require_tls"] = args.mode == "starttls"
    if args.mode == "starttls":
        options["tls_context"] = context
        options["require_starttls"] = True

    handler = Recorder(args.out, args.delay)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="localhost", **options),
        host="127.0.0.1",
        port=args.port,
        ssl=context if args.mode == "tls" else None,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
