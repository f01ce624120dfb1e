# The lake: Delta tables (bronze, silver, gold) and the streams' checkpoints under s3a://<bucket>/lake.
# Versioned (an overwritten or deleted object can be restored; noncurrent versions expire after
# the Delta log's retention), SSE-KMS with a bucket key, no public access, TLS only, access logged.
#
# Delta on S3 and concurrent writers: S3 has no put-if-absent for Delta's log commits through
# Hadoop's S3A, so two writers committing the same version can both succeed. The platform keeps one
# writer per table (each table is written by exactly one stream, which holds its checkpoint's lock);
# docs/scaling.md says how that lock is kept across machines.
resource "aws_s3_bucket" "lake" {
  bucket = "${var.name}-${var.environment}-lake-${data.aws_caller_identity.current.account_id}"
  # checkov:skip=CKV_AWS_144: cross-region replication is a disaster-recovery choice per deployment; the lake is rebuilt from Kafka + bronze, and versioning covers mistakes
}

resource "aws_s3_bucket_versioning" "lake" {
  bucket = aws_s3_bucket.lake.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.lake.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    id     = "noncurrent-and-incomplete"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30 # the Delta log's retention (delta.logRetentionDuration, 30 days)
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

resource "aws_s3_bucket_policy" "lake" {
  bucket = aws_s3_bucket.lake.id
  policy = data.aws_iam_policy_document.lake_tls_only.json
}

data "aws_iam_policy_document" "lake_tls_only" {
  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.lake.arn, "${aws_s3_bucket.lake.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_logging" "lake" {
  bucket        = aws_s3_bucket.lake.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "lake/"
}

resource "aws_s3_bucket_notification" "lake" {
  bucket      = aws_s3_bucket.lake.id
  eventbridge = true # object events to EventBridge, for audits; nothing in the platform depends on them
}

# Where S3 writes the lake's access logs (S3 server access logging writes with SSE-S3 only).
resource "aws_s3_bucket" "access_logs" {
  bucket = "${var.name}-${var.environment}-access-logs-${data.aws_caller_identity.current.account_id}"
  # checkov:skip=CKV_AWS_144: access logs are not replicated
  # checkov:skip=CKV_AWS_145: S3 server access logging cannot write to a bucket encrypted with SSE-KMS; SSE-S3 below
  # checkov:skip=CKV_AWS_18: the access-log bucket does not log its own access
  # checkov:skip=CKV2_AWS_62: no event notifications for access logs
}

resource "aws_s3_bucket_versioning" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    id     = "expire"
    status = "Enabled"
    filter {}
    expiration {
      days = 90
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}
