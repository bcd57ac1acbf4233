-- Scoring schemes: each a version that never changes; the one in force for a month is the one
-- with the latest effective month not after it (the latest created among equals).
create table schemes (
    street text not null,
    scheme_id text not null,
    effective_month text not null,
    -- The API's message.
    body blob not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, scheme_id)
);
create index schemes_by_month on schemes (street, effective_month, created_at);

-- Monthly reviews. `computation` is the computed part (encoded, without times): what a
-- recomputation compares and the month's digest is taken over. `body` is the whole review.
create table reviews (
    street text not null,
    month text not null,
    worker_id text not null,
    community_id text not null,
    -- COMPUTED, ADJUSTED or APPROVED.
    state text not null,
    score double precision not null,
    computation blob not null,
    body blob not null,
    version bigint not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, month, worker_id)
);
create index reviews_by_community on reviews (street, month, community_id, worker_id);
