"""Flask extensions, created unbound and bound in ``create_app`` (microblog style).

``db`` is built on the repositories' own declarative base, so Flask-Migrate compares
migrations against exactly the tables the SQL store uses.
"""
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from repositories.sql.models import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
