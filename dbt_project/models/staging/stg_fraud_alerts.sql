with

source as (

    select * from {{ source('gold', 'fraud_alerts') }}

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
        cast(event_time at time zone 'UTC' as date) as event_date,
        detected_at,

        ----------  alert
        amount,
        rules,
        cardinality(rules) as rule_count,
        contains(rules, 'card_testing') as is_card_testing,
        contains(rules, 'velocity') as is_velocity,
        contains(rules, 'amount_spike') as is_amount_spike,
        contains(rules, 'impossible_travel') as is_impossible_travel,
        score

    from source

)

select * from renamed
