with

source as (

    select * from {{ source('gold', 'device_minute') }}

),

renamed as (

    select
        ----------  grain
        device_id,
        sensor_type,
        window_start,
        cast(window_start at time zone 'UTC' as date) as window_date,

        ----------  measures
        readings,
        value_sum,
        value_avg,
        value_min,
        value_max,
        anomalies,

        updated_at

    from source

)

select * from renamed
