variable "name" {
  description = "Prefix of every resource's name."
  type        = string
  default     = "lakehouse"
}

variable "environment" {
  description = "staging or prod (the deploy workflow applies staging first, then promotes)."
  type        = string
  validation {
    condition     = contains(["staging", "prod"], var.environment)
    error_message = "environment must be staging or prod."
  }
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-central-1"
}

variable "vpc_id" {
  description = "The VPC the brokers, Redis and the EKS cluster's nodes live in."
  type        = string
}

variable "private_subnet_ids" {
  description = "Three private subnets in three availability zones (one MSK broker in each)."
  type        = list(string)
  validation {
    condition     = length(var.private_subnet_ids) == 3
    error_message = "MSK's three brokers need exactly three private subnets, one per availability zone."
  }
}

variable "client_security_group_ids" {
  description = "Security groups of the clients (the EKS nodes running Spark, Dagster and Trino) allowed to reach Kafka and Redis."
  type        = list(string)
}

variable "eks_oidc_provider_arn" {
  description = "The EKS cluster's OIDC provider (IRSA): the Spark apps' service account assumes the role through it."
  type        = string
}

variable "eks_oidc_provider_url" {
  description = "The same provider's URL without https:// (oidc.eks.<region>.amazonaws.com/id/<id>)."
  type        = string
}

variable "kafka_version" {
  description = "MSK's Kafka version (the local stack runs 4.1.1)."
  type        = string
  default     = "3.9.x"
}

variable "kafka_instance_type" {
  description = "MSK broker size: sizing in docs/scaling.md."
  type        = string
  default     = "kafka.m7g.large"
}

variable "kafka_volume_gb" {
  description = "EBS per broker; retention and sizing in docs/scaling.md."
  type        = number
  default     = 500
}

variable "redis_node_type" {
  description = "ElastiCache node type (the serving keys' memory: docs/querying-and-serving.md)."
  type        = string
  default     = "cache.r7g.large"
}

variable "alarm_email" {
  description = "Where CloudWatch alarms are sent besides PagerDuty's CloudWatch integration (SNS email; empty: none)."
  type        = string
  default     = ""
}

variable "pagerduty_cloudwatch_url" {
  description = "PagerDuty's CloudWatch integration URL (an HTTPS SNS subscription); empty: none."
  type        = string
  default     = ""
  sensitive   = true
}

variable "stream_apps" {
  description = "The continuous Spark apps, as their metrics label them (app)."
  type        = list(string)
  default     = ["bronze", "refine", "serving"]
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
