# One customer-managed key for the platform's data at rest: the lake's objects, MSK's volumes,
# Redis' snapshots, the logs and the alarm topic. Rotated yearly by AWS.
resource "aws_kms_key" "lake" {
  description             = "${var.name}-${var.environment}: lake, Kafka, Redis and logs at rest"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "lake" {
  name          = "alias/${var.name}-${var.environment}"
  target_key_id = aws_kms_key.lake.key_id
}

data "aws_iam_policy_document" "kms" {
  # The account administers the key; services use it on its behalf (grants through their own roles).
  # checkov:skip=CKV_AWS_111: a key policy's "*" resource is the key itself (AWS's default key policy)
  # checkov:skip=CKV_AWS_356: a key policy's "*" resource is the key itself
  # checkov:skip=CKV_AWS_109: the account root administers its own key (AWS's default key policy)
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy, "*" is this key
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudWatchLogsAndSns"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com", "cloudwatch.amazonaws.com", "sns.amazonaws.com"]
    }
  }
}
