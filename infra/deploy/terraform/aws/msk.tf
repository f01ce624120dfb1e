# Kafka: MSK with three brokers in three zones, TLS between clients and brokers and between
# brokers, IAM authentication (each client's role is its Kafka principal, as SCRAM users are
# locally), volumes encrypted with the platform's key. The contract topics are created by the
# platform (`lakehouse up`'s topic step, from LAKEHOUSE_KAFKA_REPLICATION_FACTOR=3 and
# LAKEHOUSE_KAFKA_MIN_INSYNC_REPLICAS=2): acks=all then means two replicas have every record, so one
# broker may fail without losing an acknowledged one.
resource "aws_msk_configuration" "kafka" {
  name           = "${var.name}-${var.environment}"
  kafka_versions = [var.kafka_version]
  server_properties = join("\n", [
    "auto.create.topics.enable=false", # topics come from the contracts, never from a typo
    "default.replication.factor=3",
    "min.insync.replicas=2",
    "unclean.leader.election.enable=false", # never elect a replica that lacks acknowledged records
    "log.retention.bytes=1073741824",       # 1 GiB per partition, as locally (LakehouseKafkaNearRetention)
    "log.retention.hours=168",
  ])
}

resource "aws_security_group" "kafka" {
  name        = "${var.name}-${var.environment}-kafka"
  description = "MSK brokers: IAM over TLS from the platform's clients only"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "kafka_clients" {
  for_each                     = toset(var.client_security_group_ids)
  security_group_id            = aws_security_group.kafka.id
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 9098 # IAM over TLS
  to_port                      = 9098
  description                  = "Kafka clients (IAM, TLS)"
}

resource "aws_cloudwatch_log_group" "kafka" {
  name              = "/${var.name}/${var.environment}/msk"
  retention_in_days = 365
  kms_key_id        = aws_kms_key.lake.arn
}

resource "aws_msk_cluster" "kafka" {
  cluster_name           = "${var.name}-${var.environment}"
  kafka_version          = var.kafka_version
  number_of_broker_nodes = 3
  enhanced_monitoring    = "PER_TOPIC_PER_PARTITION" # per-partition lag and disk for the alarms below

  broker_node_group_info {
    instance_type   = var.kafka_instance_type
    client_subnets  = var.private_subnet_ids
    security_groups = [aws_security_group.kafka.id]
    storage_info {
      ebs_storage_info {
        volume_size = var.kafka_volume_gb
      }
    }
    connectivity_info {
      public_access {
        type = "DISABLED"
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.kafka.arn
    revision = aws_msk_configuration.kafka.latest_revision
  }

  client_authentication {
    unauthenticated = false
    sasl {
      iam = true
    }
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = aws_kms_key.lake.arn
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.kafka.name
      }
    }
  }

  open_monitoring { # Prometheus scrapes the brokers as it scrapes the local one's JMX agent
    prometheus {
      jmx_exporter {
        enabled_in_broker = true
      }
      node_exporter {
        enabled_in_broker = true
      }
    }
  }
}
