with

source as (

    select * from {{ source('gold', 'page_minute') }}

),

renamed as (

    select
        ----------  grain
        page,
        window_start,
        cast(window_start at time zone 'UTC' as date) as window_date,

        ----------  measures (sessions_sketch is the pipeline's HLL state: left out)
        views as page_views,
        clicks,
        purchases,
        sessions as approx_sessions,

        updated_at

    from source

)

select * from renamed
