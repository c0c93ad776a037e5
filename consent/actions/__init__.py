"""The consent app's only write path: consent, retention, storage of subject files, erasure.

Views, API viewsets, tasks and the enforce_retention command call these
functions and nothing else writes consent rows. Each function checks the
actor's permission in the subject's tenant, re-reads what it needs under a row
lock on the subject (consent.locks has the lock order), writes, and appends
ID-only audit entries in the same transaction.

One module per sub-domain; this package re-exports the public names, so callers
write `consent.actions.require(...)` whatever module holds it:

- gate: `require()` and the consent records in force;
- retention: schedules and retain_until clocks;
- subjects: subjects, consent texts, evidence exports;
- signing: links, the subject's signature, revocation;
- files: encrypted subject files and the photo intake;
- erasure: key destruction and file deletion; sweep: the retention sweep;
- erasure_requests: the two-person rule (erasures staff start wait for an admin);
- keys: master-key rotation.

Rules enforced here (docs/compliance.md has the why):
- consent is signed only by the subject: the signing link is e-mailed to the
  subject's address and shown to nobody else; in person, the signer first
  enters a code e-mailed to that address; every signing step refuses a
  logged-in user (audited). Staff can send and re-send links, start an
  in-person signing and record a revocation they received by other means;
- nothing of a subject is stored unless a consent is in force at that moment;
- when no consent is in force any more, erasure starts in the same transaction
  as the revocation: the subject key is destroyed first, the files follow
  (complete_erasure, on the default Celery queue, or inline in the sweep);
  unless staff recorded that revocation: then a tenant admin confirms first, or
  the sweep erases at the request's deadline (the two-person rule);
- every file carries retain_until and enforce_retention erases what is due.
"""

from consent.actions.common import (
    Actor,
    ConsentActionError,
    ConsentReason,
    ConsentRequired,
    ConsentRequiredError,
    InvalidLinkError,
)
from consent.actions.delivery import (
    MAX_CODE_DELIVERIES,
    MAX_LINK_DELIVERIES,
    MIN_DELIVERY_INTERVAL,
    DeliveryLimitError,
    resend_consent_link,
)
from consent.actions.erasure import complete_erasure, erase_subject
from consent.actions.erasure_requests import (
    MAX_DECISION_REASON_CHARS,
    confirm_erasure_request,
    decline_erasure_request,
    mark_purpose_satisfied,
)
from consent.actions.files import (
    PHOTO_KINDS,
    IntakeReport,
    RejectedPhoto,
    UploadedPhoto,
    delete_photo,
    enrollment_embedding,
    intake_limits,
    set_enrollment_photo,
    store_subject_file,
    upload_reference_photos,
)
from consent.actions.gate import PURPOSE_PHRASES, check_each, records_in_force, require
from consent.actions.handover import (
    CODE_VALID_FOR,
    MAX_CODE_ATTEMPTS,
    SIGN_WITHIN,
    StartedHandover,
    resolve_handover,
    session_is_verified,
    sign_in_person,
    start_in_person_signing,
    verify_in_person_code,
)
from consent.actions.keys import RotationReport, rotate_master_key
from consent.actions.retention import (
    BIPA_DEFAULT_TITLE,
    MAX_YEARS_AFTER_LAST_INTERACTION,
    publish_retention_schedule,
    retention_statement,
    schedule_in_force,
    subject_retain_until,
    touch_subject,
)
from consent.actions.signing import (
    MIN_INTENDED_USES_CHARS,
    SignedInUserError,
    record_revocation,
    require_anonymous_signer,
    resolve_link,
    revoke_via_link,
    send_consent_link,
    sign_consent,
)
from consent.actions.subjects import (
    change_contact_email,
    check_contact_address,
    create_subject,
    publish_consent_template,
    record_export,
)
from consent.actions.sweep import SweepReport, enforce_retention

__all__ = [
    "BIPA_DEFAULT_TITLE",
    "CODE_VALID_FOR",
    "MAX_CODE_ATTEMPTS",
    "MAX_CODE_DELIVERIES",
    "MAX_DECISION_REASON_CHARS",
    "MAX_LINK_DELIVERIES",
    "MAX_YEARS_AFTER_LAST_INTERACTION",
    "MIN_DELIVERY_INTERVAL",
    "MIN_INTENDED_USES_CHARS",
    "PHOTO_KINDS",
    "PURPOSE_PHRASES",
    "SIGN_WITHIN",
    "Actor",
    "ConsentActionError",
    "ConsentReason",
    "ConsentRequired",
    "ConsentRequiredError",
    "DeliveryLimitError",
    "IntakeReport",
    "InvalidLinkError",
    "RejectedPhoto",
    "RotationReport",
    "SignedInUserError",
    "StartedHandover",
    "SweepReport",
    "UploadedPhoto",
    "change_contact_email",
    "check_contact_address",
    "check_each",
    "complete_erasure",
    "confirm_erasure_request",
    "create_subject",
    "decline_erasure_request",
    "delete_photo",
    "enforce_retention",
    "enrollment_embedding",
    "erase_subject",
    "intake_limits",
    "mark_purpose_satisfied",
    "publish_consent_template",
    "publish_retention_schedule",
    "record_export",
    "record_revocation",
    "records_in_force",
    "require",
    "require_anonymous_signer",
    "resend_consent_link",
    "resolve_handover",
    "resolve_link",
    "retention_statement",
    "revoke_via_link",
    "rotate_master_key",
    "schedule_in_force",
    "send_consent_link",
    "session_is_verified",
    "set_enrollment_photo",
    "sign_consent",
    "sign_in_person",
    "start_in_person_signing",
    "store_subject_file",
    "subject_retain_until",
    "touch_subject",
    "upload_reference_photos",
    "verify_in_person_code",
]
