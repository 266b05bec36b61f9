"""What the worker reads in an email, and how it answers: the parts that need no server."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

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


# -- hostile headers: an encoded-word may decode to anything -------------------------------

CRLF_HEADERS = (
    b"From: =?utf-8?q?Evil=0D=0ABcc=3A_boss=40example.org?= <evil@example.org>\r\n"
    b"To: bookings@luigi.example\r\n"
    b"Subject: =?utf-8?q?Booking=0D=0ABcc=3A_victim=40example.org?=\r\n"
    b"Message-ID: <crlf@example.org>\r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\ntable for 2 tomorrow at 7pm\r\n"
)


def test_encoded_line_breaks_in_subject_and_from_name_are_read_as_one_line() -> None:
    inbound = parse_email(CRLF_HEADERS)
    assert inbound.subject == "Booking Bcc: victim@example.org"
    assert inbound.sender == "evil@example.org" and inbound.sender_name == "Evil Bcc: boss@example.org"
    assert "Subject: InvalidHeaderDefect" in inbound.defects


def test_a_reply_to_mail_with_encoded_line_breaks_has_no_injected_header() -> None:
    reply = build_reply(parse_email(CRLF_HEADERS), "What time would suit you?", "bookings@luigi.example")
    sent = message_from_bytes(reply.as_bytes(), policy=policy.default)
    assert sent["Subject"] == "Re: Booking Bcc: victim@example.org"
    assert sent["Bcc"] is None and sent["To"] == "evil@example.org"


def test_unicode_line_separators_in_a_subject_do_not_break_the_reply() -> None:
    # str.splitlines() breaks on U+2028, and the email package refuses a header it splits.
    inbound = parse_email(mail(Subject="=?utf-8?q?Table=E2=80=A8for_two?="))
    assert inbound.subject == "Table for two"
    assert build_reply(inbound, "ok", "bookings@luigi.example")["Subject"] == "Re: Table for two"


def test_nul_and_control_characters_are_removed_before_storage() -> None:
    raw = (b"From: =?utf-8?q?Maria=00_Lopez?= <maria@example.org>\r\nSubject: =?utf-8?q?Booking=00=1B[31m?=\r\n"
           b"Message-ID: <nul@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           b"table for 2\x00 tomorrow\x1b[0m at 7pm\r\nthanks\x07\r\n")
    inbound = parse_email(raw)
    assert inbound.subject == "Booking [31m" and inbound.sender_name == "Maria Lopez"
    assert inbound.new_text == "table for 2 tomorrow[0m at 7pm\nthanks"


def test_mime_nested_too_deeply_is_a_problem_not_a_crash() -> None:
    depth = 2000
    raw = b"From: maria@example.org\r\nMessage-ID: <deep@example.org>\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    raw += b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth))
    raw += b"Content-Type: text/plain\r\n\r\ntable for 2\r\n"
    inbound = parse_email(raw)
    assert inbound.problem == "the MIME structure is nested too deeply to read"
    assert (inbound.message_id, inbound.sender, inbound.subject) == ("<deep@example.org>", "maria@example.org", "deep")


def test_only_the_headers_of_oversized_mail_are_read() -> None:
    whole = mail("table for 2 " + "x" * 5000)
    inbound = parse_email(whole[:1001], max_bytes=1000, size=len(whole))
    assert inbound.size == len(whole) and inbound.new_text == "" and inbound.subject == "Booking"


# -- loop guards: one test per header, and the worker's own addresses ----------------------

@pytest.mark.parametrize("header, value, reason", [
    ("X-Loop", "bookings@luigi.example", "X-Loop header"),
    ("List-Post", "<mailto:news@lists.example.org>", "List-Post header"),
    ("List-Help", "<mailto:news-help@lists.example.org>", "List-Help header"),
    ("Mailing-List", "contact news-help@lists.example.org; run by ezmlm", "Mailing-List header"),
])
def test_loop_guard_headers(header: str, value: str, reason: str) -> None:
    assert parse_email(mail(**{header.replace("-", "_"): value})).auto_generated == reason


def test_loop_guard_x_auto_response_suppress_asks_responders_not_to_answer() -> None:
    assert parse_email(mail(X_Auto_Response_Suppress="All")).auto_generated == "X-Auto-Response-Suppress: all"
    assert (parse_email(mail(X_Auto_Response_Suppress="DR, OOF, AutoReply")).auto_generated
            == "X-Auto-Response-Suppress: autoreply, oof")
    # Suppressing only delivery and read receipts says nothing about replies.
    assert parse_email(mail(X_Auto_Response_Suppress="DR, RN, NRN")).auto_generated is None


OWN = {"bookings@luigi.example", "reservations@luigi.example"}  # the worker's address and an alias


def test_a_plus_address_of_the_workers_own_address_is_its_own() -> None:
    own = parse_email(mail(From="Luigi's <Bookings+retry@Luigi.example>"), own_addresses=OWN)
    assert own.auto_generated == "sent by the worker's own address"
    for similar in ("bookingsx@luigi.example", "maria+bookings@luigi.example", "bookings@other.example"):
        assert parse_email(mail(From=similar), own_addresses=OWN).auto_generated is None, similar


def test_a_plus_address_of_an_alias_is_the_workers_own() -> None:
    own = parse_email(mail(From="reservations+fwd-2@luigi.example"), own_addresses=OWN)
    assert own.auto_generated == "sent by the worker's own address"


def test_replies_carry_x_loop_with_the_workers_address() -> None:
    assert build_reply(parse_email(mail()), "ok", "bookings@luigi.example")["X-Loop"] == "bookings@luigi.example"
