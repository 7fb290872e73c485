-- v2, 0003 expand: written in a hurry. Run in autocommit, statement by statement, and not
-- re-runnable: if the migrate command dies between the two ALTERs, running it again fails on
-- the first one ("column already exists"), and 0003 is recorded only at the very end.
ALTER TABLE accounts ADD COLUMN currency text;
ALTER TABLE transfers ADD COLUMN currency text;
