with

source as (

    select * from {{ source('silver', 'iot') }}

),

renamed as (

    select
        ----------  ids
        event_id,
        device_id,

        ----------  time
        event_time,
        event_date,
        ingested_at,

        ----------  reading
        sensor_type,
        value as reading_value,
        unit,
        battery_pct,
        firmware,

        ----------  schema
        cast(schema_version as integer) as schema_version,
        _extra as extra_fields_json

    from source

)

select * from renamed
