-- The moral bank (道德银行): an append-only double-entry ledger. A movement moves points between
-- two accounts — a person's (`users/{user}`) and one of the bank's (`bank/issued`,
-- `bank/redeemed`, `bank/adjustments`) — as two entries that sum to zero. Nothing is updated or
-- deleted; a balance is the sum of an account's entries.
create table ledger_movements (
    street text not null,
    movement_id text not null,
    -- EARN, REDEEM or ADJUST.
    kind text not null,
    person text not null,
    -- What the person's balance moves by (negative for a redemption).
    points bigint not null,
    -- What earned it (a confirmed task's name), or empty.
    source text not null,
    -- `source` when set, else `self|{movement_id}`: one movement per source (no NULL is bound).
    source_key text not null,
    -- Why (an adjustment's reason, the reward redeemed).
    reason text not null,
    actor text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, movement_id)
);
create unique index ledger_movements_source on ledger_movements (street, source_key);
create index ledger_movements_person on ledger_movements (street, person, created_at);

create table ledger_entries (
    street text not null,
    movement_id text not null,
    account text not null,
    amount bigint not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, movement_id, account)
);
create index ledger_entries_account on ledger_entries (street, account, created_at);
