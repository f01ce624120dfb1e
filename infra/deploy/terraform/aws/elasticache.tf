# Redis for serving: a primary and a replica in two zones with automatic failover, TLS in transit,
# snapshots encrypted with the platform's key, AUTH token from Secrets Manager (never in a variable
# or the state's outputs). maxmemory-policy noeviction, as locally: an evicted alert marker would
# let an alert be written twice (docs/runbook.md, LakehouseRedisMemoryHigh).
resource "aws_elasticache_parameter_group" "redis" {
  name   = "${var.name}-${var.environment}-redis7"
  family = "redis7"
  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }
}

resource "aws_elasticache_subnet_group" "redis" {
  name       = "${var.name}-${var.environment}"
  subnet_ids = var.private_subnet_ids
}

resource "aws_security_group" "redis" {
  name        = "${var.name}-${var.environment}-redis"
  description = "ElastiCache Redis: TLS from the platform's clients only"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "redis_clients" {
  for_each                     = toset(var.client_security_group_ids)
  security_group_id            = aws_security_group.redis.id
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  description                  = "Redis clients (TLS, AUTH)"
}

resource "random_password" "redis_auth" {
  length  = 64
  special = false # ElastiCache AUTH tokens allow only printable ASCII without @, " and /
}

resource "aws_secretsmanager_secret" "redis_auth" {
  name       = "${var.name}/${var.environment}/redis-auth"
  kms_key_id = aws_kms_key.lake.arn
  # checkov:skip=CKV2_AWS_57: ElastiCache cannot rotate an AUTH token through Secrets Manager rotation lambdas without a custom rotation function; rotate with `modify-replication-group --auth-token-update-strategy ROTATE` (docs/security.md)
}

resource "aws_secretsmanager_secret_version" "redis_auth" {
  secret_id     = aws_secretsmanager_secret.redis_auth.id
  secret_string = random_password.redis_auth.result
}

resource "aws_elasticache_replication_group" "redis" {
  replication_group_id       = "${var.name}-${var.environment}"
  description                = "lakehouse serving (gold projections, fraud alerts)"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = var.redis_node_type
  num_cache_clusters         = 2
  automatic_failover_enabled = true
  multi_az_enabled           = true
  port                       = 6379
  parameter_group_name       = aws_elasticache_parameter_group.redis.name
  subnet_group_name          = aws_elasticache_subnet_group.redis.name
  security_group_ids         = [aws_security_group.redis.id]
  transit_encryption_enabled = true
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.lake.arn
  auth_token                 = random_password.redis_auth.result
  snapshot_retention_limit   = 7
  auto_minor_version_upgrade = true
}
