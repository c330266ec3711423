-- Every consent statement the sources made, one row per statement and purpose, keyed by the
-- identifier the source knows the person by (the identity map attributes it in
-- int_consent_statements). A field that says nothing (null, Shopify's `pending`, Salesforce's
-- opt-out left unticked) is no statement: unknown stays unknown.
with shopify as (
    select
        tenant_id,
        'shopify_customer_id' as id_type,
        customer_id::text as id_value,
        accepts_marketing,
        lower(btrim(sms_consent)) as sms_state,
        updated_at as stated_at
    from {{ source('raw_cdp', 'shopify_customers') }}
),

app as (
    -- at-least-once delivery: one row per message id
    select distinct on (tenant_id, message_id)
        tenant_id,
        case when user_id is not null then 'app_user_id' else 'anonymous_id' end as id_type,
        coalesce(user_id, anonymous_id) as id_value,
        consent_email_marketing,
        consent_sms_marketing,
        consent_advertising,
        event_ts as stated_at
    from {{ source('raw_cdp', 'events') }}
    where consent_email_marketing is not null or consent_sms_marketing is not null or consent_advertising is not null
    order by tenant_id, message_id, _ingest_ts desc
),

unsubscribes as (
    select distinct on (tenant_id, event_id)
        tenant_id,
        case when cdp_customer_id is not null then 'cdp_customer_id' else 'email_sha256' end as id_type,
        coalesce(cdp_customer_id, email_sha256) as id_value,
        occurred_at as stated_at
    from {{ source('raw_cdp', 'campaign_results') }}
    where lower(btrim(event_type)) = 'unsubscribed' and coalesce(cdp_customer_id, email_sha256) is not null
    order by tenant_id, event_id, _ingest_ts desc
),

statements as (
    select tenant_id, id_type, id_value, 'email_marketing' as purpose,
        case when accepts_marketing then 'granted' else 'denied' end as status,
        'shopify_accepts_marketing' as source, stated_at
    from shopify where accepts_marketing is not null
    union all
    select tenant_id, id_type, id_value, 'sms_marketing',
        case when sms_state = 'subscribed' then 'granted' else 'denied' end,
        'shopify_sms_marketing_consent', stated_at
    from shopify where sms_state in ('subscribed', 'not_subscribed', 'unsubscribed')
    union all
    select tenant_id, 'salesforce_contact_id', contact_id, 'email_marketing', 'denied',
        'salesforce_email_opt_out', updated_at
    from {{ source('raw_cdp', 'contacts') }} where email_opt_out
    union all
    select tenant_id, id_type, id_value, purpose, case when choice then 'granted' else 'denied' end,
        'app_consent', stated_at
    from app, lateral (values
        ('email_marketing', consent_email_marketing),
        ('sms_marketing', consent_sms_marketing),
        ('advertising', consent_advertising)
    ) as choices (purpose, choice)
    where choice is not null
    union all
    select tenant_id, id_type, id_value, 'email_marketing', 'denied', 'campaign_unsubscribe', stated_at
    from unsubscribes
)

select * from statements where stated_at is not null
