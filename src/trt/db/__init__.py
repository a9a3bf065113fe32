"""Storage: SQLAlchemy models, the database handle with its unit of work, and migrations."""
