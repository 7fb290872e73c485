-- v2.1, 0003 down: one transaction and re-runnable, but still lossy: it drops the currency of
-- every row, as v2's does.
ALTER TABLE transfers DROP COLUMN IF EXISTS currency;
ALTER TABLE accounts DROP COLUMN IF EXISTS currency;
