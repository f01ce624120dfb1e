output "lake_root" {
  description = "LAKEHOUSE_LAKE_ROOT for the Spark apps, Trino and Dagster."
  value       = "s3a://${aws_s3_bucket.lake.bucket}/lake"
}

output "kafka_bootstrap_servers" {
  description = "LAKEHOUSE_KAFKA_BOOTSTRAP_SERVERS (IAM over TLS)."
  value       = aws_msk_cluster.kafka.bootstrap_brokers_sasl_iam
}

output "redis_endpoint" {
  description = "LAKEHOUSE_REDIS_ENDPOINT (TLS; the AUTH token is in Secrets Manager, redis_auth_secret_arn)."
  value       = "${aws_elasticache_replication_group.redis.primary_endpoint_address}:6379"
}

output "redis_auth_secret_arn" {
  description = "The Secrets Manager secret holding Redis' AUTH token (never an output itself)."
  value       = aws_secretsmanager_secret.redis_auth.arn
}

output "spark_role_arn" {
  description = "The role the Spark drivers' service account assumes (annotation eks.amazonaws.com/role-arn)."
  value       = aws_iam_role.workload["spark"].arn
}

output "alarm_topic_arn" {
  description = "The SNS topic the alarms go to."
  value       = aws_sns_topic.alarms.arn
}

output "trino_role_arn" {
  description = "The role Trino's service account assumes (the Helm values' serviceAccount annotation)."
  value       = aws_iam_role.workload["trino"].arn
}
