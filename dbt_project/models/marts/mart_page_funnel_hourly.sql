-- Hourly funnel per page: page_view -> add_to_cart -> purchase.
-- gold.page_minute has no add_to_cart, so this is built from the silver events.
-- The steps are counted per session (add_to_cart happens on product pages and purchase on
-- /checkout, so counting the page's own events would never form a funnel): of the sessions
-- that viewed the page in the hour, how many reached the cart, and of those how many
-- purchased, anywhere in the same session. Rates are therefore always within 0..1.

with

events as (

    select * from {{ ref('stg_clickstream') }}

),

session_outcomes as (

    select
        session_id,
        count_if(event_type = 'add_to_cart') > 0 as reached_cart,
        count_if(event_type = 'purchase') > 0 as purchased

    from events
    group by 1

),

page_hours as (

    select
        page,
        date_trunc('hour', event_time) as event_hour,
        count_if(event_type = 'page_view') as page_views,
        count_if(event_type = 'click') as clicks,
        count_if(event_type = 'add_to_cart') as add_to_carts,
        count_if(event_type = 'purchase') as purchases,
        count_if(event_type = 'search') as searches,
        count(distinct session_id) as sessions

    from events
    group by 1, 2

),

page_hour_viewers as (

    select distinct
        page,
        date_trunc('hour', event_time) as event_hour,
        session_id

    from events
    where event_type = 'page_view'

),

page_hour_funnel as (

    select
        viewers.page,
        viewers.event_hour,
        count(*) as viewing_sessions,
        count_if(outcomes.reached_cart) as carting_sessions,
        count_if(outcomes.reached_cart and outcomes.purchased) as purchasing_sessions

    from page_hour_viewers as viewers
    inner join session_outcomes as outcomes
        on viewers.session_id = outcomes.session_id
    group by 1, 2

),

final as (

    select
        {{ surrogate_key(['page_hours.page', 'page_hours.event_hour']) }} as page_hour_id,
        page_hours.page,
        page_hours.event_hour,
        cast(page_hours.event_hour at time zone 'UTC' as date) as event_date,

        page_hours.page_views,
        page_hours.clicks,
        page_hours.add_to_carts,
        page_hours.purchases,
        page_hours.searches,
        page_hours.sessions,

        coalesce(funnel.viewing_sessions, 0) as viewing_sessions,
        coalesce(funnel.carting_sessions, 0) as carting_sessions,
        coalesce(funnel.purchasing_sessions, 0) as purchasing_sessions,
        {{ ratio('funnel.carting_sessions', 'funnel.viewing_sessions') }} as view_to_cart_rate,
        {{ ratio('funnel.purchasing_sessions', 'funnel.carting_sessions') }} as cart_to_purchase_rate,
        {{ ratio('funnel.purchasing_sessions', 'funnel.viewing_sessions') }} as view_to_purchase_rate

    from page_hours
    left join page_hour_funnel as funnel
        on page_hours.page = funnel.page
        and page_hours.event_hour = funnel.event_hour

)

select * from final
