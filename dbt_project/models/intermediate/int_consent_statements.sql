-- Consent statements attributed to people through the current identity map: by the source's own
-- id, or (a campaign platform's unsubscribe) by the cdp_customer_id it reports or the SHA-256 of
-- the email it was sent to, which reaches every profile holding that email.
with statements as (
    select * from {{ ref('stg_consent_statements') }}
),

email_hashes as (
    select
        tenant_id,
        encode(sha256(convert_to(lower(btrim(id_value)), 'UTF8')), 'hex') as email_sha256,
        cdp_customer_id
    from {{ ref('stg_customer_ids') }}
    where id_type = 'email'
),

attributed as (
    select s.tenant_id, ids.cdp_customer_id, s.purpose, s.status, s.source, s.stated_at
    from statements as s
    join {{ ref('stg_customer_ids') }} as ids
        on ids.tenant_id = s.tenant_id and ids.id_type = s.id_type and ids.id_value = s.id_value
    union all
    select s.tenant_id, h.cdp_customer_id, s.purpose, s.status, s.source, s.stated_at
    from statements as s
    join email_hashes as h on h.tenant_id = s.tenant_id and h.email_sha256 = s.id_value
    where s.id_type = 'email_sha256'
    union all
    -- an id the identity map no longer holds (a platform reporting an old export) reaches no one
    select s.tenant_id, s.id_value, s.purpose, s.status, s.source, s.stated_at
    from statements as s
    where s.id_type = 'cdp_customer_id' and exists (
        select 1 from {{ ref('stg_customer_ids') }} as ids
        where ids.tenant_id = s.tenant_id and ids.cdp_customer_id = s.id_value
    )
)

select distinct tenant_id, cdp_customer_id, purpose, status, source, stated_at from attributed
