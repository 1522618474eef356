"""Session stores: the contract (``base``), the domain it speaks, and its implementations."""
from .base import SessionRepository
from .errors import (ConfigurationError, InvalidTransition, LogLimitExceeded, RunboardError,
                     SessionNotFound, ValidationError)
from .records import LogInput, Session
from .states import State

__all__ = ["SessionRepository", "State", "Session", "LogInput", "RunboardError",
           "ConfigurationError", "InvalidTransition", "LogLimitExceeded", "SessionNotFound",
           "ValidationError"]
