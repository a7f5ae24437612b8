"""Storage: the tables (`tables.py`), their ordered migrations (`migrations.py`), the engines that reach a database
(`database.py`) and the Store that reads and writes them (`store.py`)."""
