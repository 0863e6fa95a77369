"""Retrieval: embeddings, the pgvector store, ingestion and the authorized retriever."""

from mandate.retrieval._acl import document_acl
from mandate.retrieval._search import SearchTuning
from mandate.retrieval._feed import ChangeFeed, FeedReport
from mandate.retrieval._principals import PrincipalCache
from mandate.retrieval.directory import OpenFgaDirectory, RelationshipDirectory, TupleChange
from mandate.retrieval.embeddings import EmbeddingsProvider, LexicalEmbeddings, build_embeddings
from mandate.retrieval.errors import FeedPositionError, IncompleteListingError, IngestionError, RetrievalError, RetrievalUnavailableError
from mandate.retrieval.ingest import DocumentSpec, FolderSpec, Ingestor
from mandate.retrieval.loaders import SUPPORTED_SUFFIXES, LoadedFile, discover_files, document_id_for, load_file
from mandate.retrieval.queries import MIGRATIONS
from mandate.retrieval.retriever import AuthorizedRetriever, RetrievedChunk, Retriever

__all__ = [
    "MIGRATIONS",
    "SUPPORTED_SUFFIXES",
    "AuthorizedRetriever",
    "ChangeFeed",
    "DocumentSpec",
    "EmbeddingsProvider",
    "FeedPositionError",
    "FeedReport",
    "FolderSpec",
    "IncompleteListingError",
    "IngestionError",
    "Ingestor",
    "LexicalEmbeddings",
    "LoadedFile",
    "OpenFgaDirectory",
    "PrincipalCache",
    "RelationshipDirectory",
    "RetrievalError",
    "RetrievalUnavailableError",
    "RetrievedChunk",
    "Retriever",
    "SearchTuning",
    "TupleChange",
    "build_embeddings",
    "discover_files",
    "document_acl",
    "document_id_for",
    "load_file",
]
