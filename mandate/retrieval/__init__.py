"""Retrieval: embeddings, the pgvector store, ingestion and the authorized retriever."""

from mandate.retrieval.embeddings import LexicalEmbeddings
from mandate.retrieval.errors import IngestionError, RetrievalError, RetrievalUnavailableError
from mandate.retrieval.ingest import DocumentSpec, Ingestor
from mandate.retrieval.queries import MIGRATIONS
from mandate.retrieval.retriever import AuthorizedRetriever, RetrievedChunk, Retriever

__all__ = [
    "MIGRATIONS",
    "AuthorizedRetriever",
    "DocumentSpec",
    "IngestionError",
    "Ingestor",
    "LexicalEmbeddings",
    "RetrievalError",
    "RetrievalUnavailableError",
    "RetrievedChunk",
    "Retriever",
]
