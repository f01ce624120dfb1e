-- mart_merchant_daily neither loses nor invents payments or alerts: its totals equal gold's.
-- Returns a row (a failure) when they differ.
-- It reads three models; the meta attaches it to the mart, so Dagster shows it as an asset
-- check of marts/mart_merchant_daily (dagster-dbt cannot pick one parent by itself).

{{ config(meta={'dagster': {'ref': {'name': 'mart_merchant_daily'}}}) }}

with

mart as (

    select
        coalesce(sum(tx_count), 0) as tx_count,
        coalesce(sum(fraud_alert_count), 0) as fraud_alert_count
    from {{ ref('mart_merchant_daily') }}

),

gold_payments as (

    select coalesce(sum(tx_count), 0) as tx_count
    from {{ ref('stg_merchant_minute') }}

),

gold_alerts as (

    select count(*) as fraud_alert_count
    from {{ ref('stg_fraud_alerts') }}
    where merchant_id is not null

)

select
    mart.tx_count as mart_tx_count,
    gold_payments.tx_count as gold_tx_count,
    mart.fraud_alert_count as mart_fraud_alert_count,
    gold_alerts.fraud_alert_count as gold_fraud_alert_count
from mart
cross join gold_payments
cross join gold_alerts
where
    mart.tx_count <> gold_payments.tx_count
    or mart.fraud_alert_count <> gold_alerts.fraud_alert_count
