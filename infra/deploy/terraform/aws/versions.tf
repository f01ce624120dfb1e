# The platform's AWS resources: the lake's bucket (SSE-KMS), MSK (TLS, IAM auth, 3 brokers),
# ElastiCache Redis (TLS, AUTH), the Spark apps' IAM role (IRSA on EKS) and CloudWatch alarms that
# mirror the Prometheus rules (infra/prometheus/rules). Validated statically in `make lint` (checkov),
# never applied from here: see docs/deploy.md.
terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = merge(var.tags, { "app.kubernetes.io/part-of" = "lakehouse", environment = var.environment })
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
