"""What the worker reads in an email, and how it answers: the parts that need no server."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

from channels.email.parse import build_reply, parse_email, reply_message_id, strip_quotes


def mail(body: str = "A table for 4 tomorrow at 7pm please", subtype: str = "plain", charset: str = "utf-8",
         **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Maria Lopez <maria@example.org>")
    msg["To"] = "bookings@luigi.example"
    msg["Subject"] = headers.pop("Subject", "Booking")
    msg["Message-ID"] = headers.pop("Message_ID", "<m1@example.org>")
    msg["Date"] = "Mon, 23 Nov 2026 09:00:00 +0000"
    for k, v in headers.items():
        msg[k.replace("_", "-")] = v
    msg.set_content(body, subtype=subtype, charset=charset)
    return msg.as_bytes()


def test_plain_text_mail_is_read_with_its_headers() -> None:
    inbound = parse_email(mail())
    assert inbound.message_id == "<m1@example.org>" and inbound.sender == "maria@example.org"
    assert inbound.sender_name == "Maria Lopez" and inbound.subject == "Booking"
    assert inbound.new_text == "A table for 4 tomorrow at 7pm please"
    assert inbound.date.isoformat() == "2026-11-23T09:00:00+00:00"
    assert inbound.auto_generated is None and inbound.thread_root == "<m1@example.org>"


def test_html_only_mail_becomes_text() -> None:
    inbound = parse_email(mail("<html><body><p>A table for <b>4</b></p><div>tomorrow at 7pm</div></body></html>", "html"))
    assert inbound.html_only
    assert "A table for 4" in inbound.new_text and "tomorrow at 7pm" in inbound.new_text


def test_non_utf8_charsets_and_encoded_headers() -> None:
    raw = (
        "From: =?iso-8859-1?q?Jos=E9_Mu=F1oz?= <jose@example.es>\r\n"
        "To: bookings@luigi.example\r\nSubject: =?iso-8859-1?q?Reserva_ma=F1ana?=\r\n"
        "Message-ID: <m2@example.es>\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\nMesa para 2 ma=F1ana, soy Jos=E9.\r\n"
    ).encode("ascii")
    inbound = parse_email(raw)
    assert inbound.sender_name == "José Muñoz" and inbound.subject == "Reserva mañana"
    assert inbound.new_text == "Mesa para 2 mañana, soy José."


def test_an_unknown_charset_still_reads() -> None:
    raw = (b"From: a@example.org\r\nMessage-ID: <m3@example.org>\r\nContent-Type: text/plain; charset=x-unknown-9\r\n\r\n"
           b"table for 2 \xe9t\xe9\r\n")
    inbound = parse_email(raw)
    assert inbound.new_text.startswith("table for 2")


def test_broken_mime_does_not_raise() -> None:
    raw = (b"From: a@example.org\r\nMessage-ID: <m4@example.org>\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n"
           b"--zz\r\nContent-Type: text/plain\r\n\r\ntable for 3 friday\r\n")  # never closed
    inbound = parse_email(raw)
    assert "table for 3 friday" in inbound.new_text


def test_quoted_replies_and_signatures_are_not_the_new_text() -> None:
    body = ("Yes, 7pm works. Maria\n\nOn Mon, 23 Nov 2026 at 09:00, Sam <sam@luigi.example> wrote:\n"
            "> What time would suit you?\n> \n")
    assert strip_quotes(body) == "Yes, 7pm works. Maria"
    signed = "Make it 5 people.\n\n-- \nMaria Lopez\nHead of Things\n+1 202 555 0143"
    assert strip_quotes(signed) == "Make it 5 people."
    outlook = ("Friday please\n\n________________________________\nFrom: Sam <sam@luigi.example>\n"
               "Sent: Monday, November 23, 2026 9:00 AM\nSubject: Booking\n\nWhat day?")
    assert strip_quotes(outlook) == "Friday please"


def test_attachments_are_kept_as_metadata() -> None:
    msg = message_from_bytes(mail(), policy=policy.default)
    msg.add_attachment(b"%PDF-1.4 menu", maintype="application", subtype="pdf", filename="menu.pdf")
    inbound = parse_email(msg.as_bytes())
    assert [(a.filename, a.content_type, a.size) for a in inbound.attachments] == [("menu.pdf", "application/pdf", 13)]
    assert inbound.new_text == "A table for 4 tomorrow at 7pm please"


def test_machine_mail_is_recognised() -> None:
    assert parse_email(mail(Auto_Submitted="auto-replied")).auto_generated == "Auto-Submitted: auto-replied"
    assert parse_email(mail(Auto_Submitted="no")).auto_generated is None
    assert parse_email(mail(Precedence="bulk")).auto_generated == "Precedence: bulk"
    assert parse_email(mail(X_Autoreply="yes")).auto_generated == "X-Autoreply header"
    assert parse_email(mail(List_Id="<news.example.org>")).auto_generated == "List-Id header"
    assert "MAILER-DAEMON" in parse_email(mail(From="MAILER-DAEMON@mx.example.org")).auto_generated.upper()
    own = parse_email(mail(From="bookings@luigi.example"), own_addresses={"bookings@luigi.example"})
    assert own.auto_generated == "sent by the worker's own address"
    bounce = EmailMessage()
    bounce["From"] = "mx@example.org"
    bounce["Message-ID"] = "<b@x>"
    bounce.make_mixed()
    bounce.replace_header("Content-Type", 'multipart/report; report-type=delivery-status; boundary="b"')
    assert parse_email(bounce.as_bytes()).auto_generated == "a delivery status report (bounce)"


def test_oversized_mail_is_not_read() -> None:
    inbound = parse_email(mail("x " * 5000), max_bytes=1000)
    assert inbound.size > 1000 and inbound.new_text == ""


def test_threads_follow_references_not_subjects() -> None:
    reply = parse_email(mail("Maria", Subject="Re: Booking", Message_ID="<m9@example.org>",
                             In_Reply_To="<reply-x@luigi.example>", References="<m1@example.org> <reply-x@luigi.example>"))
    assert reply.thread_root == "<m1@example.org>"
    same_subject = parse_email(mail("hello", Subject="Re: Booking", Message_ID="<other@example.org>"))
    assert same_subject.thread_root == "<other@example.org>"


def test_the_reply_is_threaded_marked_and_its_id_is_stable() -> None:
    inbound = parse_email(mail(Subject="Booking", References="<m0@example.org>", Message_ID="<m1@example.org>"))
    reply = build_reply(inbound, "What time would suit you?", "bookings@luigi.example", "Sam")
    assert reply["Subject"] == "Re: Booking" and reply["To"] == "maria@example.org"
    assert reply["In-Reply-To"] == "<m1@example.org>"
    assert reply["References"] == "<m0@example.org> <m1@example.org>"
    assert reply["Auto-Submitted"] == "auto-replied"
    again = build_reply(inbound, "What time would suit you?", "bookings@luigi.example", "Sam")
    assert reply["Message-ID"] == again["Message-ID"] == reply_message_id("<m1@example.org>", "luigi.example")
    assert build_reply(parse_email(mail(Subject="RE: Booking")), "x", "b@l.example")["Subject"] == "RE: Booking"
