"""Social recommenders: models that also read a user -> user network (``.net``)."""
