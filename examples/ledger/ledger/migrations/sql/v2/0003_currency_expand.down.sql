-- v2, 0003 down: the rollback a team really writes. It drops the columns, and with them the
-- currency of every row v2 wrote: an EUR balance becomes that many "cents" of v1's implicit USD.
ALTER TABLE transfers DROP COLUMN currency;
ALTER TABLE accounts DROP COLUMN currency;
