# Each workload's role is assumed by its Kubernetes service account in the lakehouse namespace
# through the EKS cluster's OIDC provider (IRSA): workload -> service account.
locals {
  service_accounts = {
    spark = "spark-driver" # infra/deploy: the Spark apps' driver pods
    trino = "trino"        # infra/deploy/kubernetes/trino-values.yaml
  }
}

data "aws_iam_policy_document" "assume" {
  for_each = local.service_accounts
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.eks_oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.eks_oidc_provider_url}:sub"
      values   = ["system:serviceaccount:lakehouse:${each.value}"]
    }
  }
}

resource "aws_iam_role" "workload" {
  for_each           = local.service_accounts
  name               = "${var.name}-${var.environment}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.assume[each.key].json
}

# What every workload on the lake needs: list the bucket, use its key (each adds its own objects).
data "aws_iam_policy_document" "lake_common" {
  statement {
    sid       = "LakeListing"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.lake.arn]
  }
  statement {
    sid       = "LakeKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [aws_kms_key.lake.arn]
  }
}

# The Spark apps' role: read and write the lake's bucket with its key, and act as Kafka principal
# `spark` through MSK's IAM authentication (read the contract topics, commit their consumer groups'
# offsets). Nothing else.
data "aws_iam_policy_document" "spark" {
  source_policy_documents = [data.aws_iam_policy_document.lake_common.json]
  statement {
    sid       = "LakeObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.lake.arn}/*"]
  }
  statement {
    sid       = "KafkaConnect"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"]
    resources = [aws_msk_cluster.kafka.arn]
  }
  statement {
    sid     = "KafkaReadContractTopics"
    actions = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
    resources = [
      for topic in ["payments", "clickstream", "iot"] :
      "arn:${data.aws_partition.current.partition}:kafka:${var.region}:${data.aws_caller_identity.current.account_id}:topic/${aws_msk_cluster.kafka.cluster_name}/*/${topic}"
    ]
  }
  statement {
    # Spark's Kafka source uses groups spark-kafka-source-*; the drivers commit their progress, for
    # outside lag tools, to spark-kafka-lakehouse-<app> (lakehouse.clients.SPARK_GROUP_PREFIX).
    sid     = "KafkaConsumerGroups"
    actions = ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"]
    resources = [
      "arn:${data.aws_partition.current.partition}:kafka:${var.region}:${data.aws_caller_identity.current.account_id}:group/${aws_msk_cluster.kafka.cluster_name}/*/spark-kafka-*"
    ]
  }
}

resource "aws_iam_role_policy" "spark" {
  name   = "lake-and-kafka"
  role   = aws_iam_role.workload["spark"].id
  policy = data.aws_iam_policy_document.spark.json
}

# Trino's role: read the lake, and write the dbt marts it builds (under lake/marts and lake/staging),
# with the lake's key; Glue as its metastore, limited to the platform's databases.
locals {
  glue_arn = "arn:${data.aws_partition.current.partition}:glue:${var.region}:${data.aws_caller_identity.current.account_id}"
  # The catalog's schemas: the medallion layers (registered by the Spark apps) and dbt's.
  glue_databases = ["bronze", "silver", "gold", "staging", "marts"]
}

data "aws_iam_policy_document" "trino" {
  source_policy_documents = [data.aws_iam_policy_document.lake_common.json]
  statement {
    sid       = "ReadTheLake"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.lake.arn}/lake/*"]
  }
  statement {
    sid       = "WriteTheMarts"
    actions   = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.lake.arn}/lake/marts/*", "${aws_s3_bucket.lake.arn}/lake/staging/*"]
  }
  statement {
    sid = "GlueMetastore"
    actions = [
      "glue:GetDatabase", "glue:GetDatabases", "glue:GetTable", "glue:GetTables", "glue:CreateTable",
      "glue:UpdateTable", "glue:DeleteTable", "glue:GetPartitions",
    ]
    resources = concat(
      ["${local.glue_arn}:catalog"],
      [for db in local.glue_databases : "${local.glue_arn}:database/${db}"],
      [for db in local.glue_databases : "${local.glue_arn}:table/${db}/*"],
    )
  }
}

resource "aws_iam_role_policy" "trino" {
  name   = "lake-and-glue"
  role   = aws_iam_role.workload["trino"].id
  policy = data.aws_iam_policy_document.trino.json
}
