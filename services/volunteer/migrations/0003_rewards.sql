-- The reward catalogue (积分兑换): goods and services merchants and the community offer for
-- moral-bank points, and what was redeemed. `stock` never goes below zero: a redemption takes
-- one only where one is left (one conditional update, atomic on both stores).
create table rewards (
    street text not null,
    reward_id text not null,
    display_name text not null,
    -- Who offers it: a merchant's or the community's name.
    offered_by text not null,
    points bigint not null,
    stock bigint not null,
    -- 1 while it is offered, 0 once withdrawn.
    offered bigint not null,
    version bigint not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, reward_id)
);

create table redemptions (
    street text not null,
    -- The ledger movement that paid for it.
    movement_id text not null,
    reward_id text not null,
    person text not null,
    points bigint not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, movement_id)
);
create index redemptions_by_person on redemptions (street, person, created_at);
