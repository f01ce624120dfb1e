"""lakehouse.storage: the lake's location parsed, and the S3 path's options never showing the secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.settings import Settings
from lakehouse.storage import is_s3, lake_path, parse_s3a, storage_options


def test_an_s3a_uri_splits_into_bucket_and_prefix() -> None:
    assert parse_s3a("s3a://lake-house.1/a/b/").bucket == "lake-house.1"
    assert parse_s3a("s3a://lake-house.1/a/b/").prefix == "a/b"
    assert parse_s3a("s3a://bucket").uri == "s3a://bucket"
    with pytest.raises(ValueError, match="use s3a://"):
        parse_s3a("s3://bucket/x")


def test_the_s3_secret_is_never_shown_by_a_paths_repr_or_errors(tmp_path: Path) -> None:
    from lakehouse.stack import secrets

    s = Settings(_env_file=None, state_dir=tmp_path, profile="cluster")  # type: ignore[call-arg]
    secrets.ensure(s)
    secret = s.secret("s3_lakehouse").get_secret_value()
    options = storage_options(s)
    assert options["secret"] == secret  # what the client signs with
    assert secret not in repr(options)
    lake = s.lake_dir
    assert str(lake) == "s3a://lakehouse/lake"
    assert is_s3(lake)
    assert secret not in repr(lake)
    assert secret not in repr(lake.storage_options)
    assert str(lake_path(s, "s3a://lakehouse/lake/bronze/payments") / "_delta_log").endswith("payments/_delta_log")
    assert lake_path(s, str(tmp_path)) == tmp_path
