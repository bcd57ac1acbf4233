-- The social organisations of the incubation alliance (孵化联盟), with their projects and
-- stations: the organisation is `body` (the API's message); the columns are what lists filter on.
create table organisations (
    street text not null,
    organisation_id text not null,
    -- CHARITY, COMMUNITY_SERVICE, CULTURE_SPORT or MEDIATION.
    kind text not null,
    -- INCUBATING or INCUBATED.
    stage text not null,
    -- Its community's id, or empty for the street's own.
    community_id text not null,
    version bigint not null,
    body blob not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, organisation_id)
);
