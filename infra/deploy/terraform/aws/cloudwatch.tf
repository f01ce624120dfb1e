# CloudWatch alarms mirroring the Prometheus rules (infra/prometheus/rules/lakehouse.rules.yml; each
# alarm names its rule and runbook section). AWS's own metrics cover Kafka and Redis; the platform's
# (stream heartbeats, lost records, quality checks, the supervisor and the Dagster daemon) reach
# CloudWatch through the CloudWatch agent's Prometheus scraping of the pushgateway, in the namespace
# "Lakehouse" under their Prometheus names. Alarms go to one SNS topic: PagerDuty's CloudWatch
# integration subscribes to it (pages), an email address may too.
locals {
  runbook = "docs/runbook.md"
  brokers = ["1", "2", "3"]
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-${var.environment}-alarms"
  kms_master_key_id = aws_kms_key.lake.id
}

resource "aws_sns_topic_subscription" "pagerduty" {
  count                  = var.pagerduty_cloudwatch_url == "" ? 0 : 1
  topic_arn              = aws_sns_topic.alarms.arn
  protocol               = "https"
  endpoint               = var.pagerduty_cloudwatch_url
  endpoint_auto_confirms = true
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# LakehouseStreamDown: the driver's heartbeat stopped advancing (the pushgateway keeps a dead
# driver's last value; a stream stopped on purpose deletes its metrics, which is no alarm).
resource "aws_cloudwatch_metric_alarm" "stream_down" {
  for_each            = toset(var.stream_apps)
  alarm_name          = "${var.name}-${var.environment}-stream-down-${each.value}"
  alarm_description   = "LakehouseStreamDown: stream ${each.value} sent no heartbeat for 2 minutes. ${local.runbook}#lakehousestreamdown"
  comparison_operator = "LessThanOrEqualToThreshold"
  threshold           = 0
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "advanced"
    expression  = "DIFF(heartbeat)"
    label       = "heartbeat seconds advanced per minute"
    return_data = true
  }
  metric_query {
    id = "heartbeat"
    metric {
      namespace   = "Lakehouse"
      metric_name = "lakehouse_stream_heartbeat_timestamp_seconds"
      dimensions  = { app = each.value }
      period      = 60
      stat        = "Maximum"
    }
  }
}

# LakehouseStreamLagGrowing: what the streams have not read yet, per contract topic (MSK's consumer
# lag of the group each driver commits its progress to).
resource "aws_cloudwatch_metric_alarm" "lag" {
  for_each            = toset(["payments", "clickstream", "iot"])
  alarm_name          = "${var.name}-${var.environment}-lag-${each.value}"
  alarm_description   = "LakehouseStreamLagGrowing: bronze is over 100 000 records behind on ${each.value} for 10 minutes. ${local.runbook}#lakehousestreamlaggrowing"
  namespace           = "AWS/Kafka"
  metric_name         = "SumOffsetLag"
  dimensions          = { "Cluster Name" = aws_msk_cluster.kafka.cluster_name, "Consumer Group" = "spark-kafka-lakehouse-bronze", Topic = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 10
  threshold           = 100000
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "missing"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# LakehouseDiskFilling, for the brokers: each broker's log volume over 85 % full.
resource "aws_cloudwatch_metric_alarm" "kafka_disk" {
  for_each            = toset(local.brokers)
  alarm_name          = "${var.name}-${var.environment}-kafka-disk-broker-${each.value}"
  alarm_description   = "LakehouseDiskFilling: Kafka broker ${each.value}'s log volume is over 85 % full; a full one stops the broker. ${local.runbook}#lakehousediskfilling"
  namespace           = "AWS/Kafka"
  metric_name         = "KafkaDataLogsDiskUsed"
  dimensions          = { "Cluster Name" = aws_msk_cluster.kafka.cluster_name, "Broker ID" = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 85
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# With replication factor 3 and min.insync.replicas 2, a partition under its minimum refuses acks=all
# writes: the producers are failing (no Prometheus twin: one broker locally).
resource "aws_cloudwatch_metric_alarm" "kafka_under_min_isr" {
  alarm_name          = "${var.name}-${var.environment}-kafka-under-min-isr"
  alarm_description   = "Kafka partitions below min.insync.replicas: acks=all producers are refused. ${local.runbook}#lakehousetargetdown"
  namespace           = "AWS/Kafka"
  metric_name         = "UnderMinIsrPartitionCount"
  dimensions          = { "Cluster Name" = aws_msk_cluster.kafka.cluster_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# LakehouseRedisMemoryHigh (80 % for 5 minutes), LakehouseRedisFull (95 %), LakehouseRedisEvicting.
resource "aws_cloudwatch_metric_alarm" "redis_memory" {
  for_each = {
    high = { threshold = 80, periods = 5, rule = "LakehouseRedisMemoryHigh" }
    full = { threshold = 95, periods = 1, rule = "LakehouseRedisFull" }
  }
  alarm_name          = "${var.name}-${var.environment}-redis-memory-${each.key}"
  alarm_description   = "${each.value.rule}: Redis uses over ${each.value.threshold} % of its memory; nothing is evicted, writes will fail. ${local.runbook}#lakehouseredismemoryhigh"
  namespace           = "AWS/ElastiCache"
  metric_name         = "DatabaseMemoryUsagePercentage"
  dimensions          = { ReplicationGroupId = aws_elasticache_replication_group.redis.id }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = each.value.periods
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "redis_evicting" {
  alarm_name          = "${var.name}-${var.environment}-redis-evicting"
  alarm_description   = "LakehouseRedisEvicting: Redis evicted keys, which noeviction should never allow. ${local.runbook}#lakehouseredismemoryhigh"
  namespace           = "AWS/ElastiCache"
  metric_name         = "Evictions"
  dimensions          = { ReplicationGroupId = aws_elasticache_replication_group.redis.id }
  statistic           = "Sum"
  period              = 600
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

# The platform's own alerts, from its metrics (namespace Lakehouse, via the CloudWatch agent), each
# the Metrics Insights twin of its Prometheus expression (over every label value, as PromQL's is).
resource "aws_cloudwatch_metric_alarm" "platform" {
  for_each = {
    records-lost = {
      rule  = "LakehouseKafkaRecordsLost", what = "Kafka deleted records bronze had not read"
      query = "SELECT MAX(lakehouse_kafka_records_lost) FROM Lakehouse", op = "GreaterThanThreshold", threshold = 0
    }
    supervisor = {
      rule  = "LakehouseSupervisorGaveUp", what = "a stream's supervisor gave up restarting it"
      query = "SELECT MAX(lakehouse_stream_supervisor_gave_up) FROM Lakehouse", op = "GreaterThanThreshold", threshold = 0
    }
    quality = {
      rule  = "LakehouseQualityCheckFailed", what = "a blocking (ERROR) quality check failed"
      query = "SELECT MIN(lakehouse_quality_check_passed) FROM Lakehouse WHERE severity = 'ERROR'", op = "LessThanThreshold", threshold = 1
    }
    dagster-daemon = {
      rule  = "LakehouseDagsterDaemonDown", what = "the Dagster daemon sent no heartbeat for 90 s"
      query = "SELECT MAX(lakehouse_dagster_daemon_heartbeat_age_seconds) FROM Lakehouse WHERE required = 'true'", op = "GreaterThanThreshold", threshold = 90
    }
    dagster-webserver = {
      rule  = "LakehouseDagsterWebserverDown", what = "the Dagster webserver does not answer"
      query = "SELECT MIN(lakehouse_dagster_webserver_up) FROM Lakehouse", op = "LessThanThreshold", threshold = 1
    }
  }
  alarm_name          = "${var.name}-${var.environment}-${each.key}"
  alarm_description   = "${each.value.rule}: ${each.value.what}. ${local.runbook}#${lower(each.value.rule)}"
  comparison_operator = each.value.op
  threshold           = each.value.threshold
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "q"
    expression  = each.value.query
    period      = 60
    return_data = true
  }
}
