# The Spark apps' role, assumed by their Kubernetes service account (IRSA): read and write the lake's
# bucket with its key, and act as Kafka principal `spark` through MSK's IAM authentication (read the
# contract topics, commit their consumer groups' offsets). Nothing else.
data "aws_iam_policy_document" "spark_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.eks_oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.eks_oidc_provider_url}:sub"
      values   = ["system:serviceaccount:lakehouse:spark-driver"]
    }
  }
}

resource "aws_iam_role" "spark" {
  name               = "${var.name}-${var.environment}-spark"
  assume_role_policy = data.aws_iam_policy_document.spark_assume.json
}

data "aws_iam_policy_document" "spark" {
  statement {
    sid       = "LakeObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.lake.arn}/*"]
  }
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
  role   = aws_iam_role.spark.id
  policy = data.aws_iam_policy_document.spark.json
}
