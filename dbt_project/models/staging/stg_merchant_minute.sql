with

source as (

    select * from {{ source('gold', 'merchant_minute') }}

),

renamed as (

    select
        ----------  grain
        merchant_id,
        window_start,
        cast(window_start at time zone 'UTC' as date) as window_date,

        ----------  measures
        tx_count,
        amount_sum,
        amount_avg,
        amount_max,
        flagged_count,

        updated_at

    from source

)

select * from renamed
