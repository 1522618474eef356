"""SQL stores (SQLite, PostgreSQL) behind the same contract as the memory store."""
from .engine import Transactions, engine_options, make_engine, prepare_engine
from .store import SqlSessionRepository

__all__ = ["SqlSessionRepository", "engine_options", "make_engine", "prepare_engine", "Transactions"]
