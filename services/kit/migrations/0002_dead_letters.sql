-- How many times the bus refused each pending event (an event it cannot take at all, or one a
-- consumer in this process kept failing on); past server.dead_letter_after_attempts the event is
-- set aside as a dead letter and those after it flow on.
alter table civic_outbox add column attempts bigint not null default 0;

-- Dead letters: events set aside with the reason, for an operator to look into and send again
-- (`civic events dead-letters`, `civic events replay`). `consumer` is empty for an event the
-- bus refused, else the consumer of this service that kept failing on it.
create table civic_dead_letters (
    event_id text not null,
    consumer text not null,
    topic text not null,
    event_key text not null,
    payload blob not null,
    traceparent text,
    event_created_at text not null,
    reason text not null,
    attempts bigint not null,
    created_at text not null,
    updated_at text not null,
    primary key (event_id, consumer)
);
