-- The register of volunteers: one per person per street (the id is the person's user id). The
-- registration itself is `body` (the API's message); the columns are what lists filter on.
create table volunteers (
    street text not null,
    volunteer_id text not null,
    person text not null,
    -- IN_SERVICE_PARTY_MEMBER, SENIOR_PARTY_MEMBER, RESIDENT or ORGANISATION_MEMBER.
    kind text not null,
    -- PENDING or APPROVED.
    state text not null,
    community_id text not null,
    -- The skills between bars (`|elder_care|cooking|`), for a filter on one.
    skills text not null,
    version bigint not null,
    body blob not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, volunteer_id)
);
create index volunteers_by_community on volunteers (street, community_id, volunteer_id);
