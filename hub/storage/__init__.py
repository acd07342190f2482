"""Blob storage: the :class:`BlobStore` protocol and a local content-addressed implementation."""

from hub.storage.blobs import BlobStore, LocalBlobStore, PutResult, validate_key

__all__ = ["BlobStore", "LocalBlobStore", "PutResult", "validate_key"]
