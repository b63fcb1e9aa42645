-- Secrets at rest: a repository's passphrase is kept only encrypted (shared/secretbox.py), under a
-- key that is not in the database (BORGFLOW_SECRET_KEY or DATA_DIR/secret-key). SQL cannot
-- encrypt: the Python step of this version (shared/secretrows.py) encrypts the plain-text
-- passphrases of an older database into passphrase_enc, in this same transaction, and
-- 0007 then drops the plain-text column.
ALTER TABLE repositories ADD COLUMN passphrase_enc bytea;
