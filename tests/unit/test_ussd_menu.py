"""The devnet USSD service's menus and request parsing, with its real SQLite phone table (no HTTP)."""
import json
from urllib.parse import urlencode

import pytest

from devnet import ussd_menu
from devnet.ussd_menu import Dial, Menu, PhoneTable, Rejected, e164, parse_dial

CODES = ("*483*46#", "*483*061#")
PHONE = "+254712345678"


@pytest.fixture
def table(tmp_path):
    table = PhoneTable(tmp_path / "ussd.sqlite").open()
    yield table
    table.close()


@pytest.fixture
def menu(table):
    created = []
    menu = Menu(table, created.append, CODES)
    menu.created = created
    return menu


def form(**fields):
    return urlencode(fields).encode()


def test_form_body_is_parsed_with_the_plus_percent_encoded():
    dial = parse_dial("application/x-www-form-urlencoded",
                      form(sessionId="s1", serviceCode="*483*46#", phoneNumber=PHONE, text="", networkCode="x"))
    assert dial == Dial("*483*46#", PHONE, "s1", "", False)
    bare_plus = parse_dial("application/x-www-form-urlencoded", b"sessionId=s&serviceCode=c&phoneNumber=+2547&text=1")
    assert bare_plus.phone == " 2547"  # a bare + decodes to a space, as in cic-ussd: the phone check refuses it


def test_json_body_is_the_2021_dial():
    body = json.dumps({"sessionId": "s", "serviceCode": "*483*46#", "phoneNumber": "0712345678", "text": "*483*46#"})
    dial = parse_dial("application/json", body.encode())
    assert dial.legacy and dial.text == "*483*46#"
    assert e164(dial) == PHONE  # 2021 cic-ussd normalised the number (region KE) before checking it


@pytest.mark.parametrize("content_type,body,status,reason", [
    ("text/plain", b"x", 405, "Urlencoded, please"),
    (None, b"", 405, "Urlencoded, please"),
    ("application/x-www-form-urlencoded", form(serviceCode="c", phoneNumber=PHONE), 400, "Missing sessionId"),
    ("application/json", b"[1]", 400, "Body is not a JSON object"),
    ("application/json", b"{", 400, "Body is not JSON"),
    ("application/x-www-form-urlencoded", b"\xff", 400, "Body is not UTF-8"),
])
def test_bad_bodies_are_4xx(content_type, body, status, reason):
    with pytest.raises(Rejected) as refused:
        parse_dial(content_type, body)
    assert (refused.value.status, refused.value.reason) == (status, reason)


@pytest.mark.parametrize("phone,ok", [
    ("+254712345678", True), ("254712345678", True), ("0712345678", True), ("+2547123456789", False),
    (" 254712345678", False), ("+25471234", False), ("07123456ab", False), ("", False),
])
def test_phone_check_is_cic_ussds_regex_on_the_raw_value(phone, ok):
    dial = Dial("*483*46#", phone, "s")
    if ok:
        assert e164(dial) == PHONE
    else:
        with pytest.raises(Rejected) as refused:
            e164(dial)
        assert refused.value.status == 400 and refused.value.body == ""


def test_unknown_service_code_gets_plain_text_without_prefix(menu):
    status, text = menu.answer(Dial("*999#", PHONE, "s"))
    assert status == 200 and text.startswith("Bonyeza *483*46#") and not text.startswith(("CON", "END"))


def test_unknown_phone_chooses_a_language_and_is_created_once(menu, table):
    status, text = menu.answer(Dial(CODES[0], PHONE, "s1"))
    assert text.startswith("CON Karibu Sarafu Network!\n1. English\n2. Kiswahili\n3. Kamba\n11. Mbele")
    assert not text.startswith("CON Welcome") and text not in ussd_menu.CREATING.values()
    status, text = menu.answer(Dial(CODES[0], PHONE, "s1", "1"))
    assert text.startswith("END Your account is being created")
    assert [a.phone for a in menu.created] == [PHONE] and table.get(PHONE).language == "en"
    # a second session of the same phone gets the post-registration menu; a choice there creates nothing
    assert menu.answer(Dial(CODES[0], PHONE, "s2"))[1].startswith("CON Welcome")
    assert menu.answer(Dial(CODES[0], PHONE, "s2", "2"))[1].startswith("END Akaunti yako")
    assert len(menu.created) == 1


def test_two_open_language_sessions_of_one_phone_create_one_account(menu):
    menu.answer(Dial(CODES[0], PHONE, "a"))
    menu.answer(Dial(CODES[0], PHONE, "b"))
    assert menu.answer(Dial(CODES[0], PHONE, "a", "2"))[1].startswith("END Akaunti yako ya Sarafu inatayarishwa")
    assert menu.answer(Dial(CODES[0], PHONE, "b", "1"))[1].startswith("END")
    assert len(menu.created) == 1


def test_language_pages_exit_and_invalid_choices(menu):
    menu.answer(Dial(CODES[0], PHONE, "s"))
    page2 = menu.answer(Dial(CODES[0], PHONE, "s", "11"))[1]
    assert "4. Gikuyu" in page2 and "22. Nyuma" in page2 and "11. Mbele" in page2
    page3 = menu.answer(Dial(CODES[0], PHONE, "s", "11*11"))[1]
    assert "7. Borana" in page3 and "11. Mbele" not in page3
    assert menu.answer(Dial(CODES[0], PHONE, "s", "11*11*11"))[1] == ussd_menu.INVALID
    for choice in ("abc", "0", "8", "99"):  # the real server answers 500 to non-numeric input
        assert menu.answer(Dial(CODES[0], PHONE, "s", choice))[1].startswith("CON ")
    assert menu.answer(Dial(CODES[0], PHONE, "s", ""))[1].startswith("CON Karibu")  # same menu again
    assert menu.answer(Dial(CODES[0], PHONE, "s", "00"))[1] == ussd_menu.THANKS
    assert menu.created == []


def test_2021_dials_create_at_once(menu):
    assert menu.answer(Dial(CODES[0], PHONE, "s", CODES[0]))[1] == ussd_menu.LEGACY_CREATING  # L21 form dial
    assert menu.answer(Dial(CODES[0], "+254712345679", "t", CODES[0], legacy=True))[1].startswith("END ")
    assert len(menu.created) == 2
    assert menu.answer(Dial(CODES[0], PHONE, "u", CODES[0], legacy=True))[1].startswith("CON Welcome")
    assert len(menu.created) == 2


def test_table_claims_once_and_tracks_status(table):
    first = table.claim(PHONE, "sw")
    assert first is not None and table.claim(PHONE, "en") is None
    assert table.get(PHONE) == first and table.unfinished() == [first]
    table.set_status(PHONE, "created", "ab" * 20)
    table.set_status(PHONE, "ready")
    assert table.get(PHONE).address == "ab" * 20 and table.unfinished() == []
    assert table.counts() == {"ready": 1}


def test_table_survives_a_restart(tmp_path):
    table = PhoneTable(tmp_path / "t.sqlite").open()
    account = table.claim(PHONE, "en")
    table.close()
    again = PhoneTable(tmp_path / "t.sqlite").open()
    try:
        assert again.get(PHONE).root_id == account.root_id
    finally:
        again.close()
