"""The S3 :class:`~engine.blobs.BlobStore`: large state values, one object per value and run.

Objects are written with the bucket's default encryption (template.yaml: SSE-S3) and expire by
the bucket's lifecycle rule (``RetentionDays`` after they were written). A key names the run
and the SHA-256 of the value (engine/blobs.py), so that a value is written once per run.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from functions.aws.errors import raise_store_error


class S3BlobStore:
    """Blobs in one S3 bucket; ``client`` is a low-level boto3 S3 client."""

    def __init__(self, bucket: str, client: Any) -> None:
        self.bucket = bucket
        self._client = client

    def put(self, key: str, data: bytes) -> None:
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType="application/json"
            )
        except ClientError as exc:
            raise_store_error(exc, table=self.bucket)

    def get(self, key: str) -> bytes:
        try:
            body: bytes = self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise KeyError(key) from None
            raise_store_error(exc, table=self.bucket)
        return body
