"""A real SMTP server (aiosmtpd) that keeps every message it accepts, for Herald's email tests.

Usage: python smtp_sink.py DIR PORT

Listens on 127.0.0.1:PORT and writes each accepted message to DIR/<n>.json: the envelope
(mail_from, rcpt_tos), the raw message, and what Python's own email parser makes of it (headers,
and each leaf part's content type and decoded text), so a test checks the MIME structure with a
parser that is not the sender's.

Scripted answers, chosen by the recipient's local part (what real servers answer in each case):
  unknown…      RCPT  550 5.1.1 echoing the address (no such mailbox: the address is gone)
  throttled…    RCPT  450 4.2.1 (receiving mail too fast; SMTP has no Retry-After)
  unavailable…  RCPT  451 4.3.0 (temporarily rejected)
  oversized…    DATA  552 5.3.4 (message over the size limit), unless the message is text/plain
                      only (the trimmed form), which is accepted
  slow…         DATA  no answer for 60 s (the client's timeout decides)
AUTH (PLAIN, LOGIN; offered without TLS, this is a local test server) accepts only the login
`herald` with the password `secret`, and answers anything else 535 5.7.8. Mail without AUTH is
accepted too.
"""

import asyncio
import email
import email.policy
import json
import os
import signal
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"herald",
        b"secret",
    )
    if ok:
        return AuthResult(success=True)
    return AuthResult(
        success=False, handled=False, message="535 5.7.8 Authentication credentials invalid"
    )


class Keep:
    def __init__(self, folder):
        self.folder = folder
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("unknown"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address.startswith("throttled"):
            return "450 4.2.1 The user you are trying to contact is receiving mail too quickly"
        if address.startswith("unavailable"):
            return "451 4.3.0 Mail server temporarily rejected message"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        first = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        if first.startswith("slow"):
            await asyncio.sleep(60)
        if first.startswith("oversized") and message.get_content_type() != "text/plain":
            return "552 5.3.4 Message size exceeds fixed maximum message size"
        parts = []
        for part in message.walk():
            if part.is_multipart():
                continue
            parts.append({"contentType": part.get_content_type(), "content": part.get_content()})
        record = {
            "mailFrom": envelope.mail_from,
            "rcptTos": envelope.rcpt_tos,
            "contentType": message.get_content_type(),
            "headers": [[k, str(v)] for k, v in message.items()],
            "subject": str(message["subject"] or ""),
            "parts": parts,
            "raw": envelope.original_content.decode("utf-8", "replace"),
        }
        self.count += 1
        tmp = os.path.join(self.folder, f".{self.count}.json")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.folder, f"{self.count:06d}.json"))
        return "250 Message accepted for delivery"


def main():
    folder, port = sys.argv[1], int(sys.argv[2])
    os.makedirs(folder, exist_ok=True)
    controller = Controller(
        Keep(folder),
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_require_tls=False,
    )
    controller.start()
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with open(os.path.join(folder, "ready"), "w") as f:
        f.write(str(port))
    loop.run_until_complete(stop.wait())
    controller.stop()


if __name__ == "__main__":
    main()
