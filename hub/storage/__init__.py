"""Blob storage: the :class:`BlobStore` protocol, the local content-addressed store, the S3 store with
its node-local read-through cache, and :func:`open_store` that builds one from settings."""

from hub.storage.base import BlobInfo, BlobStore, PutResult, validate_key
from hub.storage.blobs import LocalBlobStore
from hub.storage.cache import BlobCache
from hub.storage.factory import clean_stale_temp, open_store
from hub.storage.s3 import S3BlobStore

__all__ = ["BlobCache", "BlobInfo", "BlobStore", "LocalBlobStore", "PutResult", "S3BlobStore", "clean_stale_temp",
           "open_store", "validate_key"]
