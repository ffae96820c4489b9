"""Indexes: lexical (BM25 via bm25s), dense (faiss), the repository walker and the on-disk store."""
