-- Meetings (三会): the columns lists filter on, and the meeting itself encoded
-- (civic.issues.v1.Meeting, without its etag).
create table meetings (
    street text not null,
    meeting_id text not null,
    community_id text not null,
    kind text not null,
    state text not null,
    start_time text not null,
    version bigint not null,
    body blob not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, meeting_id)
);
create index meetings_by_start on meetings (street, start_time, meeting_id);
create index meetings_by_community on meetings (street, community_id, start_time, meeting_id);
