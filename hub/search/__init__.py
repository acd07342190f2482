"""Semantic search: text embedders and the FAISS vector index.

Import the submodules (``hub.search.embedder``, ``hub.search.index``); nothing heavy is imported here.
"""
