with

source as (

    select * from {{ source('silver', 'payments') }}

),

renamed as (

    select
        ----------  ids
        event_id,
        user_id,
        merchant_id,
        card_token,

        ----------  time
        event_time,
        event_date,
        ingested_at,

        ----------  payment
        amount,
        currency,
        country,
        channel,
        merchant_category,
        card_last4,
        lat as latitude,
        lon as longitude,

        ----------  schema
        cast(schema_version as integer) as schema_version,
        _extra as extra_fields_json

    from source

)

select * from renamed
