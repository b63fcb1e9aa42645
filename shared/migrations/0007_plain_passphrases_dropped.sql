-- The plain-text passphrases are gone. A process that migrates without the secret key (so
-- without 0006's Python step) stops here on a database that still holds some, and the whole
-- upgrade is rolled back: nothing is dropped that was not encrypted first.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM repositories WHERE passphrase IS NOT NULL) THEN
        RAISE EXCEPTION 'repositories hold plain-text passphrases: upgrade by starting `borgflow api` or `borgflow up`, which hold the secret key and encrypt them';
    END IF;
END
$$;

ALTER TABLE repositories DROP COLUMN passphrase;
