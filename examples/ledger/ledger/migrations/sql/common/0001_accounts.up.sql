-- 0001 (all releases): accounts. Amounts are integer cents.
CREATE TABLE accounts (
    id bigserial PRIMARY KEY,
    owner text NOT NULL,
    balance_cents bigint NOT NULL DEFAULT 0 CHECK (balance_cents >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
