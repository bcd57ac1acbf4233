-- Visits: the columns lists and the policy read, and the visit itself encoded
-- (civic.grid.v1.Visit: the notes and the problems).
create table visits (
    street text not null,
    visit_id text not null,
    household_id text not null,
    worker text not null,
    community_id text not null,
    grid_id text not null,
    grid_revision bigint not null,
    kind text not null,
    key_visit bigint not null,
    visit_time text not null,
    body blob not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, visit_id)
);
create index visits_by_worker on visits (street, worker, visit_time);
create index visits_by_household on visits (street, household_id, visit_time);
create index visits_by_grid on visits (street, community_id, grid_id, visit_time);
