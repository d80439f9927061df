"""Storage: the database connection, its tables and migrations, and the hot-path point reads."""
