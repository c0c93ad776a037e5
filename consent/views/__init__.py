"""Dashboard pages of the consent app and the subject's own pages (thin: writes go through actions).

Object pages look their object up inside the active tenant first (another
tenant's id is a plain 404) and check the permission after. Every object route
answers GET (a page or a confirmation form) and performs its action on POST.
One module per area; consent/urls.py names the views through this package.
"""

from consent.views.documents import schedule_detail, schedule_list, template_detail, template_list
from consent.views.erasure_requests import (
    erasure_request_confirm,
    erasure_request_decline,
    erasure_request_list,
)
from consent.views.files import asset_file, photo_delete
from consent.views.ledger import subject_ledger, subject_ledger_zip
from consent.views.legal import (
    certificate_detail,
    certificate_json,
    certificate_list,
    certificates_csv,
    certificates_json,
    subject_history,
    subject_history_csv,
    subject_history_json,
)
from consent.views.links import link_detail, link_in_person, link_resend, subject_send_link
from consent.views.public import handover_page, portal_image, portal_veto, sign_page, withdraw_page
from consent.views.subjects import (
    record_revoke,
    subject_contact,
    subject_detail,
    subject_erase,
    subject_list,
    subject_photos,
    subject_purpose_satisfied,
)

__all__ = [
    "asset_file",
    "certificate_detail",
    "certificate_json",
    "certificate_list",
    "certificates_csv",
    "certificates_json",
    "erasure_request_confirm",
    "erasure_request_decline",
    "erasure_request_list",
    "handover_page",
    "link_detail",
    "link_in_person",
    "link_resend",
    "photo_delete",
    "portal_image",
    "portal_veto",
    "record_revoke",
    "schedule_detail",
    "schedule_list",
    "sign_page",
    "subject_contact",
    "subject_detail",
    "subject_erase",
    "subject_history",
    "subject_history_csv",
    "subject_history_json",
    "subject_ledger",
    "subject_ledger_zip",
    "subject_list",
    "subject_photos",
    "subject_purpose_satisfied",
    "subject_send_link",
    "template_detail",
    "template_list",
    "withdraw_page",
]
