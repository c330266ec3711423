"""A tenant's company reference: the CSV file company enrichment reads, and its documented format.

`reference/{tenant}/company_domains.csv` in the lake, header `domain,company,industry,employees`
(employees an integer or empty). Domains are matched trimmed and lower-cased; a domain listed twice
keeps its first company in sort order; rows without a domain are skipped.
"""

import csv
import io

COMPANY_REFERENCE_HEADER = ("domain", "company", "industry", "employees")


def company_reference_key(tenant: str) -> str:
    return f"reference/{tenant}/company_domains.csv"


class CompanyReferenceError(ValueError):
    """A tenant's company reference that cannot be read as documented."""


def parse_company_reference(tenant: str, data: bytes) -> list[tuple]:
    """The rows of one tenant's reference CSV as (tenant_id, domain, company, industry, employees)."""
    key = company_reference_key(tenant)
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    missing = [column for column in COMPANY_REFERENCE_HEADER if column not in (reader.fieldnames or ())]
    if missing:
        raise CompanyReferenceError(
            f"{key}: missing column(s) {', '.join(missing)} (header must be {','.join(COMPANY_REFERENCE_HEADER)})"
        )
    rows = {}
    for line, row in enumerate(reader, start=2):
        domain = (row["domain"] or "").strip().lower()
        if not domain:
            continue
        employees = (row["employees"] or "").strip()
        if employees and not employees.isdigit():
            raise CompanyReferenceError(f"{key}: line {line}: employees must be a whole number")
        entry = (
            tenant,
            domain,
            (row["company"] or "").strip() or None,
            (row["industry"] or "").strip() or None,
            int(employees) if employees else None,
        )
        rows[domain] = min(rows.get(domain, entry), entry, key=lambda r: (r[2] or "", r[3] or ""))
    return [rows[domain] for domain in sorted(rows)]
