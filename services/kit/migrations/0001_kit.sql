-- Kit's tables, present in every service's database.

-- AIP-155: the first answer to each (caller, method, request_id), saved in the transaction that
-- made the change, so a retry returns it and changes nothing.
create table civic_idempotency (
    caller text not null,
    method text not null,
    request_id text not null,
    request_hash text not null,
    response blob not null,
    created_at text not null,
    updated_at text not null,
    primary key (caller, method, request_id)
);

-- The transactional outbox: events written with the change that caused them; the relay
-- publishes them and stamps published_at. Ids are UUIDv7, so id order is write order.
create table civic_outbox (
    id text primary key,
    topic text not null,
    event_key text not null,
    payload blob not null,
    traceparent text,
    created_at text not null,
    updated_at text not null,
    published_at text
);
create index civic_outbox_unpublished on civic_outbox (published_at, id);

-- The inbox: ids of events a consumer has applied, written in the consumer's transaction, so an
-- event delivered twice is applied once.
create table civic_inbox (
    consumer text not null,
    event_id text not null,
    created_at text not null,
    updated_at text not null,
    primary key (consumer, event_id)
);
