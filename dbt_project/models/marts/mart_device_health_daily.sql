-- Daily health per device and sensor: uptime, anomalies, battery.
-- Uptime is the share of the day's observed minutes in which the device sent at least one
-- reading. Observed minutes: from the fleet's first to its last reporting minute of that
-- day (1440 for a full day of data; less for today or a short demo run), so a partial day
-- does not read as downtime. Readings and anomalies come from gold (late events excluded);
-- the battery is only in silver (iot.schema.json `battery_pct`, optional).

with

device_minutes as (

    select * from {{ ref('stg_device_minute') }}

),

readings as (

    select * from {{ ref('stg_iot') }}

),

fleet_days as (

    select
        window_date as activity_date,
        date_diff('minute', min(window_start), max(window_start)) + 1 as observed_minutes

    from device_minutes
    group by 1

),

device_days as (

    select
        device_id,
        sensor_type,
        window_date as activity_date,
        count(*) as minutes_with_readings,
        sum(readings) as readings,
        sum(anomalies) as anomalies,
        sum(value_sum) as value_sum,
        min(value_min) as value_min,
        max(value_max) as value_max,
        min(window_start) as first_minute,
        max(window_start) as last_minute

    from device_minutes
    group by 1, 2, 3

),

device_batteries as (

    select
        device_id,
        sensor_type,
        event_date as activity_date,
        min(battery_pct) as battery_pct_min,
        max_by(battery_pct, event_time) as battery_pct_last

    from readings
    where battery_pct is not null
    group by 1, 2, 3

),

final as (

    select
        {{ surrogate_key(['device_days.device_id', 'device_days.sensor_type', 'device_days.activity_date']) }}
            as device_day_id,
        device_days.device_id,
        device_days.sensor_type,
        device_days.activity_date,

        device_days.minutes_with_readings,
        fleet_days.observed_minutes,
        {{ ratio('device_days.minutes_with_readings', 'fleet_days.observed_minutes') }} as uptime_ratio,
        device_days.first_minute,
        device_days.last_minute,

        device_days.readings,
        device_days.anomalies,
        {{ ratio('device_days.anomalies', 'device_days.readings') }} as anomaly_rate,
        {{ ratio('device_days.value_sum', 'device_days.readings') }} as value_avg,
        device_days.value_min,
        device_days.value_max,

        device_batteries.battery_pct_min,
        device_batteries.battery_pct_last,
        device_batteries.battery_pct_last < {{ var('low_battery_pct') }} as low_battery

    from device_days
    inner join fleet_days
        on device_days.activity_date = fleet_days.activity_date
    left join device_batteries
        on device_days.device_id = device_batteries.device_id
        and device_days.sensor_type = device_batteries.sensor_type
        and device_days.activity_date = device_batteries.activity_date

)

select * from final
