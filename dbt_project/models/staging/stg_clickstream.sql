with

source as (

    select * from {{ source('silver', 'clickstream') }}

),

renamed as (

    select
        ----------  ids
        event_id,
        session_id,
        user_id,

        ----------  time
        event_time,
        event_date,
        ingested_at,

        ----------  event
        event_type,
        page,
        referrer,
        device as device_type,
        country,
        duration_ms,

        ----------  schema
        cast(schema_version as integer) as schema_version,
        _extra as extra_fields_json

    from source

)

select * from renamed
