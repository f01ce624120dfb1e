with

merchant_minutes as (

    select * from {{ ref('stg_merchant_minute') }}

),

fraud_alerts as (

    select * from {{ ref('stg_fraud_alerts') }}

),

daily_payments as (

    select
        merchant_id,
        window_date as activity_date,
        sum(tx_count) as tx_count,
        sum(amount_sum) as revenue,
        max(amount_max) as max_amount,
        count(*) as active_minutes

    from merchant_minutes
    group by 1, 2

),

daily_alerts as (

    select
        merchant_id,
        event_date as activity_date,
        count(*) as fraud_alert_count,
        sum(amount) as fraud_amount

    from fraud_alerts
    where merchant_id is not null
    group by 1, 2

),

-- Full outer join: an alert on a payment gold did not count (it arrived after its window
-- was final) still shows up, on a row with tx_count 0.
merchant_days as (

    select
        coalesce(daily_payments.merchant_id, daily_alerts.merchant_id) as merchant_id,
        coalesce(daily_payments.activity_date, daily_alerts.activity_date) as activity_date,
        coalesce(daily_payments.tx_count, 0) as tx_count,
        coalesce(daily_payments.revenue, 0e0) as revenue,
        daily_payments.max_amount,
        coalesce(daily_payments.active_minutes, 0) as active_minutes,
        coalesce(daily_alerts.fraud_alert_count, 0) as fraud_alert_count,
        coalesce(daily_alerts.fraud_amount, 0e0) as fraud_amount

    from daily_payments
    full outer join daily_alerts
        on daily_payments.merchant_id = daily_alerts.merchant_id
        and daily_payments.activity_date = daily_alerts.activity_date

),

final as (

    select
        {{ surrogate_key(['merchant_id', 'activity_date']) }} as merchant_day_id,
        merchant_id,
        activity_date,
        tx_count,
        revenue,
        {{ ratio('revenue', 'tx_count') }} as avg_amount,
        max_amount,
        active_minutes,
        fraud_alert_count,
        fraud_amount,
        {{ ratio('fraud_alert_count', 'tx_count') }} as fraud_rate

    from merchant_days

)

select * from final
