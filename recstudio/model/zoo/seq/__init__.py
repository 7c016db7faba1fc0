"""Sequential recommenders: the query is encoded from the user's item sequence."""
