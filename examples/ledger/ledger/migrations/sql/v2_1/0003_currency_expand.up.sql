-- v2.1, 0003 expand: one transaction, and re-runnable: completes a half-applied v2 0003.
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS currency text;
ALTER TABLE transfers ADD COLUMN IF NOT EXISTS currency text;
