-- v2, 0005 contract: in autocommit, statement by statement. Fails if any row is still NULL
-- (e.g. written by a v1 instance after the backfill); may leave accounts NOT NULL but not
-- transfers.
ALTER TABLE accounts ALTER COLUMN currency SET NOT NULL;
ALTER TABLE transfers ALTER COLUMN currency SET NOT NULL;
