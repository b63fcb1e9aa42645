"""The projector: folds the streams into the Postgres read model the api answers from."""
